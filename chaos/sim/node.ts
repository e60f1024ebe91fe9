import type { CodecLimits, DecodeResult } from '../../gossip/codec.js'
import type { Transport } from '../../gossip/transport.js'
import type { Clock } from '../../membership/clock.js'
import type { Limiter } from '../../src/limiter.js'
import { createMeshNode, type MeshNode } from '../../src/mesh.js'
import type { PolicySet } from '../../src/policy/types.js'
import type { LimiterOptions, MeshOptions } from '../scenario.js'
import type { SimNetwork } from './network.js'
import type { EventOwner, Scheduler } from './scheduler.js'

/** Simulated wall-clock time of simulated time 0 (a plausible epoch, far from 0). */
export const SIM_EPOCH_MS = 1_800_000_000_000

/** Name of the simulated mesh (its topics are `meshlimit/chaos/...`). */
export const SIM_MESH = 'chaos'

/**
 * A node's clock: true simulated time plus the node's fixed offset (its skew). Timers
 * run on true time and die with the incarnation that set them. While `yielding`, a
 * timer makes the scheduler yield after it runs, so promise continuations it wakes
 * (the mesh node's start-up) run at that simulated instant, not at the end of a step.
 */
export class SimClock implements Clock {
  yielding = false

  constructor (private readonly sched: Scheduler, readonly offsetMs: number, private readonly owner: EventOwner) {}

  now (): number {
    return SIM_EPOCH_MS + this.sched.now + this.offsetMs
  }

  setTimer (ms: number, fn: () => void): () => void {
    if (!this.yielding) return this.sched.after(ms, fn, this.owner)
    return this.sched.after(ms, () => {
      fn()
      this.sched.requestYield()
    }, this.owner)
  }
}

export interface SimNodeInit {
  /** Index of the node in the fleet (stable across its restarts). */
  index: number
  peerId: string
  /** The node's region (where it sits on the network). */
  region: string
  /**
   * The region the mesh node announces and gossips counters in: its region under the
   * region topology, one shared name for every node under the mesh topology.
   */
  meshRegion: string
  scheduler: Scheduler
  network: SimNetwork
  /** Offset of this incarnation's clock from true time, in ms. */
  clockOffsetMs: number
  policies: PolicySet
  flushIntervalMs: number
  limiter: LimiterOptions
  mesh: MeshOptions
  /** Wraps the transport the node gets (tests inject faults the network does not model). */
  wrapTransport?: (transport: Transport) => Transport
  /** Decoder of received gossip (a shared one: every receiver of a message gets the same bytes). */
  decodeDelta?: (data: Uint8Array, limits: CodecLimits) => DecodeResult
}

/** One incarnation of a simulated node: a full mesh node (src/mesh.ts) on the simulated seams. */
export interface SimNode {
  readonly index: number
  readonly peerId: string
  readonly region: string
  readonly clock: SimClock
  readonly transport: Transport
  /** Replica key of this incarnation ("peerId@incarnation"). */
  readonly replica: string
  /** Simulated time the incarnation started. */
  readonly startedAt: number
  /** Settles once start-up (policies, the anti-entropy pull) is done; never when it crashed first. */
  readonly started: Promise<void>
  /** Whether start-up is done: the node serves requests from then on. */
  readonly ready: boolean
  /** The mesh node (only once ready). */
  readonly mesh: MeshNode
  /** Its limiter (only once ready). */
  readonly limiter: Limiter
  /** Ends the incarnation without a goodbye: unflushed counts die with it. */
  crash(): void
  /** Ends the incarnation gracefully: the limiter flushes its last counts first. */
  stop(): void
  readonly running: boolean
}

/**
 * Builds one simulated node: `createMeshNode` (limiter, membership, anti-entropy, region
 * aggregates, escrow) on a simulated clock and transport. This is the one place that
 * composes a node, so every scenario runs the same node as production.
 */
export function createSimNode (init: SimNodeInit): SimNode {
  const owner: EventOwner = { dead: false }
  const clock = new SimClock(init.scheduler, init.clockOffsetMs, owner)
  const attached = init.network.attach(init.index, init.peerId, owner)
  const transport = init.wrapTransport === undefined ? attached : init.wrapTransport(attached)
  // Like a real start, the incarnation is the node clock's time.
  const incarnation = Math.floor(clock.now())
  const m = init.mesh
  let mesh: MeshNode | undefined
  clock.yielding = true
  const started = createMeshNode({
    ...init.limiter,
    policies: init.policies,
    mesh: SIM_MESH,
    region: init.meshRegion,
    clock,
    transport,
    incarnation,
    flushIntervalMs: init.flushIntervalMs,
    samplerSeed: init.index + 1,
    decodeDelta: init.decodeDelta,
    syncOnStart: m.syncOnStart,
    syncTimeoutMs: m.syncTimeoutMs,
    membership: { heartbeatIntervalMs: m.heartbeatIntervalMs, suspectAfterMs: m.suspectAfterMs, deadAfterMs: m.deadAfterMs },
    antiEntropy: { pullIntervalMs: m.pullIntervalMs },
    aggregates: { intervalMs: m.aggregateIntervalMs }
  }).then(node => {
    clock.yielding = false
    if (owner.dead) return
    mesh = node
  })
  const end = (): void => {
    owner.dead = true
    init.network.detach(init.index)
  }
  const ready = (): MeshNode => {
    if (mesh === undefined) throw new Error(`sim: node ${init.peerId} has not finished starting`)
    return mesh
  }
  return {
    index: init.index,
    peerId: init.peerId,
    region: init.region,
    clock,
    transport,
    replica: `${init.peerId}@${incarnation}`,
    startedAt: init.scheduler.now,
    started,
    get ready () { return mesh !== undefined && !owner.dead },
    get mesh () { return ready() },
    get limiter () { return ready().limiter },
    get running () { return !owner.dead },
    crash () {
      if (owner.dead) return
      end()
    },
    stop () {
      if (owner.dead) return
      // Synchronous up to the transport: the last flush leaves before the node detaches.
      if (mesh !== undefined) void mesh.stop()
      end()
    }
  }
}
