import type { ReplicaId } from '../crdt/replica.js'
import { createAggregator, type Aggregator, type AggregatorInit } from '../gossip/aggregates.js'
import { createAntiEntropy, type AntiEntropy, type AntiEntropyInit, type PullResult } from '../gossip/anti-entropy.js'
import type { Libp2pTransport, Libp2pTransportInit } from '../gossip/libp2p.js'
import { topicsOf, type Topics } from '../gossip/topics.js'
import type { Transport } from '../gossip/transport.js'
import { coarseClock, type Clock, type CoarseClock } from '../membership/clock.js'
import { createMembership, type Membership, type MembershipEvent, type MembershipInit } from '../membership/membership.js'
import { seededRandom } from '../membership/random.js'
import { ErrorCode, invalid } from './errors.js'
import { createPolicyDistributor, type PolicyDistributor, type PolicyDistributorInit, type StartupOutcome } from './policy/distribute.js'
import { createPolicyManager, type PolicyManager } from './policy/manager.js'
import { createLimiter, type Limiter, type LimiterInit } from './limiter.js'

/** A logger with pino's calling convention (pino itself fits). */
export interface MeshLogger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

export interface MeshNodeInit extends Omit<LimiterInit, 'transport' | 'clock' | 'topic' | 'incarnation'> {
  /**
   * Name of the mesh: nodes only hear nodes of the same mesh.
   * @default "default"
   */
  mesh?: string
  /**
   * Region of this node (counters are gossiped per region).
   * @default "default"
   */
  region?: string
  /**
   * Relative capacity of this node, announced in heartbeats.
   * @default 1
   */
  weight?: number
  /** Builds a libp2p node with these options (listen, bootstrap, psk, privateKey, mdns...). */
  network?: Omit<Libp2pTransportInit, 'topics'>
  /** Uses this transport instead of building a libp2p node (tests, the simulator). */
  transport?: Transport
  /** @default a coarse wall clock */
  clock?: Clock
  /**
   * Incarnation of this replica; must grow across restarts of the same peer id.
   * @default the clock's time in ms at start
   */
  incarnation?: number
  /**
   * Wait, at start, for the first anti-entropy pull (bounded by syncTimeoutMs) so the
   * node starts from the mesh's usage instead of zero.
   * @default true
   */
  syncOnStart?: boolean
  /**
   * Bound on the wait for peers and the first pull, in ms.
   * @default 5000
   */
  syncTimeoutMs?: number
  /**
   * Wait this long (once peers are found) before the start-up pull: messages peers
   * published before this node subscribed, still in flight to them, land first and are
   * in the snapshot (in-region delivery is well under it).
   * @default 2 x flushIntervalMs
   */
  syncSettleMs?: number
  /**
   * A second pull, from one peer, this long after the start-up pull: counts that peers
   * published before this node subscribed and had not received when they answered
   * (in flight, or before gossip learned of the new subscriber) arrive with it; 0 disables.
   * @default 1000
   */
  syncCatchUpMs?: number
  /**
   * Whether start-up should wait (up to syncTimeoutMs) for a first peer. A node that
   * cannot find peers (the first of a mesh) has nothing to wait for.
   * @default true with a given transport; with libp2p, whether bootstrap addresses or mDNS were given
   */
  expectPeers?: boolean
  /** Membership tuning (heartbeat interval, suspect and dead timings, skew warning). */
  membership?: Pick<MembershipInit, 'heartbeatIntervalMs' | 'suspectAfterMs' | 'deadAfterMs' | 'forgetAfterMs' | 'skewProbeIntervalMs' | 'skewWarnMs'>
  /** Anti-entropy tuning. */
  antiEntropy?: Pick<AntiEntropyInit, 'maxEntriesPerPage' | 'requestTimeoutMs' | 'pullIntervalMs'>
  /** Region aggregates of global limits (cross-region interval, publishers per region). */
  aggregates?: Pick<AggregatorInit, 'intervalMs' | 'publishers' | 'fullEvery' | 'lookbackMs'>
  /** The policy version this node runs, announced in heartbeats. @default the policy set's version */
  policyVersion?: () => number
  /**
   * Operator public keys (`ed25519:...` from `meshlimit keygen`, or PEM). With them the
   * node runs signed policy bundles gossiped on the mesh, and `policies` is the fallback
   * it enforces until its first bundle (DENY_ALL_POLICIES to fail closed).
   */
  trustedKeys?: string[]
  /** A signed bundle to start from (e.g. the last one this node saved). */
  initialBundle?: Uint8Array
  /** Policy distribution tuning (announce interval, start-up wait for a bundle). */
  policyDistribution?: Pick<PolicyDistributorInit, 'announceIntervalMs' | 'startupTimeoutMs' | 'pullTimeoutMs'>
  logger?: MeshLogger
}

export interface MeshNode {
  readonly limiter: Limiter
  readonly peerId: string
  readonly replica: ReplicaId
  readonly region: string
  readonly topics: Topics
  readonly transport: Transport
  readonly membership: Membership
  readonly antiEntropy: AntiEntropy
  readonly aggregator: Aggregator
  /** Signed policy bundles (when trustedKeys were given): the manager, its distributor and how start-up went. */
  readonly policy: { manager: PolicyManager, distributor: PolicyDistributor, startup: StartupOutcome } | undefined
  /** The result of the start-up pull (undefined when syncOnStart was false). */
  readonly startupSync: PullResult | undefined
  /** Addresses peers can dial (empty when the transport is not libp2p). */
  multiaddrs(): string[]
  /** Flushes the last changes to peers, then stops everything this node started. */
  stop(): Promise<void>
}

const STARTUP_PULL_PEERS = 3
/** Delay that coalesces membership events into one reachability update. */
export const REACHABILITY_DEBOUNCE_MS = 20
/** Members first heard by a young node within this long of each other are pulled from in one round. */
const YOUNG_PULL_DELAY_MS = 1000
/** A node this young pulls from members it hears for the first time. */
const YOUNG_MS = 10_000

/** The anti-entropy protocol of a region (pulls stay within a region). */
export function syncProtocol (region: string): string {
  return `/meshlimit/sync/1/${region}`
}

/**
 * Peers a starting node may pull from: members known to be in its region first, then
 * peers whose region it does not know yet (a fresh node has heard few heartbeats);
 * never peers known to be elsewhere. Shuffled, so a fleet starting together does not
 * pull from the same three nodes.
 */
function pullCandidates (peers: string[], membership: Membership, region: string, random: () => number): string[] {
  const mine: string[] = []
  const unknown: string[] = []
  for (const p of peers) {
    const m = membership.member(p)
    if (m === undefined) unknown.push(p)
    else if (m.region === region && m.state === 'alive') mine.push(p)
  }
  const shuffle = (a: string[]): string[] => {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1))
      const t = a[i]
      a[i] = a[j]
      a[j] = t
    }
    return a
  }
  return [...shuffle(mine), ...shuffle(unknown)]
}

/**
 * Pulls from STARTUP_PULL_PEERS candidates at once, moving on to the next candidate
 * when one fails (another region's peer refuses the protocol), until that many answered
 * or none is left. Counts into `result` as it goes.
 */
async function startupPull (ae: AntiEntropy, candidates: string[], result: PullResult): Promise<PullResult> {
  let next = 0
  let inFlight = 0
  const worker = async (): Promise<void> => {
    while (result.peers + inFlight < STARTUP_PULL_PEERS && next < candidates.length) {
      inFlight++
      const r = await ae.pull([candidates[next++]])
      inFlight--
      result.peers += r.peers
      result.failed += r.failed
      result.pages += r.pages
      result.merged += r.merged
    }
  }
  await Promise.all(Array.from({ length: Math.min(STARTUP_PULL_PEERS, candidates.length) }, worker))
  return result
}

async function waitForPeers (transport: Transport, clock: Clock, timeoutMs: number): Promise<void> {
  const deadline = clock.now() + timeoutMs
  while (transport.peers().length === 0 && clock.now() < deadline) {
    await new Promise<void>(resolve => { clock.setTimer(25, resolve) })
  }
}

/**
 * Starts a mesh node: a transport (a libp2p node unless one is given), a limiter that
 * gossips on this region's counter topic, membership heartbeats and anti-entropy.
 * check() stays synchronous and never waits on the network; start-up waits (bounded)
 * for peers and a first anti-entropy pull.
 */
export async function createMeshNode (init: MeshNodeInit): Promise<MeshNode> {
  const mesh = init.mesh ?? 'default'
  const region = init.region ?? 'default'
  const named = <T>(field: string, value: string, f: () => T): T => {
    try {
      return f()
    } catch (err) {
      throw invalid(ErrorCode.OPTION_INVALID, field, value, (err as Error).message, 'use 1-64 letters, digits, "_", "." or "-"')
    }
  }
  const topics: Topics = named('mesh', mesh, () => topicsOf(mesh))
  named('region', region, () => topics.counters(region))
  let ownClock: CoarseClock | undefined
  const clock = init.clock ?? (ownClock = coarseClock())
  const incarnation = init.incarnation ?? Math.floor(clock.now())
  let libp2p: Libp2pTransport | undefined
  if (init.transport === undefined) {
    // Loaded on demand: a process that only embeds createLimiter never loads libp2p.
    const { createLibp2pTransport } = await import('../gossip/libp2p.js')
    libp2p = await createLibp2pTransport({
      ...init.network,
      topics: [topics.counters(region), topics.aggregates, topics.policies, topics.blocklist, topics.membership]
    })
  }
  const transport = init.transport ?? libp2p as Libp2pTransport
  const { mesh: _m, region: _r, weight, network: _n, transport: _t, clock: _c, incarnation: _i, syncOnStart, syncTimeoutMs, syncCatchUpMs: _s, syncSettleMs: _ss, expectPeers: _e, membership: membershipInit, antiEntropy: aeInit, aggregates: aggInit, policyVersion, logger, trustedKeys, initialBundle, policyDistribution, ...limiterInit } = init
  const limiter = createLimiter({ ...limiterInit, aggregateIntervalMs: aggInit?.intervalMs, clock, transport, incarnation, topic: topics.counters(region) })
  // A node with no way to find peers (the first of a mesh) has nothing to wait for at start.
  const findsPeers = init.expectPeers ?? (init.transport !== undefined || (init.network?.bootstrap?.length ?? 0) > 0 || init.network?.mdns === true)
  const manager = trustedKeys === undefined ? undefined : createPolicyManager({ trustedKeys, limiter, clock, initialBundle })
  const distributor = manager === undefined ? undefined : createPolicyDistributor({ ...policyDistribution, startupTimeoutMs: findsPeers ? policyDistribution?.startupTimeoutMs : 0, transport, clock, manager, topic: topics.policies })
  const membership = createMembership({
    ...membershipInit,
    transport,
    clock,
    topic: topics.membership,
    self: { incarnation, region, weight },
    policyVersion: policyVersion ?? (() => manager?.version ?? limiter.policies.version),
    policyHash: () => manager?.hash,
    // Heartbeats carry the seq of our last counter message, so a peer that lost it (and
    // heard nothing after it) still sees the gap; only same-region peers hear our counters.
    counterSeq: () => limiter.gossipSeq(),
    onCounterSeq: (m, seq) => { if (m.region === region) limiter.announcedSeq(m.peerId, m.incarnation, seq) }
  })
  // Gap tracking of a member that died or left is dropped (bounded state; a member back
  // from dead is tracked afresh and asked for everything it sent).
  membership.on(e => {
    if (e.type === 'left' || (e.type === 'change' && e.member.state === 'dead')) limiter.forgetPeer(e.member.peerId)
  })
  // A member running a newer bundle than ours: pull it.
  if (distributor !== undefined) {
    membership.on(e => {
      if (e.type === 'policy' && e.member.policyHash !== undefined) distributor.observe(e.member.peerId, e.member.policyVersion, e.member.policyHash)
    })
  }
  // Only peers of this region hold this region's counters: the protocol is per region,
  // so a peer of another region refuses the pull instead of answering the wrong counts.
  const sameRegion = (): string[] => {
    const connected = new Set(transport.peers())
    return membership.members().filter(m => m.state === 'alive' && m.region === region && connected.has(m.peerId)).map(m => m.peerId)
  }
  const antiEntropy = createAntiEntropy({ ...aeInit, transport, clock, state: limiter, protocol: syncProtocol(region), peers: sameRegion, random: seededRandom(incarnation ^ 0x5eed) })
  // A same-region count reaches the publisher up to a flush interval plus delivery late.
  const lookbackMs = (aggInit?.intervalMs ?? 250) + 2 * (init.flushIntervalMs ?? 50) + 50
  const aggregator = createAggregator({ lookbackMs, ...aggInit, transport, clock, state: limiter, membership, topic: topics.aggregates, region, maxClockSkewMs: init.maxClockSkewMs })
  // Which parts of the mesh are unreachable decides how limits of those scopes admit.
  const selfWeight = weight ?? 1
  const updateReachability = (): void => {
    let regionTotal = selfWeight
    let regionDown = 0
    let total = selfWeight
    let down = 0
    for (const m of membership.members()) {
      total += m.weight
      if (m.state !== 'alive') down += m.weight
      if (m.region !== region) continue
      regionTotal += m.weight
      if (m.state !== 'alive') regionDown += m.weight
    }
    limiter.setReachability({
      region: { unreachable: regionDown, share: selfWeight / regionTotal },
      global: { unreachable: down, share: selfWeight / total }
    })
  }
  let stopped = false
  // Coalesced: a burst of membership events (a fleet starting, a region going silent)
  // costs one pass over the members, a few ms later (far below suspectAfterMs).
  let reachabilityDue = false
  membership.on(e => {
    if ((e.type !== 'change' && e.type !== 'left') || reachabilityDue) return
    reachabilityDue = true
    clock.setTimer(REACHABILITY_DEBOUNCE_MS, () => {
      reachabilityDue = false
      if (!stopped) updateReachability()
    })
  })
  // Pull rounds after start-up. A same-region member back from suspect or dead was out of
  // reach (a healed partition): it may hold counts this node never heard, some from nodes
  // that died meanwhile (re-publication cannot resend those), so pull them instead of
  // waiting for them to expire. A member first heard while this node is young published
  // into the gap between the start-up pull and its gossip reaching us: pulled in one
  // round a second later. One round (up to three members) per burst of such events.
  const startedAt = clock.now()
  const returned = new Set<string>()
  let pullDue = false
  membership.on(e => {
    if (e.type !== 'change' || e.member.state !== 'alive' || e.member.region !== region) return
    const back = e.previous === 'suspect' || e.previous === 'dead'
    const firstHeardYoung = e.previous === 'new' && clock.now() - startedAt < YOUNG_MS
    if (!back && !firstHeardYoung) return
    returned.add(e.member.peerId)
    if (pullDue) return
    pullDue = true
    clock.setTimer(back ? REACHABILITY_DEBOUNCE_MS : YOUNG_PULL_DELAY_MS, () => {
      pullDue = false
      const peers = [...returned].slice(0, STARTUP_PULL_PEERS)
      returned.clear()
      if (!stopped && peers.length > 0) void antiEntropy.pull(peers)
    })
  })
  if (logger !== undefined) {
    membership.on((e: MembershipEvent) => {
      if (e.type === 'skew') logger.warn({ peer: e.member.peerId, skewMs: e.member.skewMs, rttMs: e.member.rttMs }, 'clock skew with peer beyond threshold')
      else if (e.type === 'change' && (e.member.state !== 'alive' || e.previous !== 'new')) logger.info({ peer: e.member.peerId, region: e.member.region, state: e.member.state, previous: e.previous }, 'mesh member changed')
      else if (e.type === 'left') logger.info({ peer: e.member.peerId, region: e.member.region }, 'mesh member left')
    })
  }
  membership.start()
  antiEntropy.start()
  aggregator.start()
  // Policies first: counters of limits this node does not run yet would be ignored.
  let policy: MeshNode['policy']
  if (manager !== undefined && distributor !== undefined) {
    const startup = await distributor.start()
    logger?.info({ outcome: startup.outcome, version: startup.version, waitedMs: startup.waitedMs }, 'start-up policy fetch done')
    manager.on('update', b => { logger?.info({ version: b.version, hash: b.hash }, 'policy bundle installed') })
    policy = { manager, distributor, startup }
  }
  let startupSync: PullResult | undefined
  if (syncOnStart !== false) {
    const timeoutMs = syncTimeoutMs ?? 5000
    const started = clock.now()
    if (findsPeers) await waitForPeers(transport, clock, timeoutMs)
    const settleMs = init.syncSettleMs ?? 2 * (init.flushIntervalMs ?? 50)
    if (settleMs > 0 && transport.peers().length > 0) await new Promise<void>(resolve => { clock.setTimer(settleMs, resolve) })
    const candidates = pullCandidates(transport.peers(), membership, region, seededRandom(incarnation))
    if (candidates.length > 0) {
      const left = Math.max(1, timeoutMs - (clock.now() - started))
      const result: PullResult = { peers: 0, failed: 0, pages: 0, merged: 0 }
      startupSync = await Promise.race([
        startupPull(antiEntropy, candidates, result),
        new Promise<PullResult>(resolve => { clock.setTimer(left, () => { resolve({ ...result, failed: result.failed + Math.max(0, STARTUP_PULL_PEERS - result.peers) }) }) })
      ])
    } else startupSync = { peers: 0, failed: 0, pages: 0, merged: 0 }
    logger?.info({ ...startupSync }, 'start-up anti-entropy pull done')
    const catchUpMs = init.syncCatchUpMs ?? 1000
    if (catchUpMs > 0 && candidates.length > 0) {
      clock.setTimer(catchUpMs, () => {
        if (stopped) return
        const peers = sameRegion()
        const pick = peers.length > 0 ? peers : pullCandidates(transport.peers(), membership, region, seededRandom(incarnation + 1))
        if (pick.length > 0) void startupPull(antiEntropy, pick, { peers: STARTUP_PULL_PEERS - 1, failed: 0, pages: 0, merged: 0 })
      })
    }
  }
  return {
    limiter,
    peerId: transport.peerId,
    replica: limiter.replica,
    region,
    topics,
    transport,
    membership,
    antiEntropy,
    aggregator,
    policy,
    startupSync,
    multiaddrs: () => libp2p?.multiaddrs() ?? [],
    async stop () {
      if (stopped) return
      stopped = true
      // Order matters: the limiter's last flush goes out before the transport stops.
      limiter.close()
      // A goodbye, so peers forget this node now instead of treating it as unreachable.
      membership.leave()
      antiEntropy.stop()
      aggregator.stop()
      distributor?.stop()
      await libp2p?.stop()
      ownClock?.stop()
    }
  }
}
