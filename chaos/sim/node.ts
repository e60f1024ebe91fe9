import type { CodecLimits, DecodeResult } from '../../gossip/codec.js'
import type { Transport } from '../../gossip/transport.js'
import type { Clock } from '../../membership/clock.js'
import { createLimiter, type Limiter } from '../../src/limiter.js'
import type { PolicySet } from '../../src/policy/types.js'
import type { LimiterOptions } from '../scenario.js'
import type { SimNetwork } from './network.js'
import type { EventOwner, Scheduler } from './scheduler.js'

/** Simulated wall-clock time of simulated time 0 (a plausible epoch, far from 0). */
export const SIM_EPOCH_MS = 1_800_000_000_000

/**
 * A node's clock: true simulated time plus the node's fixed offset (its skew). Timers
 * run on true time and die with the incarnation that set them.
 */
export class SimClock implements Clock {
  constructor (private readonly sched: Scheduler, readonly offsetMs: number, private readonly owner: EventOwner) {}

  now (): number {
    return SIM_EPOCH_MS + this.sched.now + this.offsetMs
  }

  setTimer (ms: number, fn: () => void): () => void {
    return this.sched.after(ms, fn, this.owner)
  }
}

export interface SimNodeInit {
  /** Index of the node in the fleet (stable across its restarts). */
  index: number
  peerId: string
  region: string
  scheduler: Scheduler
  network: SimNetwork
  /** Offset of this incarnation's clock from true time, in ms. */
  clockOffsetMs: number
  policies: PolicySet
  /** Topic the node's counters travel on. */
  topic: string
  flushIntervalMs: number
  limiter: LimiterOptions
  /** Wraps the transport the limiter gets (tests inject faults the network does not model). */
  wrapTransport?: (transport: Transport) => Transport
  /** Decoder of received gossip (a shared one: every receiver of a message gets the same bytes). */
  decodeDelta?: (data: Uint8Array, limits: CodecLimits) => DecodeResult
}

/** One running incarnation of a simulated node. */
export interface SimNode {
  readonly index: number
  readonly peerId: string
  readonly region: string
  readonly clock: SimClock
  readonly transport: Transport
  readonly limiter: Limiter
  /** Replica key of this incarnation ("peerId@incarnation"). */
  readonly replica: string
  /** Simulated time the incarnation started. */
  readonly startedAt: number
  /** Ends the incarnation without a goodbye: unflushed counts die with it. */
  crash(): void
  /** Ends the incarnation gracefully: the limiter flushes its last counts first. */
  stop(): void
  readonly running: boolean
}

/**
 * Builds one simulated node: the real limiter on a simulated clock and transport. This
 * is the one place that composes a node, so membership and anti-entropy (factories
 * taking { transport, clock, limiter }) are added here when they land.
 */
export function createSimNode (init: SimNodeInit): SimNode {
  const owner: EventOwner = { dead: false }
  const clock = new SimClock(init.scheduler, init.clockOffsetMs, owner)
  const attached = init.network.attach(init.index, init.peerId, owner)
  const transport = init.wrapTransport === undefined ? attached : init.wrapTransport(attached)
  const limiter = createLimiter({
    policies: init.policies,
    clock,
    transport,
    topic: init.topic,
    flushIntervalMs: init.flushIntervalMs,
    // Like a real start, the incarnation is the node clock's time; the limiter's own default.
    samplerSeed: init.index + 1,
    decodeDelta: init.decodeDelta,
    ...init.limiter
  })
  const end = (): void => {
    owner.dead = true
    init.network.detach(init.index)
  }
  return {
    index: init.index,
    peerId: init.peerId,
    region: init.region,
    clock,
    transport,
    limiter,
    replica: `${limiter.replica.peerId}@${limiter.replica.incarnation}`,
    startedAt: init.scheduler.now,
    get running () { return !owner.dead },
    crash () {
      if (owner.dead) return
      end()
    },
    stop () {
      if (owner.dead) return
      limiter.close()
      end()
    }
  }
}
