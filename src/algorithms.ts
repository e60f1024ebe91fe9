import type { EscrowTable } from './escrow.js'
import { WindowStore } from '../crdt/window-store.js'
import type { Algorithm, Limit, PartitionMode, Scope } from './policy/types.js'

/**
 * What a decision reports about a limit that does not change per request; rebuilt on
 * every policy install (scope and shadow belong to the policy).
 */
export interface LimitInfo {
  readonly policy: string
  readonly id: string
  /** The ceiling when the policy was installed (the runtime's `max`). */
  readonly limit: number
  readonly algorithm: Algorithm
  readonly scope: Scope
  readonly windowMs: number
  readonly shadow: boolean
}

/** Options shared by every limit's stores. */
export interface StoreOptions {
  maxKeys: number
  hashSeed: number
  maxClockSkewMs: number
  replicated: boolean
  /** Global limits of a multi-region mesh: keep region totals for aggregates. */
  aggregated?: boolean
  samplerSeed: number
}

/**
 * The runtime of one limit: its counters and its admission arithmetic. A runtime is
 * identified by `name` ("policy/limit") and outlives policy reloads that keep the
 * name and the counter layout; `max` may change in place.
 *
 * The limiter calls, per matched limit: `locate` (find or create the key, aligned to
 * now), `usage` (current estimate in limit units), and only when every limit passed,
 * `commit`. `usage` and `commit` are O(1) amortised; `retryAfterMs` and `resetMs` may
 * walk the key's slots (O(slots)).
 */
export abstract class LimitRuntime {
  readonly name: string
  /** The limit's id within its policy. */
  readonly id: string
  readonly algorithm: Algorithm
  /** The ceiling usage + cost is compared against. */
  max: number
  /** Requests this limit would have denied while its policy is in shadow mode (a cheap metrics field). */
  shadowDenied = 0
  /** Static report data, set by the limiter when it binds the runtime to a policy. */
  info!: LimitInfo
  /**
   * Local shares (set by the limiter for gossiped limits): this node may spend, between
   * syncs, at most its demand share of the budget left one sync period ahead.
   */
  shares = false
  /** The sync period shares are computed over, in ms (flush interval plus delivery). */
  shareHorizonMs = 0
  /** The same for counts that cross regions in aggregates (global limits of a multi-region mesh). */
  crossRegionHorizonMs = 0
  /** A sliding window's shares engage above this many times the limit of settled demand (experiment switch, set by the limiter). */
  shareEngage = SHARE_ENGAGE
  /** Requests of slack in each sliding-window cap beyond its demand share (experiment switch, set by the limiter). */
  shareSlack = SHARE_SLACK
  /**
   * Headroom a sliding window keeps for peers' admissions it has not seen yet, in
   * multiples of their settled rate x a quarter of the share horizon; 0: none (experiment
   * switch, set by the limiter).
   */
  shareMargin = 0
  /** What to do while part of the limit's scope is unreachable (set from the policy). */
  onPartition: PartitionMode = 'share'
  /** Strict mode: the escrow of this limit's rights (set by the limiter for gossiped strict limits). */
  escrow: EscrowTable | undefined = undefined
  /** Whether members of the limit's scope are unreachable now (set by the limiter). */
  degraded = false
  /** This node's weight share of the scope's last known members, while degraded. */
  partitionShare = 1
  /**
   * Until this time (ms) after a partition heals, the partition cap still applies: the
   * share histories of the two sides lack each other for a few slots.
   */
  recoverUntil = 0
  readonly windowMs: number
  readonly slotMs: number
  /** Epoch computed by the last locate(), reused by the commit() of the same check. */
  protected epoch = 0
  private lastNow = NaN
  /** The stores holding this limit's counters, by wire suffix ("", "#den" for a sliding window's denied units, "#acq"/"#rel"). */
  abstract readonly stores: ReadonlyArray<readonly [string, WindowStore]>

  constructor (name: string, limit: Limit, slotMs: number) {
    this.name = name
    this.id = limit.id
    this.algorithm = limit.algorithm
    this.max = limit.limit
    this.windowMs = limit.windowMs
    this.slotMs = slotMs
  }

  /** Slab index of `key`, created when absent and aligned to `now`. */
  abstract locate (key: string, now: number): number
  /** Usage estimate of key `i` at `now`, in limit units (requests, tokens or leases). */
  abstract usage (i: number, now: number): number
  /** Records `cost` against key `i` at `now` (right after locate() of the same check). */
  abstract commit (i: number, now: number, cost: number): void
  /** Milliseconds until the key's current usage has fully drained, with no new traffic. */
  abstract resetMs (i: number, now: number): number
  /**
   * Earliest wait, in ms, after which `cost` would fit given what this node knows now;
   * Infinity when cost exceeds the limit itself.
   */
  abstract retryAfterMs (i: number, now: number, usage: number, cost: number): number

  /** The slot epoch of `now`, remembered while the (coarse) clock stands still. */
  protected epochAt (now: number): number {
    if (now !== this.lastNow) {
      this.lastNow = now
      this.epoch = Math.floor(now / this.slotMs)
    }
    return this.epoch
  }

  /** The store holding this limit's admissions (shares are computed on it). */
  get primary (): WindowStore {
    return this.stores[0][1]
  }

  /** The units this limit allows over its retained slots (the window's limit; a bucket's burst plus refill). */
  capacity (): number {
    return this.max
  }

  /**
   * Records that `cost` units asked of key `i` were not admitted (local shares: peers
   * learn the key's demand, not only its admissions). No-op by default.
   */
  noteDenied (_i: number, _now: number, _cost: number): void {}

  /** This node's own part of usage(), measured the way usage() measures the total. */
  ownUsage (i: number, _now: number): number {
    return this.primary.ownSumOf(i)
  }

  /**
   * The local share rule, for a key other replicas wrote to lately (applied after the
   * simple rule said yes): this node's own usage in the window stays within its share of
   * the limit, its local cap. Shares sum to about one across nodes, so together they stay
   * within the limit however stale each view is.
   *
   * Shares compare admissions in completed slots, this node's and its peers' (both
   * halved per slot, so they outlive a fixed window's boundary, and both as old as the
   * gossip that carried them, so a node's own admissions in the current slot do not
   * inflate its share during a burst). A node whose admissions lag its demand (new
   * traffic) counts its demand up to half a fair share, so an empty history does not
   * starve it; only nodes below that floor are lifted, so noise around an even split
   * cannot make shares sum to more than one. When every node's demand fits the limit
   * the rule stands aside (nobody can over-admit then). A cap below one request (a
   * small limit over many nodes) is honoured on average, by one coin per window.
   */
  shareAllows (i: number, now: number, cost: number): boolean {
    const s = this.primary
    const writers = s.writersOf(i)
    if (writers <= 1) return true
    this.shareWeights(i)
    const own = this.wOwn
    const peers = this.wPeers
    // When everyone's demand fits the limit, nobody can over-admit (admissions never
    // exceed arrivals) and caps could only deny: share only a key that is over-asked.
    // Peers' admissions stand for their demand (under overload they fill what is left).
    if ((this.wDemand + peers) * this.wScale < this.capacity()) return true
    let share: number
    if (own + peers === 0) {
      // Admissions come in bursts when capacity frees, so history can fade between
      // them; the writers are still there: split equally.
      share = 1 / writers
    } else {
      // The floor lifts a starved node (demand, but nothing admitted in the whole
      // window: new traffic) to half a fair share. Lifting every node below average, or
      // one whose admissions only fell outside the weighed slots, would make shares sum
      // to more than one.
      const starved = s.ownSumOf(i) === 0
      const weight = starved ? Math.min(this.wDemand, (own + peers) / writers / 2) : own
      share = weight / (weight + peers)
    }
    const room = share * this.capacity() - this.ownUsage(i, now)
    if (cost <= room + 1e-9) return true
    // A room below one request (a small limit over many nodes) is honoured on average,
    // by one coin per key and window: a coin per request would almost surely let the
    // unit through under overload.
    return room > 0 && this.coin(i, Math.floor(s.headOf(i) / this.coinSlots)) * cost < room
  }

  /**
   * The partition rule (while degraded, mode "share"): this node's own usage stays within
   * its weight share of the limit among every member last known, reachable or not, so
   * the sides of a partition together stay within the limit however long it lasts.
   */
  partitionAllows (i: number, now: number, cost: number): boolean {
    const room = this.partitionShare * this.capacity() - this.ownUsage(i, now)
    if (cost <= room + 1e-9) return true
    return room > 0 && this.coin(i, Math.floor(this.primary.headOf(i) / this.coinSlots)) * cost < room
  }

  /** Share weights of the last shareWeights() call (fields, not a tuple: no allocation). */
  protected wOwn = 0
  protected wPeers = 0
  protected wDemand = 0
  /** Turns the weights into amounts per window (retained span). */
  protected wScale = 1

  /**
   * Sets wOwn, wPeers and wDemand for key `i`: admissions of this node and of its peers
   * over slots whose gossip has arrived, and this node's demand on the same scale. By
   * default the decayed history of slots at least two old (see the window store).
   */
  protected shareWeights (i: number): void {
    const s = this.primary
    this.wOwn = s.ownRecentOf(i)
    this.wPeers = s.peersRecentOf(i)
    this.wDemand = s.demandOf(i)
    // The history weighs about two slots' worth (halved per slot).
    this.wScale = (s.pastSlots - 1 || 1) / 2
  }

  /** This node's salt for coins (set by the limiter from its replica id). */
  coinSalt = 0x9e3779b9
  /** Slots one coin covers: the span a cap is measured over (a window). */
  protected coinSlots = 1

  /** A uniform [0, 1) value fixed per (key, slot) and node. */
  protected coin (i: number, epoch: number): number {
    let h = Math.imul(i ^ this.coinSalt, 0x85ebca6b) ^ Math.imul((epoch % 0x7fffffff) | 0, 0xc2b2ae35)
    h ^= h >>> 16
    h = Math.imul(h, 0x7feb352d)
    h ^= h >>> 15
    return (h >>> 0) / 0x100000000
  }

  /** Whether a store built from `limit` would lay counters out the same way. */
  compatible (limit: Limit, slotMs: number): boolean {
    return limit.algorithm === this.algorithm && limit.windowMs === this.windowMs && slotMs === this.slotMs
  }
}

/** Wire suffix of a sliding window's denied units. */
export const DENIED_SUFFIX = '#den'

/** A sliding window's shares engage once the key's settled demand per window passes the limit by this factor. */
export const SHARE_ENGAGE = 1.1
/** Requests of slack a sliding window's cap holds beyond its demand share (see SlidingWindow.shareAllows). */
export const SHARE_SLACK = 1

/** Slot width and retained slot count of a limit. */
export function layoutOf (limit: Limit): { slotMs: number, pastSlots: number } {
  switch (limit.algorithm) {
    case 'fixed-window':
      return { slotMs: limit.windowMs, pastSlots: 1 }
    case 'token-bucket':
      // k slots of at least burst/(rate*k): after k slots a full bucket has drained.
      return { slotMs: Math.max(1, Math.ceil(limit.windowMs / limit.slots)), pastSlots: limit.slots + 1 }
    default:
      return { slotMs: limit.windowMs / limit.slots, pastSlots: limit.slots + 1 }
  }
}

function makeStore (slotMs: number, pastSlots: number, o: StoreOptions, salt: number, carryPerSlot?: number): WindowStore {
  return new WindowStore({
    carryPerSlot,
    aggregated: o.aggregated === true && o.replicated,
    slotMs,
    pastSlots,
    futureSlots: o.maxClockSkewMs <= 0 ? 0 : Math.min(pastSlots, Math.ceil(o.maxClockSkewMs / slotMs)),
    maxKeys: o.maxKeys,
    hashSeed: o.hashSeed,
    replicated: o.replicated,
    samplerSeed: o.samplerSeed + salt
  })
}

/**
 * Sliding-window counter over k slots of windowMs/k: the estimate counts every slot
 * inside the window in full, and the oldest slot (which the window's start cuts)
 * weighted by the share of it still inside, which assumes its requests were spread
 * evenly (Cloudflare's two-slot formula generalised to k slots).
 */
export class SlidingWindow extends LimitRuntime {
  readonly store: WindowStore
  /** Units asked for but not admitted, per replica and slot (gossiped: the demand peers see). */
  readonly denied: WindowStore | undefined
  readonly stores: ReadonlyArray<readonly [string, WindowStore]>
  private readonly k: number

  constructor (name: string, limit: Limit, o: StoreOptions) {
    const { slotMs, pastSlots } = layoutOf(limit)
    super(name, limit, slotMs)
    this.k = limit.slots
    this.coinSlots = limit.slots
    this.store = makeStore(slotMs, pastSlots, o, 0)
    this.denied = o.replicated ? makeStore(slotMs, pastSlots, o, 2) : undefined
    this.stores = this.denied === undefined ? [['', this.store]] : [['', this.store], [DENIED_SUFFIX, this.denied]]
  }

  override noteDenied (i: number, _now: number, cost: number): void {
    const d = this.denied
    // Only keys other replicas write need their demand known: a key one node sees (a flood
    // of distinct keys) costs no denied record and no gossip.
    if (d === undefined || this.store.writersOf(i) <= 1) return
    const j = d.acquireHash(this.store.hashOf(i), this.epoch)
    d.add(j, this.epoch, cost)
  }

  /**
   * Local shares of a sliding window, from its settled part: the slots older than the
   * share horizon, whose gossip has arrived, so every node holds the same counts there.
   *
   * - The key's demand there (units admitted and units denied, by every replica), per
   *   window, says whether it is over-asked: at most SHARE_ENGAGE x the limit, the rule
   *   stands aside (nobody is denied for spreading traffic over nodes; what the simple
   *   rule lets through near the limit is its staleness term).
   * - Over-asked, this node's own usage in the window stays within
   *   limit x (own demand per window + 1) / demand per window. The shares of all nodes
   *   sum to the limit plus one request per node: a node that spent its share waits a
   *   window for it to slide out and then for its next request, so without that one
   *   request sparse traffic would use only rW / (rW + 1) of the limit (r requests per
   *   window per node); with it the expected total is the limit.
   * - A room below one request is honoured on average, by one coin per key and window.
   */
  override shareAllows (i: number, now: number, cost: number): boolean {
    const s = this.store
    if (s.writersOf(i) <= 1) return true
    const k = this.k
    const u = this.unsettledSlots
    const span = k - u
    if (span <= 0) return true
    const h = s.headOf(i)
    // Settled slots: h-k+1 .. h-u (the cut slot and the newest u left out).
    let all = s.sumOf(i) - s.aheadOf(i) - s.totalAt(i, -k)
    let own = s.ownSumOf(i) - s.ownAt(i, h - k)
    for (let off = 0; off < u; off++) {
      all -= s.totalAt(i, -off)
      own -= s.ownAt(i, h - off)
    }
    if (this.shareMargin > 0 && !this.marginAllows(i, now, cost, all - own, span)) return false
    const d = this.denied
    const j = d === undefined ? -1 : d.findHash(s.hashOf(i))
    if (j >= 0) {
      const dn = d as WindowStore
      dn.advance(j, h)
      let dAll = dn.sumOf(j) - dn.aheadOf(j) - dn.totalAt(j, -k)
      let dOwn = dn.ownSumOf(j) - dn.ownAt(j, h - k)
      for (let off = 0; off < u; off++) {
        dAll -= dn.totalAt(j, -off)
        dOwn -= dn.ownAt(j, h - off)
      }
      all += dAll
      own += dOwn
    }
    const cap = this.capacity()
    const demand = all * k / span
    if (demand <= cap * this.shareEngage) return true
    const room = cap * (own * k / span + this.shareSlack) / demand - this.ownUsage(i, now)
    if (cost <= room + 1e-9) return true
    return room > 0 && this.coin(i, Math.floor(h / this.coinSlots)) * cost < room
  }

  /**
   * Experiment (shareMargin): the simple rule with headroom for what peers admitted that
   * this view lacks, estimated as their settled admissions per ms times a quarter of the
   * share horizon (for the default horizon, half a flush interval: the mean wait).
   */
  private marginAllows (i: number, now: number, cost: number, peersSettled: number, span: number): boolean {
    const horizon = this.store.aggregateReps.size > 0 ? this.crossRegionHorizonMs : this.shareHorizonMs
    const unseen = this.shareMargin * peersSettled / (span * this.slotMs) * horizon / 4
    return this.usage(i, now) + unseen + cost <= this.max + 1e-9
  }

  /** Newest slots whose gossip may still be arriving (other regions' aggregates arrive later). */
  get unsettledSlots (): number {
    const horizon = this.store.aggregateReps.size > 0 ? this.crossRegionHorizonMs : this.shareHorizonMs
    return Math.max(1, Math.ceil(horizon / this.slotMs))
  }

  locate (key: string, now: number): number {
    const s = this.store
    const e = this.epochAt(now)
    const i = s.acquire(key, e)
    if (e > s.headOf(i)) s.advance(i, e)
    return i
  }

  usage (i: number, now: number): number {
    const s = this.store
    const oldest = s.totalAt(i, -this.k)
    if (oldest === 0) return s.sumOf(i)
    // Subtract before dividing: epochs times slotMs are exact, so the share is too.
    const frac = (now - s.headOf(i) * this.slotMs) / this.slotMs
    return s.sumOf(i) - oldest * (frac > 0 ? frac : 0)
  }

  commit (i: number, _now: number, cost: number): void {
    this.store.add(i, this.epoch, cost)
  }

  override ownUsage (i: number, now: number): number {
    const s = this.store
    const h = s.headOf(i)
    const oldest = s.ownAt(i, h - this.k)
    const frac = (now - h * this.slotMs) / this.slotMs
    return s.ownSumOf(i) - oldest * (frac > 0 ? frac : 0)
  }

  resetMs (i: number, now: number): number {
    const s = this.store
    // The newest slot with usage leaves the window k+1 slots after it started.
    if (s.aheadOf(i) !== 0) {
      for (let e = s.headOf(i) + s.futureSlots; e > s.headOf(i); e--) {
        if (s.slotTotal(i, e) > 0) return Math.max(0, (e + this.k + 1) * this.slotMs - now)
      }
    }
    const newest = s.newestEpoch(i)
    return newest === newest ? Math.max(0, (newest + this.k + 1) * this.slotMs - now) : 0
  }

  retryAfterMs (i: number, now: number, usage: number, cost: number): number {
    const target = this.max - cost
    if (target < 0) return Infinity
    if (usage <= target) return 0
    const s = this.store
    const h = s.headOf(i)
    const w = this.slotMs
    const k = this.k
    // At a time in slot m = h + j, the window holds slot m - k weighted by the part of
    // it still inside, plus every newer slot in full (a below); walk j until it fits.
    // Past slots are read by offset (no range checks); slots ahead only exist when
    // peers with fast clocks wrote them, and are walked the slow way.
    let a = s.sumOf(i)
    for (let j = 0; j <= k; j++) {
      const b = s.totalAt(i, j - k)
      a -= b
      if (a > target) continue
      // usage(f) = a + b * (1 - f), f the elapsed share of slot m: solve for f.
      const f = b > 0 ? Math.max(0, 1 - (target - a) / b) : 0
      return Math.max(0, Math.ceil((h + j + f) * w - now))
    }
    for (let j = k + 1; j <= k + s.futureSlots + 1; j++) {
      const b = s.slotTotal(i, h + j - k)
      a -= b
      if (a > target) continue
      const f = b > 0 ? Math.max(0, 1 - (target - a) / b) : 0
      return Math.max(0, Math.ceil((h + j + f) * w - now))
    }
    return Math.max(0, Math.ceil((h + k + s.futureSlots + 1) * w - now))
  }
}

/** Fixed window: one counter per window-aligned period, reset at each boundary. */
export class FixedWindow extends LimitRuntime {
  readonly store: WindowStore
  readonly stores: ReadonlyArray<readonly [string, WindowStore]>

  constructor (name: string, limit: Limit, o: StoreOptions) {
    super(name, limit, limit.windowMs)
    this.store = makeStore(limit.windowMs, 1, o, 0)
    this.stores = [['', this.store]]
  }

  locate (key: string, now: number): number {
    const s = this.store
    const e = this.epochAt(now)
    const i = s.acquire(key, e)
    if (e > s.headOf(i)) s.advance(i, e)
    return i
  }

  usage (i: number): number {
    // Includes windows ahead of the local clock (peers whose clocks run fast): counting
    // them early can only deny, never over-admit.
    return this.store.sumOf(i)
  }

  commit (i: number, _now: number, cost: number): void {
    this.store.add(i, this.epoch, cost)
  }

  resetMs (i: number, now: number): number {
    return Math.max(0, (this.store.headOf(i) + 1) * this.slotMs - now)
  }

  retryAfterMs (i: number, now: number, usage: number, cost: number): number {
    const target = this.max - cost
    if (target < 0) return Infinity
    if (usage <= target) return 0
    const s = this.store
    const h = s.headOf(i)
    // Usage in window h + j is what peers with fast clocks already counted there and beyond.
    let ahead = s.aheadOf(i)
    for (let j = 1; j <= s.futureSlots + 1; j++) {
      if (ahead <= target) return Math.max(0, Math.ceil((h + j) * this.slotMs - now))
      ahead -= s.slotTotal(i, h + j)
    }
    return Math.max(0, Math.ceil((h + s.futureSlots + 1) * this.slotMs - now))
  }
}

/**
 * Token bucket (rate r, capacity b) as a leaky-bucket level computed from the slot
 * counts, so every node that holds the same counts computes the same level.
 *
 * The level at the start of slot e+1 is max(0, L(e) - r*slotMs) + count(e): tokens
 * taken in a slot start to refill when the slot closes, which errs towards denying by
 * at most one slot of refill (r*slotMs = b/k tokens). Within the current slot the
 * level is max(0, L(head) - r*elapsed) + count(head). A busy bucket never forgets its
 * history, so the store folds every slot that leaves the ring into a carried level
 * with the same recurrence; L(head) starts from it and runs over the k retained
 * slots. It is cached per key and recomputed (O(k)) only when the head moves or a
 * peer's entry lands in a past slot. Because the model only delays refills, admitted
 * units over any interval of length T never exceed b + r*T.
 */
export class TokenBucket extends LimitRuntime {
  readonly store: WindowStore
  readonly stores: ReadonlyArray<readonly [string, WindowStore]>
  readonly ratePerMs: number
  private readonly k: number

  constructor (name: string, limit: Limit, o: StoreOptions) {
    const { slotMs, pastSlots } = layoutOf(limit)
    super(name, limit, slotMs)
    this.k = limit.slots
    this.coinSlots = limit.slots
    this.ratePerMs = limit.ratePerSecond / 1000
    this.store = makeStore(slotMs, pastSlots, o, 0, this.ratePerMs * slotMs)
    this.stores = [['', this.store]]
  }

  override compatible (limit: Limit, slotMs: number): boolean {
    return super.compatible(limit, slotMs) && limit.ratePerSecond / 1000 === this.ratePerMs
  }

  override capacity (): number {
    // What the bucket lets through over its retained slots: the burst plus the refill.
    return this.max + this.ratePerMs * this.slotMs * this.k
  }

  locate (key: string, now: number): number {
    const s = this.store
    const e = this.epochAt(now)
    const i = s.acquire(key, e)
    if (e > s.headOf(i)) s.advance(i, e)
    return i
  }

  /** Level at the start of the head slot, from the cache or the k slots before it. */
  private levelAtHead (i: number): number {
    const s = this.store
    const cached = s.auxOf(i)
    if (cached === cached) return cached
    const drain = this.ratePerMs * this.slotMs
    let level = s.carriedOf(i)
    for (let off = -this.k; off < 0; off++) {
      level = Math.max(0, level - drain) + s.totalAt(i, off)
    }
    s.setAux(i, level)
    return level
  }

  /** Usage in the head slot, including slots ahead of the local clock. */
  private current (i: number): number {
    const s = this.store
    return s.totalAt(i, 0) + s.aheadOf(i)
  }

  usage (i: number, now: number): number {
    const s = this.store
    const start = this.levelAtHead(i)
    const elapsed = now - s.headOf(i) * this.slotMs
    const drained = start - this.ratePerMs * (elapsed > 0 ? elapsed : 0)
    return (drained > 0 ? drained : 0) + this.current(i)
  }

  commit (i: number, _now: number, cost: number): void {
    this.store.add(i, this.epoch, cost)
  }

  resetMs (i: number, now: number): number {
    const s = this.store
    const start = this.levelAtHead(i)
    const c = this.current(i)
    const elapsed = Math.max(0, now - s.headOf(i) * this.slotMs)
    if (c === 0) return Math.ceil(Math.max(0, start - this.ratePerMs * elapsed) / this.ratePerMs)
    const next = Math.max(0, start - this.ratePerMs * this.slotMs) + c
    return Math.ceil((s.headOf(i) + 1) * this.slotMs - now + next / this.ratePerMs)
  }

  retryAfterMs (i: number, now: number, usage: number, cost: number): number {
    const target = this.max - cost
    if (target < 0) return Infinity
    if (usage <= target) return 0
    const s = this.store
    const h = s.headOf(i)
    const start = this.levelAtHead(i)
    const c = this.current(i)
    if (c <= target) {
      // Draining the carried-over level within (or past) this slot is enough.
      return Math.max(0, Math.ceil(h * this.slotMs + (start + c - target) / this.ratePerMs - now))
    }
    // Tokens taken in this slot only start to refill when it closes.
    const next = Math.max(0, start - this.ratePerMs * this.slotMs) + c
    return Math.max(0, Math.ceil((h + 1) * this.slotMs + (next - target) / this.ratePerMs - now))
  }
}

/** What a concurrency lease must remember to release itself. */
export interface LeaseHold {
  readonly runtime: Concurrency
  readonly key: string
  readonly epoch: number
  readonly cost: number
}

/**
 * Concurrency limit as a windowed PN-Counter: acquisitions (P) and releases (N) are
 * counted in the slot of the acquisition, in two stores with the same layout, and
 * in-flight = P - N over the retained slots. A lease never released (its holder
 * crashed, or forgot) stops counting when its slot leaves the lease TTL, so leaked
 * leases heal by themselves.
 */
export class Concurrency extends LimitRuntime {
  readonly acquired: WindowStore
  readonly released: WindowStore
  readonly stores: ReadonlyArray<readonly [string, WindowStore]>
  /** Retry hint for denied acquisitions: in-flight work has no schedule to predict. */
  static readonly RETRY_HINT_MS = 1000

  constructor (name: string, limit: Limit, o: StoreOptions) {
    const { slotMs, pastSlots } = layoutOf(limit)
    super(name, limit, slotMs)
    this.acquired = makeStore(slotMs, pastSlots, o, 0)
    this.released = makeStore(slotMs, pastSlots, o, 1)
    this.stores = [['#acq', this.acquired], ['#rel', this.released]]
  }

  locate (key: string, now: number): number {
    const s = this.acquired
    const e = this.epochAt(now)
    const i = s.acquire(key, e)
    if (e > s.headOf(i)) s.advance(i, e)
    return i
  }

  usage (i: number, now: number): number {
    const key = this.acquired.keyAt(i)
    if (key === undefined) return this.acquired.sumOf(i)
    const r = this.released
    const j = r.find(key)
    if (j < 0) return this.acquired.sumOf(i)
    r.advance(j, Math.floor(now / this.slotMs))
    const inflight = this.acquired.sumOf(i) - r.sumOf(j)
    return inflight > 0 ? inflight : 0
  }

  commit (i: number, _now: number, cost: number): void {
    this.acquired.add(i, this.epoch, cost)
  }

  /** Counts the release of a lease acquired at `epoch` (a no-op once it left the TTL). */
  release (hold: LeaseHold, now: number): void {
    const e = Math.floor(now / this.slotMs)
    if (hold.epoch <= e - this.acquired.pastSlots) return
    const r = this.released
    const j = r.acquire(hold.key, e)
    r.advance(j, e)
    r.addAt(j, hold.epoch, hold.cost)
  }

  /** In-flight work is not a rate: concurrency limits take no local share. */
  override shareAllows (): boolean {
    return true
  }

  resetMs (): number {
    return 0
  }

  retryAfterMs (_i: number, _now: number, usage: number, cost: number): number {
    if (cost > this.max) return Infinity
    return usage + cost <= this.max ? 0 : Concurrency.RETRY_HINT_MS
  }
}

/** Builds the runtime for a limit. */
export function createRuntime (name: string, limit: Limit, o: StoreOptions): LimitRuntime {
  switch (limit.algorithm) {
    case 'sliding-window': return new SlidingWindow(name, limit, o)
    case 'fixed-window': return new FixedWindow(name, limit, o)
    case 'token-bucket': return new TokenBucket(name, limit, o)
    case 'concurrency': return new Concurrency(name, limit, o)
  }
}
