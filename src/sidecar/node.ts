import { decodeDelta } from '../../gossip/codec.js'
import type { LoopbackNetwork } from '../../gossip/loopback.js'
import { topicsOf } from '../../gossip/topics.js'
import type { Transport } from '../../gossip/transport.js'
import { coarseClock, type Clock, type CoarseClock } from '../../membership/clock.js'
import { createBlocklist, type BlockEvent, type Blocklist } from '../abuse/blocklist.js'
import { createEscalation, type Escalation } from '../abuse/escalation.js'
import { createLimiter, type Limiter } from '../limiter.js'
import type { PolicyDocument, PolicySet } from '../policy/types.js'
import type { MeshInfo } from './metrics.js'

/** A node's connection to its mesh: what a transport factory returns. */
export interface MeshHandle {
  transport: Transport
  /** Peers and gossip lag, for metrics. @default peers from the transport, lag unknown */
  mesh?: MeshInfo
  /** Leaves the mesh (stops libp2p, disconnects from the loopback network). */
  close?: () => void | Promise<void>
}

/** What a transport factory is told about the node it connects. */
export interface TransportContext {
  clock: Clock
  /** Mesh name (topics are namespaced by it). */
  mesh: string
  region: string
  /** Topic of this node's region counters: the one whose lag is measured. */
  countersTopic: string
}

/** Connects a node to its mesh. The one place that decides how nodes talk (loopback today, libp2p next). */
export type TransportFactory = (ctx: TransportContext) => MeshHandle | Promise<MeshHandle>

export interface SidecarNodeInit {
  /** Policies: a document object, JSON or YAML text, or a validated set. */
  policies: PolicyDocument | PolicySet | string
  /** Connects the node to a mesh; without one the node is alone and nothing is gossiped. */
  transport?: TransportFactory
  /**
   * Mesh name: nodes only hear nodes of the same mesh.
   * @default "default"
   */
  mesh?: string
  /**
   * Region label: counters converge among the nodes of one region.
   * @default "local"
   */
  region?: string
  /**
   * Time source.
   * @default a coarse wall clock, stopped on close
   */
  clock?: Clock
  /**
   * Interval between gossip flushes, in ms.
   * @default 50
   */
  flushIntervalMs?: number
  /**
   * Most keys tracked per limit.
   * @default 1000000
   */
  maxKeys?: number
  /**
   * Seed of the key hash, the same on every node of a mesh.
   * @default 0
   */
  hashSeed?: number
  /** Block-list options. */
  blocklist?: {
    /** @default 100000 */
    maxEntries?: number
    /** @default 86400000 */
    maxBlockMs?: number
    /** @default 30000 */
    republishIntervalMs?: number
  }
  /**
   * Escalation options, or false to never block automatically.
   * @default { windowMs: 60000, threshold: 10, blockMs: 600000 }
   */
  escalation?: false | { windowMs?: number, threshold?: number, blockMs?: number }
  /** Told about every block-list change (logs, metrics). */
  onBlockChange?: (e: BlockEvent) => void
}

export interface SidecarNode {
  /** Peer id of the node ("local" without a mesh). */
  readonly id: string
  readonly region: string
  readonly limiter: Limiter
  readonly blocklist: Blocklist
  readonly escalation: Escalation | undefined
  readonly mesh: MeshInfo
  readonly clock: Clock
  close(): Promise<void>
}

const ALONE: MeshInfo = { peers: () => 0, lagMs: () => undefined }

/** Creates a limiter, a block list and escalation, connected to a mesh through `transport`. */
export async function createSidecarNode (init: SidecarNodeInit): Promise<SidecarNode> {
  const own: CoarseClock | undefined = init.clock === undefined ? coarseClock() : undefined
  const clock = init.clock ?? (own as CoarseClock)
  const meshName = init.mesh ?? 'default'
  const region = init.region ?? 'local'
  const topics = topicsOf(meshName)
  const countersTopic = topics.counters(region)
  let handle: MeshHandle | undefined
  try {
    handle = init.transport === undefined ? undefined : await init.transport({ clock, mesh: meshName, region, countersTopic })
    const transport = handle?.transport
    const limiter = createLimiter({
      policies: init.policies,
      clock,
      transport,
      topic: countersTopic,
      flushIntervalMs: init.flushIntervalMs,
      maxKeys: init.maxKeys,
      hashSeed: init.hashSeed
    })
    const blocklist = createBlocklist({ clock, transport, topic: topics.blocklist, ...init.blocklist, onChange: init.onBlockChange })
    const escalation = init.escalation === false ? undefined : createEscalation({ blocklist, clock, ...init.escalation })
    const mesh: MeshInfo = handle?.mesh ?? (transport === undefined ? ALONE : { peers: () => transport.peers().length, lagMs: () => undefined })
    let closed = false
    return {
      id: transport?.peerId ?? 'local',
      region,
      limiter,
      blocklist,
      escalation,
      mesh,
      clock,
      async close () {
        if (closed) return
        closed = true
        limiter.close()
        blocklist.close()
        await handle?.close?.()
        own?.stop()
      }
    }
  } catch (err) {
    await handle?.close?.()
    own?.stop()
    throw err
  }
}

/**
 * Wraps a transport so that counter messages on `topic` update a smoothed gossip lag
 * (receive time minus the sender's stamp), for transports that do not measure it.
 */
export function measureLag (transport: Transport, clock: Clock, topic: string): { transport: Transport, lagMs: () => number | undefined } {
  let lag: number | undefined
  const wrapped: Transport = {
    get peerId () { return transport.peerId },
    publish: (t, d) => { transport.publish(t, d) },
    subscribe (t, handler) {
      if (t !== topic) {
        transport.subscribe(t, handler)
        return
      }
      transport.subscribe(t, (data, from) => {
        const verdict = handler(data, from)
        if (verdict === 'accept') {
          const r = decodeDelta(data)
          if (r.ok) {
            const sample = Math.max(0, clock.now() - r.msg.sentAtMs)
            lag = lag === undefined ? sample : lag + (sample - lag) * 0.2
          }
        }
        return verdict
      })
    },
    unsubscribe: t => { transport.unsubscribe(t) },
    request: async (p, proto, d, ms) => await transport.request(p, proto, d, ms),
    handle: (p, h) => { transport.handle(p, h) },
    unhandle: p => { transport.unhandle(p) },
    peers: () => transport.peers()
  }
  return { transport: wrapped, lagMs: () => lag }
}

/**
 * A transport factory joining the in-process loopback network as `peerId`: nodes of
 * one process (the demo, tests) form a mesh without sockets. The libp2p factory
 * replaces it for nodes in separate processes.
 */
export function loopbackTransport (network: LoopbackNetwork, peerId: string): TransportFactory {
  return ctx => {
    const raw = network.connect(peerId)
    const { transport, lagMs } = measureLag(raw, ctx.clock, ctx.countersTopic)
    return {
      transport,
      mesh: { peers: () => raw.peers().length, lagMs },
      close: () => { network.disconnect(peerId) }
    }
  }
}
