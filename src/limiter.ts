import { hashString } from '../crdt/hash.js'
import { ReplicaTable, parseReplicaKey, replicaKey, type ReplicaId } from '../crdt/replica.js'
import { MergeResult, type WindowStore } from '../crdt/window-store.js'
import type { CodecLimits, CounterGroup, DecodeResult, DeltaMessage } from '../gossip/codec.js'
import type { SnapshotCursor, SnapshotGroup, SnapshotPage } from '../gossip/sync-codec.js'
import type { RepairOptions } from '../gossip/repair.js'
import { createReplicator, type Replicator, type ReplicatorStats } from '../gossip/replicator.js'
import type { Transport, Verdict } from '../gossip/transport.js'
import { coarseClock, type Clock, type CoarseClock } from '../membership/clock.js'
import { Concurrency, SHARE_ENGAGE, SHARE_SLACK, createRuntime, layoutOf, type LeaseHold, type LimitRuntime, type StoreOptions } from './algorithms.js'
import { Decision, LimitStatus, type Lease } from './decision.js'
import { ErrorCode, MeshlimitError, invalid } from './errors.js'
import { Escrow, type EscrowEntry, type EscrowStats } from './escrow.js'
import { migrateUsage } from './migrate.js'
import { compilePolicies, type CompiledGroup, type CompiledPolicies, type CompiledPolicy } from './policy/compile.js'
import type { Descriptor, PolicyDocument, PolicySet } from './policy/types.js'
import { MAX_LIMIT, isPolicySet, parsePolicies, validatePolicies } from './policy/validate.js'

/**
 * Tolerance of the admission comparison: usage estimates are fractional (interpolated
 * slots, drained levels) and float rounding must not deny a request that fits exactly.
 */
const EPSILON = 1e-9

/** Distinct incarnations accepted per peer id: restarts beyond it are refused until ours restarts. */
export const MAX_INCARNATIONS_PER_PEER = 64
/** Slots after a partition heals during which its cap still applies: until the partition-era share history has faded (halved per slot). */
export const RECOVERY_SLOTS = 5

/** Replica ids of region aggregates are `region:<name>@0`. */
const REGION_PREFIX = 'region:'

/** Newest slots an aggregate carries per changed key (late gossip can still change the two before the head). */
const AGGREGATE_SLOTS = 3

/** Distinct replicas accepted in all (live nodes, their past incarnations, region aggregates). */
export const MAX_REPLICAS = 16_384

/** Largest cost one request may carry (the largest limit). */
export const MAX_COST = MAX_LIMIT

export interface LimiterInit {
  /** Policies: a document object, JSON or YAML text, or a set from parsePolicies(). */
  policies: PolicyDocument | PolicySet | string
  /**
   * Time source.
   * @default a coarse wall clock refreshed every millisecond
   */
  clock?: Clock
  /**
   * Most keys tracked per limit; past it the least recently used of a sample is evicted.
   * @default 1000000
   */
  maxKeys?: number
  /**
   * Keys longer than this many characters are replaced by a fixed-size digest.
   * @default 256
   */
  maxKeyLength?: number
  /**
   * Largest clock difference tolerated between nodes, in ms: peers' entries this far
   * ahead are kept, messages further ahead are rejected.
   * @default 500
   */
  maxClockSkewMs?: number
  /**
   * Seed of the key hash; the same on every node of a mesh (keep it secret to stop
   * crafted collisions).
   * @default 0
   */
  hashSeed?: number
  /**
   * Seed of the eviction sampler (set it for replayable simulations).
   * @default 1
   */
  samplerSeed?: number
  /** Replicates usage through this transport; without one the limiter is local only. */
  transport?: Transport
  /**
   * Incarnation of this replica; must grow across restarts of the same peer id.
   * @default the clock's time in ms at creation
   */
  incarnation?: number
  /**
   * Interval between gossip flushes, in ms.
   * @default 50
   */
  flushIntervalMs?: number
  /**
   * Gossip messages larger than this are split.
   * @default 65536
   */
  maxMessageBytes?: number
  /**
   * Topic counters are gossiped on.
   * @default "meshlimit/counters"
   */
  topic?: string
  /**
   * Every live entry of this node is re-published once per this period, a slow safety
   * net behind gap repair (0 disables).
   * @default 30000
   */
  republishIntervalMs?: number
  /**
   * Gap repair of lost gossip (gossip/repair.ts): tuning, or false to turn it off.
   * @default {}
   */
  repair?: RepairOptions | false
  /**
   * Interval of the idle-key sweep, in ms.
   * @default 1000
   */
  sweepIntervalMs?: number
  /**
   * Local shares for gossiped limits: between two syncs a node spends at most its
   * demand-proportional share of the budget, so stale views cannot add up to more than
   * the limit. Off, every node admits while its own view has room.
   * @default true
   */
  localShares?: boolean
  /**
   * The sync period local shares budget over, in ms: how stale a peer's view of this
   * node can be (a flush interval of waiting plus delivery).
   * @default 2 x flushIntervalMs
   */
  shareHorizonMs?: number
  /**
   * The share horizon of global limits in a multi-region mesh, in ms: other regions'
   * counts arrive in region aggregates (the aggregate interval plus cross-region
   * delivery later than a region's own).
   * @default shareHorizonMs + aggregateIntervalMs + 250
   */
  crossRegionHorizonMs?: number
  /**
   * How often region aggregates carry other regions' counts, in ms (createMeshNode
   * passes its aggregate interval); only sets crossRegionHorizonMs's default.
   * @default 250
   */
  aggregateIntervalMs?: number
  /**
   * Decoder of received gossip; must behave as gossip/codec's decodeDelta. The chaos
   * simulator passes a memoized one so every receiver of a message shares one decoding.
   * @default decodeDelta
   */
  decodeDelta?: (data: Uint8Array, limits: CodecLimits) => DecodeResult
}

/** How much of a scope is reachable, from membership (see setReachability). */
export interface ScopeReachability {
  /** Weight of the scope's members known but unreachable (suspect or dead); 0: all reachable. */
  unreachable: number
  /** This node's weight over the weight of every member last known in the scope (itself included). */
  share: number
}

export interface Reachability {
  region: ScopeReachability
  global: ScopeReachability
}

/** Per-limit counter statistics. */
export interface LimitStats {
  name: string
  algorithm: string
  /** Requests a shadow policy's limit would have denied (counted by check() and acquire()). */
  shadowDenied: number
  keys: number
  evictions: number
  expired: number
}

export interface LimiterStats {
  replica: string
  limits: LimitStats[]
  mergedEntries: number
  staleEntries: number
  aheadDropped: number
  unknownLimitGroups: number
  /** Messages refused because their peer already used MAX_INCARNATIONS_PER_PEER incarnations. */
  refusedReplicas: number
  replicator: ReplicatorStats | undefined
  /** Strict limits' rights transfers (undefined without a transport). */
  escrow: EscrowStats | undefined
}

/** One key's counters as a node holds them (see Limiter.inspect). */
export interface KeyCounters {
  /** Slot width of the limit, in ms. */
  slotMs: number
  /** Epoch the key's ring is aligned to (where it was last touched locally or by a peer). */
  head: number
  /** Oldest epoch held: head - pastSlots + 1. */
  firstEpoch: number
  /** Total over every replica of each epoch from firstEpoch to head + futureSlots. */
  totals: number[]
  /** Per replica ("peerId@incarnation"), flat (epoch, count) pairs; only when asked for. */
  replicas?: Map<string, number[]>
}

/** A synchronous, in-memory rate limiter whose usage converges across a mesh. */
export interface Limiter {
  /**
   * Decides whether a request may pass under every limit it matches, and counts it
   * when it may. Synchronous, O(1) in the number of keys; never waits on the network.
   * Concurrency limits are skipped here: use acquire() for them.
   * @param cost units the request consumes, an integer >= 1 (default 1)
   */
  check(descriptor: Descriptor, cost?: number): Decision
  /**
   * Answers like check() would for `cost`, without counting anything: for showing
   * quota status. Concurrency limits are skipped, as in check().
   */
  peek(descriptor: Descriptor, cost?: number): Decision
  /**
   * Like check(), and also takes a lease on every matched concurrency limit. Call
   * release() on the result when the work ends (it is a no-op when denied).
   */
  acquire(descriptor: Descriptor, cost?: number): Lease
  /**
   * Replaces the policies. Counters of limits that keep their policy id and limit id
   * carry over: a changed ceiling applies from the next check, a changed window or
   * algorithm gets the usage re-bucketed (src/migrate.ts); other limits start empty.
   */
  setPolicies(policies: PolicyDocument | PolicySet | string): void
  /** The policies in force. */
  readonly policies: PolicySet
  /** This node's replica id. */
  readonly replica: ReplicaId
  /** Publishes pending changes now (no-op without a transport). */
  flush(): void
  /** Drains the local replica's changes since the last drain (used by replicators). */
  collectDelta(): CounterGroup[]
  /** The local replica's live counts of the next rotating `fraction` of its keys (re-publication). */
  collectRepublish(fraction: number): CounterGroup[]
  /** Every live count of the local replica (used by replicators to answer repairs). */
  collectOwn(): CounterGroup[]
  /** Merges a validated delta from peer `from` (used by replicators). */
  applyDelta(from: string, msg: DeltaMessage): Verdict
  /** Seq of the last counter message this replica published (0 before any, or without a transport); heartbeats carry it. */
  gossipSeq(): number
  /** Peer `from` announced that its `incarnation` published counter messages up to `seq`: a trailing loss shows. */
  announcedSeq(from: string, incarnation: number, seq: number): void
  /** Drops the gap tracking of peer `from` (dead or departed). */
  forgetPeer(from: string): void
  /**
   * This region's totals of global limits for keys that changed since the last call
   * (or of every key with `all`), for the region aggregate.
   */
  collectAggregates(all: boolean, lookbackMs?: number): CounterGroup[]
  /** Max-merges another region's aggregate (validated by the caller); returns raised counts. */
  applyAggregate(region: string, groups: CounterGroup[]): number
  /** One page of every live entry this node holds, its own and other replicas' (anti-entropy). */
  snapshotPage(cursor: SnapshotCursor | undefined, maxEntries: number): SnapshotPage
  /** Max-merges a pulled snapshot page; returns the number of entries that raised a count. */
  applySnapshot(groups: SnapshotGroup[]): number
  /**
   * Tells the limiter which parts of the mesh are unreachable (the mesh node calls it on
   * membership changes): limits of a degraded scope follow their policy's onPartition.
   */
  setReachability(r: Reachability): void
  /** Frees keys whose usage left every window; runs on a timer, callable directly. */
  sweep(): void
  stats(): LimiterStats
  /**
   * The counters this node holds for `key` of limit `limit` ("policy/limit", the
   * acquisitions of a concurrency limit; a wire name such as "policy/limit#den" reads that
   * store), read without changing anything; undefined when
   * the limit or the key is unknown. For debugging, admin tools, tests and the chaos
   * simulator's audits: it allocates, never call it on the request path.
   */
  inspect(limit: string, key: string, withReplicas?: boolean): KeyCounters | undefined
  /** Flushes the last changes and stops timers. */
  close(): void
}

function checkInteger (name: string, v: number | undefined, min: number, dflt: number): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw invalid(ErrorCode.OPTION_INVALID, name, v, `must be an integer >= ${min}`, `pass ${name} as an integer of at least ${min}, or leave it out for ${dflt}`)
  }
  return v
}

function toPolicySet (p: PolicyDocument | PolicySet | string): PolicySet {
  if (typeof p === 'string') return parsePolicies(p)
  if (isPolicySet(p)) return p
  return validatePolicies(p)
}

function costError (cost: unknown): MeshlimitError {
  return invalid(ErrorCode.COST_INVALID, 'cost', cost, `must be an integer from 1 to ${MAX_COST}`, 'pass a positive whole number of units, or leave cost out for 1')
}

class LeaseImpl extends Decision implements Lease {
  private holds: LeaseHold[] | undefined
  private readonly owner: LimiterImpl

  constructor (d: Decision, holds: LeaseHold[] | undefined, owner: LimiterImpl) {
    super(d.allowed, d.info, d.remaining, d.resetMs, d.retryAfterMs, d.limits)
    this.holds = holds
    this.owner = owner
  }

  release (): void {
    const holds = this.holds
    if (holds === undefined) return
    this.holds = undefined
    this.owner.release(holds)
  }
}

/** The decision when no policy matched: allowed, nothing counted. */
const NO_LIMITS = new Decision(true, undefined, Infinity, 0, 0, Object.freeze([]))

class LimiterImpl implements Limiter {
  readonly replica: ReplicaId
  private readonly clock: Clock
  private readonly ownClock: CoarseClock | undefined
  private readonly storeOptions: Omit<StoreOptions, 'replicated'>
  private readonly maxKeyLength: number
  private readonly transport: Transport | undefined
  private readonly replicas: ReplicaTable
  private readonly replicator: Replicator | undefined
  private readonly sweepIntervalMs: number
  private readonly localShares: boolean
  /** Experiment switches of the share rule (issue 5): read once from the environment, not public options. */
  private readonly shareEngage = experimentSwitch('MESHLIMIT_EXP_SHARE_ENGAGE', SHARE_ENGAGE, 0, 10)
  private readonly shareSlack = experimentSwitch('MESHLIMIT_EXP_SHARE_SLACK', SHARE_SLACK, 0, 10)
  private readonly shareMargin = experimentSwitch('MESHLIMIT_EXP_SHARE_MARGIN', 0, 0, 10)
  private readonly shareHorizonMs: number
  private readonly crossRegionHorizonMs: number
  /** Retry hint for share denials: the next flush refreshes the allowance. */
  private readonly shareRetryMs: number
  private cancelSweep: (() => void) | undefined
  private compiled!: CompiledPolicies
  /** The only group, when every policy in it has one enforced rate limit (see checkLean). */
  private lean: CompiledGroup | undefined
  /** Runtimes by limit name ("policy/limit"). */
  private runtimes = new Map<string, LimitRuntime>()
  /** Stores by wire name (limit name + suffix), replicated ones only. */
  private wire = new Map<string, WindowStore>()
  private closed = false
  // Scratch space for one check (check is synchronous, so it is never shared).
  private sRt: LimitRuntime[] = []
  private sPol: CompiledPolicy[] = []
  private sIdx: number[] = []
  private sUse: number[] = []
  private sOk: boolean[] = []
  private sKey: string[] = []
  /** Denied by the local share rule (retry when the next sync refreshes the allowance). */
  private sShare: boolean[] = []
  /** Strict limits' escrow entries of the check (undefined for other limits). */
  private sEsc: Array<EscrowEntry | undefined> = []
  private readonly escrow: Escrow | undefined
  private sNow = 0
  private merged = 0
  private stale = 0
  private ahead = 0
  private unknownGroups = 0
  private refusedReplicas = 0
  /** Incarnations seen per peer id (bounded by MAX_INCARNATIONS_PER_PEER). */
  private readonly incarnations = new Map<string, number>()
  private readonly ownKey: string
  private republishCursor: SnapshotCursor = { limit: '', index: 0 }
  private reachability: Reachability | undefined
  /** Last replica index seen per peer, so a message does not build its replica key string. */
  private lastReplica = new Map<string, number>()
  /** Incarnation of each replica index applyDelta looked up (a number array: no object to chase per message). */
  private repIncarnation: number[] = []

  constructor (init: LimiterInit) {
    if (init.clock === undefined) {
      this.ownClock = coarseClock()
      this.clock = this.ownClock
    } else this.clock = init.clock
    const maxClockSkewMs = checkInteger('maxClockSkewMs', init.maxClockSkewMs, 0, 500)
    this.storeOptions = {
      maxKeys: checkInteger('maxKeys', init.maxKeys, 1, 1_000_000),
      hashSeed: checkInteger('hashSeed', init.hashSeed, 0, 0),
      maxClockSkewMs,
      samplerSeed: checkInteger('samplerSeed', init.samplerSeed, 0, 1)
    }
    this.maxKeyLength = checkInteger('maxKeyLength', init.maxKeyLength, 16, 256)
    this.sweepIntervalMs = checkInteger('sweepIntervalMs', init.sweepIntervalMs, 1, 1000)
    this.transport = init.transport
    const flushIntervalMs = checkInteger('flushIntervalMs', init.flushIntervalMs, 1, 50)
    this.localShares = init.localShares ?? true
    this.shareHorizonMs = checkInteger('shareHorizonMs', init.shareHorizonMs, 0, 2 * flushIntervalMs)
    // Other regions' counts arrive in aggregates: the aggregate interval and a crossing later than a region's own.
    this.crossRegionHorizonMs = checkInteger('crossRegionHorizonMs', init.crossRegionHorizonMs, 0, this.shareHorizonMs + checkInteger('aggregateIntervalMs', init.aggregateIntervalMs, 1, 250) + 250)
    this.shareRetryMs = flushIntervalMs
    this.replica = {
      peerId: init.transport?.peerId ?? 'local',
      incarnation: checkInteger('incarnation', init.incarnation, 0, Math.floor(this.clock.now()))
    }
    this.replicas = new ReplicaTable(this.replica)
    this.ownKey = replicaKey(this.replica)
    if (init.transport !== undefined) {
      this.escrow = new Escrow({ transport: init.transport, clock: this.clock, incarnation: this.replica.incarnation, maxKeys: Math.min(this.storeOptions.maxKeys, 100_000) })
      this.escrow.start()
    }
    this.install(toPolicySet(init.policies))
    if (init.transport !== undefined) {
      this.replicator = createReplicator({
        transport: init.transport,
        clock: this.clock,
        state: this,
        topic: init.topic,
        flushIntervalMs,
        maxMessageBytes: checkInteger('maxMessageBytes', init.maxMessageBytes, 1024, 65536),
        republishIntervalMs: checkInteger('republishIntervalMs', init.republishIntervalMs, 0, 30_000),
        repair: init.repair,
        maxClockSkewMs,
        decode: init.decodeDelta
      })
      this.replicator.start()
    }
    this.scheduleSweep()
  }

  get incarnation (): number {
    return this.replica.incarnation
  }

  get policies (): PolicySet {
    return this.compiled.set
  }

  setPolicies (policies: PolicyDocument | PolicySet | string): void {
    this.assertOpen()
    this.install(toPolicySet(policies))
  }

  private install (set: PolicySet): void {
    const compiled = compilePolicies(set, { maxKeyLength: this.maxKeyLength })
    const runtimes = new Map<string, LimitRuntime>()
    for (const group of compiled.groups) {
      for (const cp of group.policies) {
        const replicated = this.transport !== undefined && cp.policy.scope !== 'node'
        const aggregated = replicated && cp.policy.scope === 'global'
        cp.runtimes = cp.policy.limits.map(limit => {
          const name = `${cp.id}/${limit.id}`
          const prev = this.runtimes.get(name)
          const { slotMs } = layoutOf(limit)
          if (prev !== undefined && prev.compatible(limit, slotMs) && prev.primary.replicated === replicated && prev.primary.aggregated === aggregated) {
            prev.max = limit.limit
            runtimes.set(name, prev)
            return prev
          }
          const rt = createRuntime(name, limit, { ...this.storeOptions, replicated, aggregated })
          // Same limit, new layout or scope: carry its usage over (src/migrate.ts).
          if (prev !== undefined) migrateUsage(prev, rt, this.clock.now())
          runtimes.set(name, rt)
          return rt
        })
        const strict = replicated && cp.policy.strict && this.escrow !== undefined && set.escrow !== undefined
        for (const rt of cp.runtimes) {
          // Strict limits spend escrowed rights: the hard bound makes local shares moot.
          rt.escrow = strict ? (this.escrow as Escrow).table(rt.name, { limit: rt.max, windowMs: rt.windowMs, holders: (set.escrow as { holders: readonly string[] }).holders }) : undefined
          rt.shares = replicated && this.localShares && rt.escrow === undefined
          rt.onPartition = cp.policy.onPartition
          rt.shareHorizonMs = this.shareHorizonMs
          rt.crossRegionHorizonMs = this.crossRegionHorizonMs
          rt.shareEngage = this.shareEngage
          rt.shareSlack = this.shareSlack
          rt.shareMargin = this.shareMargin
          rt.coinSalt = hashString(replicaKey(this.replica), 0x5a17) | 0
          rt.info = { policy: cp.id, id: rt.id, limit: rt.max, algorithm: rt.algorithm, scope: cp.policy.scope, windowMs: rt.windowMs, shadow: cp.shadow }
        }
        cp.rateRuntimes = cp.runtimes.filter(rt => rt.algorithm !== 'concurrency')
      }
    }
    const wire = new Map<string, WindowStore>()
    for (const rt of runtimes.values()) {
      for (const [suffix, store] of rt.stores) if (store.replicated) wire.set(rt.name + suffix, store)
    }
    this.compiled = compiled
    const only = compiled.groups.length === 1 ? compiled.groups[0] : undefined
    this.lean = only !== undefined && only.policies.every(p => p.rateRuntimes.length === 1 && p.runtimes.length === 1 && !p.shadow && p.runtimes[0].escrow === undefined) ? only : undefined
    this.escrow?.retain(new Set([...runtimes.values()].filter(rt => rt.escrow !== undefined).map(rt => rt.name)))
    this.runtimes = runtimes
    this.wire = wire
    if (this.reachability !== undefined) this.setReachability(this.reachability)
  }

  check (descriptor: Descriptor, cost = 1): Decision {
    if (this.lean !== undefined) return this.checkLean(this.lean, descriptor, cost)
    const n = this.evaluate(descriptor, cost, false, true)
    return this.decide(n, cost, true)
  }

  /**
   * check() for the most common shape: one policy group whose every policy has exactly
   * one limit, enforced and not a concurrency limit. Same semantics, no scratch arrays.
   */
  private checkLean (group: CompiledGroup, d: Descriptor, cost: number): Decision {
    this.validate(d, cost)
    const p = group.winner(d)
    if (p === undefined) return NO_LIMITS
    const rt = p.rateRuntimes[0]
    const now = this.clock.now()
    const i = rt.locate(group.lastKey, now)
    const u = rt.usage(i, now)
    let ok = u + cost <= rt.max + EPSILON
    let shareDenied = false
    if (rt.shares) {
      rt.primary.noteDemand(i, cost)
      if (ok && !this.sharedAllows(rt, i, now, cost)) {
        ok = false
        shareDenied = true
      }
    }
    if (ok) rt.commit(i, now, cost)
    else if (rt.shares) rt.noteDenied(i, now, cost)
    const left = rt.max - u - (ok ? cost : 0)
    const retry = ok ? 0 : shareDenied ? this.shareRetryMs : rt.retryAfterMs(i, now, u, cost)
    return new Decision(ok, rt.info, left > 0 ? Math.floor(left) : 0, rt.resetMs(i, now), retry, undefined)
  }

  /**
   * The rules of a gossiped limit beyond the simple one: local shares normally; while
   * part of its scope is unreachable, the policy's partition mode.
   */
  private sharedAllows (rt: LimitRuntime, i: number, now: number, cost: number): boolean {
    if (rt.degraded) {
      // "open": each side enforces the limit on its own, availability over accuracy.
      if (rt.onPartition === 'open') return true
      return rt.onPartition === 'share' && rt.partitionAllows(i, now, cost)
    }
    if (now < rt.recoverUntil) return rt.partitionAllows(i, now, cost)
    return rt.shareAllows(i, now, cost)
  }

  setReachability (r: Reachability): void {
    const now = this.clock.now()
    for (const rt of this.runtimes.values()) {
      const scope = rt.info.scope
      if (scope === 'node') continue
      const s = scope === 'region' ? r.region : r.global
      const degraded = s.unreachable > 0
      // Healed: keep the partition cap until both sides' histories hold each other again.
      if (rt.degraded && !degraded) rt.recoverUntil = now + RECOVERY_SLOTS * rt.slotMs
      rt.degraded = degraded
      rt.partitionShare = s.share
    }
    this.reachability = r
  }

  private validate (d: Descriptor, cost: number): void {
    if (typeof cost !== 'number' || !(cost >= 1 && cost <= MAX_COST) || cost % 1 !== 0) throw costError(cost)
    if (typeof d !== 'object' || d === null) {
      throw invalid(ErrorCode.DESCRIPTOR_INVALID, 'descriptor', d, 'must be an object of string fields', 'pass e.g. { user: "u-42", route: "/v1/search" }')
    }
    if (this.closed) throw new MeshlimitError(ErrorCode.STATE_INVALID, 'the limiter is closed. Fix: create a new limiter', 'limiter')
  }

  peek (descriptor: Descriptor, cost = 1): Decision {
    const n = this.evaluate(descriptor, cost, false, false)
    return this.decide(n, cost, false)
  }

  acquire (descriptor: Descriptor, cost = 1): Lease {
    const n = this.evaluate(descriptor, cost, true, true)
    const d = this.decide(n, cost, true)
    let holds: LeaseHold[] | undefined
    if (d.allowed) {
      const now = this.sNow
      for (let j = 0; j < n; j++) {
        const rt = this.sRt[j]
        if (rt instanceof Concurrency && this.sOk[j]) {
          (holds ??= []).push({ runtime: rt, key: this.sKey[j], epoch: Math.floor(now / rt.slotMs), cost })
        }
      }
    }
    return new LeaseImpl(d, holds, this)
  }

  /** Counts lease releases (called by LeaseImpl). */
  release (holds: LeaseHold[]): void {
    if (this.closed) return
    const now = this.clock.now()
    for (const h of holds) {
      // Ignore holds of a runtime replaced by a policy change: its counters are gone.
      if (this.runtimes.get(h.runtime.name) === h.runtime) h.runtime.release(h, now)
    }
  }

  /**
   * Matches the descriptor, locates every matched limit's key and computes its usage
   * into the scratch arrays; with `commit`, counts the request when every enforced
   * limit passes. Returns the number of matched limits, encoded as -n-1 when denied.
   */
  private evaluate (d: Descriptor, cost: number, withConcurrency: boolean, commit: boolean): number {
    this.validate(d, cost)
    const now = this.clock.now()
    const groups = this.compiled.groups
    let n = 0
    let denied = false
    for (let g = 0; g < groups.length; g++) {
      const group = groups[g]
      const p = group.winner(d)
      if (p === undefined) continue
      const rts = withConcurrency ? p.runtimes : p.rateRuntimes
      const key = group.lastKey
      for (let r = 0; r < rts.length; r++) {
        const rt = rts[r]
        const i = rt.locate(key, now)
        const u = rt.usage(i, now)
        let ok = u + cost <= rt.max + EPSILON
        let shareDenied = false
        if (rt.shares && commit) {
          rt.primary.noteDemand(i, cost)
          if (ok && !this.sharedAllows(rt, i, now, cost)) {
            ok = false
            shareDenied = true
          }
        }
        let esc: EscrowEntry | undefined
        if (rt.escrow !== undefined) {
          esc = rt.escrow.entry(key, now)
          // Strict: only rights this node owns admit (retry once a transfer lands).
          if (ok && esc.available < cost) {
            ok = false
            shareDenied = true
          }
        }
        this.sEsc[n] = esc
        this.sRt[n] = rt
        this.sPol[n] = p
        this.sIdx[n] = i
        this.sUse[n] = u
        this.sOk[n] = ok
        this.sShare[n] = shareDenied
        if (withConcurrency) this.sKey[n] = key
        n++
        if (!ok) {
          // Shadow limits never deny; their would-denials are counted for metrics.
          if (!p.shadow) denied = true
          else if (commit) rt.shadowDenied++
        }
      }
    }
    if (!denied && commit) {
      for (let j = 0; j < n; j++) if (this.sOk[j]) this.sRt[j].commit(this.sIdx[j], now, cost)
    } else if (commit) {
      for (let j = 0; j < n; j++) if (this.sRt[j].shares) this.sRt[j].noteDenied(this.sIdx[j], now, cost)
    }
    if (commit && this.escrow !== undefined) {
      for (let j = 0; j < n; j++) {
        const e = this.sEsc[j]
        if (e !== undefined) this.escrow.after(e, cost, !denied && this.sOk[j], now)
      }
    }
    this.sNow = now
    return denied ? -n - 1 : n
  }

  /** Builds the decision from the scratch arrays filled by evaluate(); `counted` says the cost was committed. */
  private decide (coded: number, cost: number, counted: boolean): Decision {
    const denied = coded < 0
    const n = denied ? -coded - 1 : coded
    if (n === 0) return NO_LIMITS
    const now = this.sNow
    if (n === 1 && !this.sPol[0].shadow) {
      // The common case: one enforced limit, no per-limit array until someone reads it.
      const rt = this.sRt[0]
      const i = this.sIdx[0]
      const u = this.sUse[0]
      const left = rt.max - u - (denied || !counted ? 0 : cost)
      return new Decision(!denied, rt.info, left > 0 ? Math.floor(left) : 0,
        rt.resetMs(i, now), denied ? (this.sShare[0] ? this.shareRetryMs : rt.retryAfterMs(i, now, u, cost)) : 0, undefined)
    }
    const limits = new Array<LimitStatus>(n)
    let pick = -1
    let pickScore = 0
    for (let j = 0; j < n; j++) {
      const rt = this.sRt[j]
      const p = this.sPol[j]
      const i = this.sIdx[j]
      const ok = this.sOk[j]
      const u = this.sUse[j]
      const left = rt.max - u - (ok && !denied && counted ? cost : 0)
      const remaining = left > 0 ? Math.floor(left) : 0
      const retry = ok ? 0 : this.sShare[j] ? this.shareRetryMs : rt.retryAfterMs(i, now, u, cost)
      limits[j] = new LimitStatus(rt.info, remaining, rt.resetMs(i, now), retry, ok)
      if (p.shadow) continue
      // Denied: the enforced limit with the longest wait. Allowed: the fewest remaining.
      const score = denied ? (ok ? -1 : retry) : -remaining
      if (pick < 0 || score > pickScore) {
        pick = j
        pickScore = score
      }
    }
    if (pick < 0) return new Decision(true, undefined, Infinity, 0, 0, limits)
    const s = limits[pick]
    return new Decision(!denied, s.info, s.remaining, s.resetMs, denied ? s.retryAfterMs : 0, limits)
  }

  flush (): void {
    this.replicator?.flush()
  }

  collectDelta (): CounterGroup[] {
    const groups: CounterGroup[] = []
    for (const [name, store] of this.wire) {
      if (store.dirtyCount === 0) continue
      const entries: number[] = []
      store.drainDirty(entries)
      if (entries.length > 0) groups.push({ limit: name, slotMs: store.slotMs, entries })
    }
    return groups
  }

  collectOwn (): CounterGroup[] {
    const groups: CounterGroup[] = []
    const now = this.clock.now()
    for (const [name, store] of this.wire) {
      const entries: number[] = []
      store.ownRange(0, Infinity, store.epochOf(now), entries)
      if (entries.length > 0) groups.push({ limit: name, slotMs: store.slotMs, entries })
    }
    return groups
  }

  gossipSeq (): number {
    return this.replicator?.lastSeq ?? 0
  }

  announcedSeq (from: string, incarnation: number, seq: number): void {
    this.replicator?.announced(from, incarnation, seq)
  }

  forgetPeer (from: string): void {
    this.replicator?.forget(from)
  }

  collectRepublish (fraction: number): CounterGroup[] {
    const groups = new Map<string, CounterGroup>()
    this.republish(fraction, (name, store) => {
      let g = groups.get(name)
      if (g === undefined) {
        g = { limit: name, slotMs: store.slotMs, entries: [] }
        groups.set(name, g)
      }
      return g
    })
    return [...groups.values()].filter(g => g.entries.length > 0)
  }

  /**
   * Re-publishes a rotating share of this node's live entries (absolute counts, so a
   * repeat is harmless) so that a lost message cannot leave a peer behind for longer
   * than one rotation.
   */
  private republish (fraction: number, group: (name: string, store: WindowStore) => CounterGroup): void {
    let live = 0
    for (const store of this.wire.values()) live += store.size
    let budget = Math.ceil(live * Math.min(1, fraction))
    const names = [...this.wire.keys()]
    if (names.length === 0 || budget === 0) return
    let at = Math.max(0, names.indexOf(this.republishCursor.limit))
    const now = this.clock.now()
    for (let visited = 0; visited <= names.length && budget > 0; visited++) {
      const name = names[at]
      const store = this.wire.get(name) as WindowStore
      const { visited, next } = store.ownRange(this.republishCursor.limit === name ? this.republishCursor.index : 0, budget, store.epochOf(now), group(name, store).entries)
      budget -= visited
      if (next >= 0) {
        this.republishCursor = { limit: name, index: next }
        return
      }
      at = (at + 1) % names.length
      this.republishCursor = { limit: names[at], index: 0 }
    }
  }

  collectAggregates (all: boolean, lookbackMs = 0): CounterGroup[] {
    const groups: CounterGroup[] = []
    const now = this.clock.now()
    for (const [name, store] of this.wire) {
      if (!store.aggregated) continue
      const entries: number[] = []
      store.drainAggregates(entries, Math.max(AGGREGATE_SLOTS, Math.ceil(lookbackMs / store.slotMs) + 1), all, store.epochOf(now))
      if (entries.length > 0) groups.push({ limit: name, slotMs: store.slotMs, entries })
    }
    return groups
  }

  applyAggregate (region: string, groups: CounterGroup[]): number {
    const rep = this.replicaIndex(REGION_PREFIX + region, 0)
    if (rep < 0) return 0
    const now = this.clock.now()
    const before = this.merged
    for (const g of groups) {
      const store = this.wire.get(g.limit)
      // Only global limits take other regions' totals (a region-scoped one must not).
      if (store === undefined || !store.aggregated || store.slotMs !== g.slotMs) {
        this.unknownGroups++
        continue
      }
      store.aggregateReps.add(rep)
      const nowEpoch = store.epochOf(now)
      const e = g.entries
      for (let j = 0; j < e.length; j += 3) this.count(store.mergeHash(e[j], rep, e[j + 1], e[j + 2], nowEpoch))
    }
    return this.merged - before
  }

  applyDelta (from: string, msg: DeltaMessage): Verdict {
    let rep = this.lastReplica.get(from)
    if (rep === undefined || this.repIncarnation[rep] !== msg.incarnation) {
      rep = this.replicaIndex(from, msg.incarnation)
      if (rep < 0) return 'reject'
      this.repIncarnation[rep] = msg.incarnation
      this.lastReplica.set(from, rep)
    }
    const now = this.clock.now()
    for (const g of msg.groups) {
      const store = this.wire.get(g.limit)
      // A peer running other policies (mid-rollout) may send limits we do not have.
      if (store === undefined || store.slotMs !== g.slotMs) {
        this.unknownGroups++
        continue
      }
      const nowEpoch = store.epochOf(now)
      const e = g.entries
      store.warm(e, rep)
      for (let j = 0; j < e.length; j += 3) this.count(store.mergeHash(e[j], rep, e[j + 1], e[j + 2], nowEpoch))
    }
    return 'accept'
  }

  /**
   * The replica index of (peer, incarnation), interning it; -1 when the peer already
   * used MAX_INCARNATIONS_PER_PEER incarnations (a peer cannot grow our tables at will).
   */
  private replicaIndex (peerId: string, incarnation: number): number {
    const key = replicaKey({ peerId, incarnation })
    const known = this.replicas.lookup(key)
    if (known !== undefined) return known
    const n = this.incarnations.get(peerId) ?? 0
    // Per peer, and in all: snapshots relay other replicas, whose ids a lying peer could invent.
    if (n >= MAX_INCARNATIONS_PER_PEER || this.replicas.size >= MAX_REPLICAS) {
      this.refusedReplicas++
      return -1
    }
    this.incarnations.set(peerId, n + 1)
    return this.replicas.intern(key)
  }

  private count (r: MergeResult): void {
    if (r === MergeResult.Applied) this.merged++
    else if (r === MergeResult.Stale) this.stale++
    else if (r === MergeResult.TooFarAhead) this.ahead++
  }

  snapshotPage (cursor: SnapshotCursor | undefined, maxEntries: number): SnapshotPage {
    const names = [...this.wire.keys()]
    let at = cursor === undefined ? 0 : names.indexOf(cursor.limit)
    let from = cursor === undefined || at < 0 ? 0 : cursor.index
    // A cursor naming a limit we no longer run restarts the walk (the puller bounds its pages).
    if (at < 0) at = 0
    const now = this.clock.now()
    const groups: SnapshotGroup[] = []
    let total = 0
    for (; at < names.length; at++, from = 0) {
      const store = this.wire.get(names[at]) as WindowStore
      const flat: number[] = []
      const next = store.snapshotRange(from, maxEntries - total, store.epochOf(now), true, flat)
      if (flat.length > 0) {
        // Re-index replicas into a page-local table of replica keys.
        const local = new Map<number, number>()
        const replicas: string[] = []
        for (let j = 0; j < flat.length; j += 4) {
          let r = local.get(flat[j])
          if (r === undefined) {
            r = replicas.length
            replicas.push(this.replicas.keyOf(flat[j]))
            local.set(flat[j], r)
          }
          flat[j] = r
        }
        groups.push({ limit: names[at], slotMs: store.slotMs, replicas, entries: flat })
        total += flat.length / 4
      }
      if (next >= 0) return { next: { limit: names[at], index: next }, groups }
      if (total >= maxEntries && at + 1 < names.length) return { next: { limit: names[at + 1], index: 0 }, groups }
    }
    return { next: undefined, groups }
  }

  applySnapshot (groups: SnapshotGroup[]): number {
    const now = this.clock.now()
    const before = this.merged
    for (const g of groups) {
      const store = this.wire.get(g.limit)
      if (store === undefined || store.slotMs !== g.slotMs) {
        this.unknownGroups++
        continue
      }
      const reps = g.replicas.map(key => {
        if (key === this.ownKey) return 0
        const r = parseReplicaKey(key) as ReplicaId
        // Other regions' aggregates travel in snapshots too: only global limits hold them.
        const isRegion = r.peerId.startsWith(REGION_PREFIX)
        if (isRegion && !store.aggregated) return -1
        const rep = this.replicaIndex(r.peerId, r.incarnation)
        if (isRegion && rep >= 0) store.aggregateReps.add(rep)
        return rep
      })
      const nowEpoch = store.epochOf(now)
      const e = g.entries
      for (let j = 0; j < e.length; j += 4) {
        const rep = reps[e[j]]
        if (rep < 0) continue
        this.count(store.mergeHash(e[j + 1], rep, e[j + 2], e[j + 3], nowEpoch))
      }
    }
    return this.merged - before
  }

  sweep (): void {
    const now = this.clock.now()
    for (const rt of this.runtimes.values()) {
      for (const [, store] of rt.stores) {
        store.sweep(store.epochOf(now), Math.max(1024, Math.ceil(store.size / 8)))
      }
    }
    this.escrow?.sweep()
  }

  private scheduleSweep (): void {
    this.cancelSweep = this.clock.setTimer(this.sweepIntervalMs, () => {
      if (this.closed) return
      this.sweep()
      this.scheduleSweep()
    })
  }

  stats (): LimiterStats {
    const limits: LimitStats[] = []
    for (const rt of this.runtimes.values()) {
      let keys = 0
      let evictions = 0
      let expired = 0
      for (const [, store] of rt.stores) {
        const s = store.stats()
        keys = Math.max(keys, s.keys)
        evictions += s.evictions
        expired += s.expired
      }
      limits.push({ name: rt.name, algorithm: rt.algorithm, shadowDenied: rt.shadowDenied, keys, evictions, expired })
    }
    return {
      replica: replicaKey(this.replica),
      limits,
      mergedEntries: this.merged,
      staleEntries: this.stale,
      aheadDropped: this.ahead,
      unknownLimitGroups: this.unknownGroups,
      refusedReplicas: this.refusedReplicas,
      replicator: this.replicator?.stats,
      escrow: this.escrow === undefined ? undefined : { ...this.escrow.stats }
    }
  }

  inspect (limit: string, key: string, withReplicas = false): KeyCounters | undefined {
    // A wire name ("policy/limit#den") reads that store of the limit.
    const store = this.runtimes.get(limit)?.stores[0][1] ?? this.wire.get(limit)
    if (store === undefined) return undefined
    // Keys merged from peers before any local check are known by wire hash only.
    const i = store.replicated ? store.findHash(store.hashKey(key)) : store.find(key)
    if (i < 0) return undefined
    const head = store.headOf(i)
    const firstEpoch = head - store.pastSlots + 1
    const totals: number[] = []
    for (let e = firstEpoch; e <= head + store.futureSlots; e++) totals.push(store.slotTotal(i, e))
    const out: KeyCounters = { slotMs: store.slotMs, head, firstEpoch, totals }
    if (withReplicas) {
      const replicas = new Map<string, number[]>()
      for (const [epoch, row] of Object.entries(store.entriesOf(i))) {
        for (const [rep, count] of Object.entries(row)) {
          const name = this.replicas.keyOf(Number(rep))
          const list = replicas.get(name)
          if (list === undefined) replicas.set(name, [Number(epoch), count])
          else list.push(Number(epoch), count)
        }
      }
      out.replicas = replicas
    }
    return out
  }

  close (): void {
    if (this.closed) return
    this.replicator?.stop()
    this.escrow?.stop()
    this.closed = true
    this.cancelSweep?.()
    this.ownClock?.stop()
  }

  private assertOpen (): void {
    if (this.closed) throw new MeshlimitError(ErrorCode.STATE_INVALID, 'the limiter is closed. Fix: create a new limiter', 'limiter')
  }
}

/**
 * Creates a limiter. With a `transport`, usage of every limit not scoped `node` is
 * gossiped every `flushIntervalMs` and merged from peers; without one it is local.
 */
export function createLimiter (init: LimiterInit): Limiter {
  if (typeof init !== 'object' || init === null) {
    throw invalid(ErrorCode.OPTION_INVALID, 'init', init, 'must be an object', 'pass { policies: ... }')
  }
  if (init.policies === undefined) {
    throw invalid(ErrorCode.OPTION_INVALID, 'policies', undefined, 'is required', 'pass policies as a document, JSON or YAML text')
  }
  return new LimiterImpl(init)
}

/**
 * A numeric experiment switch from the environment (the chaos simulator's measurements
 * of the share rule's levers), or `fallback` when unset; read once per limiter, never per check.
 */
function experimentSwitch (name: string, fallback: number, min: number, max: number): number {
  const raw = typeof process === 'undefined' ? undefined : process.env[name]
  if (raw === undefined || raw === '') return fallback
  const v = Number(raw)
  if (!Number.isFinite(v) || v < min || v > max) throw invalid(ErrorCode.OPTION_INVALID, name, raw, `must be a number from ${min} to ${max}`, `unset ${name} for the default ${fallback}`)
  return v
}
