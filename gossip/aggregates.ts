import { aheadBeyond, type Clock } from '../membership/clock.js'
import type { Membership } from '../membership/membership.js'
import { DEFAULT_CODEC_LIMITS, decodeAggregate, encodeAggregate, type CounterGroup } from './codec.js'
import type { Transport, Verdict } from './transport.js'

/** The state aggregates move: implemented by the limiter. */
export interface AggregateState {
  /**
   * Region totals of keys that changed (every key with `all`), for every slot of the
   * last `lookbackMs` (and at least the newest few): a count can reach the publisher
   * that late.
   */
  collectAggregates(all: boolean, lookbackMs?: number): CounterGroup[]
  applyAggregate(region: string, groups: CounterGroup[]): number
}

export interface AggregatorInit {
  transport: Transport
  clock: Clock
  state: AggregateState
  membership: Membership
  /** The mesh-wide aggregates topic (topicsOf(mesh).aggregates). */
  topic: string
  /** This node's region. */
  region: string
  /**
   * Interval between aggregate publications, in ms (cross-region staleness).
   * @default 250
   */
  intervalMs?: number
  /**
   * How many members of a region publish its aggregate (the alive members with the
   * smallest peer ids): more than one covers hand-overs, and receivers max-merge.
   * @default 2
   */
  publishers?: number
  /**
   * Every this many intervals a publisher re-sends every key's totals, so a lost
   * aggregate cannot leave another region behind.
   * @default 20
   */
  fullEvery?: number
  /**
   * How far back a changed key's slots are sent, in ms: a peer's count reaches this
   * node up to a flush interval plus delivery after its slot, and then waits up to
   * intervalMs for the next publication, so a changed key's older slots can change too.
   * @default intervalMs + 200
   */
  lookbackMs?: number
  /** @default 65536 */
  maxMessageBytes?: number
  /** Aggregates stamped further ahead than this are rejected. @default 1000 */
  maxClockSkewMs?: number
}

export interface AggregatorStats {
  published: number
  bytesPublished: number
  received: number
  rejected: number
  ignored: number
  merged: number
}

export interface Aggregator {
  start(): void
  stop(): void
  /** Whether this node currently publishes its region's aggregate. */
  isPublisher(): boolean
  readonly stats: AggregatorStats
}

/**
 * Region aggregates for global limits: every `intervalMs` the region's publishers send,
 * on the mesh-wide topic, the region's total per (key, slot) for keys that changed,
 * under one replica per region (`region:<name>@0`). A node therefore holds, per key,
 * its own region's nodes plus one column per other region, and cross-region bytes grow
 * with regions, not nodes. Totals only grow, so aggregates from two publishers of one
 * region, or re-sent ones, max-merge harmlessly.
 *
 * Provenance: an aggregate is accepted only from a member that membership knows to be
 * in the region the aggregate names (its signed heartbeats say so), and never for the
 * receiver's own region, whose nodes it hears directly.
 */
export function createAggregator (init: AggregatorInit): Aggregator {
  const { transport, clock, state, membership, topic, region } = init
  const intervalMs = init.intervalMs ?? 250
  const publishers = init.publishers ?? 2
  const fullEvery = init.fullEvery ?? 20
  const lookbackMs = init.lookbackMs ?? intervalMs + 200
  const maxMessageBytes = init.maxMessageBytes ?? 65536
  const maxClockSkewMs = init.maxClockSkewMs ?? 1000
  const limits = { ...DEFAULT_CODEC_LIMITS, maxMessageBytes }
  const stats: AggregatorStats = { published: 0, bytesPublished: 0, received: 0, rejected: 0, ignored: 0, merged: 0 }
  let running = false
  let cancel: (() => void) | undefined
  let ticks = 0
  let wasPublisher = false

  // Our rank among the region's alive ids in sorted order is the number of smaller ones
  // (counted without copying members: every node runs this every interval).
  const isPublisher = (): boolean => {
    const self = transport.peerId
    let smaller = 0
    membership.forEachMember(m => { if (m.state === 'alive' && m.region === region && m.peerId < self) smaller++ })
    return smaller < publishers
  }

  const receive = (data: Uint8Array, from: string): Verdict => {
    stats.received++
    const r = decodeAggregate(data, limits)
    if (!r.ok) {
      stats.rejected++
      return 'reject'
    }
    if (aheadBeyond(clock, r.msg.sentAtMs, maxClockSkewMs) > 0) {
      stats.rejected++
      return 'reject'
    }
    if (r.msg.region === region) {
      // Our own region: its nodes are heard directly, its aggregate would double count.
      stats.ignored++
      return 'ignore'
    }
    const sender = membership.member(from)
    if (sender === undefined) {
      // No heartbeat seen yet: cannot check provenance; the next publication will do.
      stats.ignored++
      return 'ignore'
    }
    if (sender.region !== r.msg.region) {
      stats.rejected++
      return 'reject'
    }
    stats.merged += state.applyAggregate(r.msg.region, r.msg.groups)
    return 'accept'
  }

  /** Whether another region has an alive member: otherwise nobody needs this region's aggregate. */
  const othersListen = (): boolean => {
    let found = false
    membership.forEachMember(m => { if (m.state === 'alive' && m.region !== region) found = true })
    return found
  }

  const tick = (): void => {
    if (!running) return
    ticks++
    const publisher = isPublisher() && othersListen()
    // A node that just became a publisher sends everything: the region's receivers may
    // have missed what the previous publisher knew.
    const all = publisher && (!wasPublisher || ticks % fullEvery === 0)
    wasPublisher = publisher
    const groups = state.collectAggregates(all, lookbackMs)
    if (publisher && groups.length > 0) {
      for (const m of encodeAggregate({ region, sentAtMs: clock.now(), groups }, maxMessageBytes)) {
        transport.publish(topic, m)
        stats.published++
        stats.bytesPublished += m.byteLength
      }
    }
    cancel = clock.setTimer(intervalMs, tick)
  }

  return {
    stats,
    isPublisher,
    start () {
      if (running) return
      running = true
      transport.subscribe(topic, receive)
      cancel = clock.setTimer(intervalMs, tick)
    },
    stop () {
      if (!running) return
      running = false
      cancel?.()
      transport.unsubscribe(topic)
    }
  }
}
