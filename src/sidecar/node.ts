import { decodeDelta } from '../../gossip/codec.js'
import { loadOrCreateIdentity } from '../../gossip/identity.js'
import type { Libp2pTransportInit } from '../../gossip/libp2p.js'
import type { LoopbackNetwork } from '../../gossip/loopback.js'
import { readSwarmKey } from '../../gossip/psk.js'
import { topicsOf } from '../../gossip/topics.js'
import type { Transport } from '../../gossip/transport.js'
import { coarseClock, type Clock, type CoarseClock } from '../../membership/clock.js'
import { createBlocklist, type BlockEvent, type Blocklist } from '../abuse/blocklist.js'
import { createEscalation, type Escalation } from '../abuse/escalation.js'
import { createLimiter, type Limiter } from '../limiter.js'
import { createMeshNode, type MeshLogger, type MeshNode } from '../mesh.js'
import type { PolicyDocument, PolicySet } from '../policy/types.js'
import type { MeshInfo } from './metrics.js'

/** A node's connection to its mesh: what a transport factory returns. */
export interface MeshHandle {
  transport: Transport
  /** Peers and gossip lag, for metrics. @default peers from the transport, lag unknown */
  mesh?: MeshInfo
  /** Leaves the mesh (stops libp2p, disconnects from the loopback network). */
  close?: () => void | Promise<void>
  /**
   * Whether start-up should wait (bounded) for a first peer before its first anti-entropy pull.
   * @default true
   */
  expectPeers?: boolean
  /** Addresses peers can dial (libp2p). */
  multiaddrs?: () => string[]
}

/** What a transport factory is told about the node it connects. */
export interface TransportContext {
  clock: Clock
  /** Mesh name (topics are namespaced by it). */
  mesh: string
  region: string
  /** Topic of this node's region counters: the one whose lag is measured. */
  countersTopic: string
  /** Every topic the node uses (libp2p scores peers on them). */
  topics: string[]
}

/** Connects a node to its mesh: the one place that decides how nodes talk (libp2p, or the in-process loopback). */
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
  /**
   * Operator public keys: with them (and a mesh) the node runs signed policy bundles
   * gossiped on the mesh, and `policies` is the fallback until the first bundle.
   */
  trustedKeys?: string[]
  /**
   * Bound on the start-up wait for peers and the first anti-entropy pull, in ms.
   * @default 5000
   */
  syncTimeoutMs?: number
  /** Mesh events (members, clock skew, policy installs). */
  logger?: MeshLogger
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
  /** The mesh node (membership, anti-entropy, policy distribution), when connected to a mesh. */
  readonly meshNode: MeshNode | undefined
  /** Addresses peers can dial (empty unless on libp2p). */
  multiaddrs(): string[]
  close(): Promise<void>
}

const ALONE: MeshInfo = { peers: () => 0, lagMs: () => undefined }

/**
 * Creates a limiter, a block list and escalation. Connected to a mesh through
 * `transport`, the limiter is a full mesh node: membership, anti-entropy at start and
 * after partitions, region aggregates, and signed policies when trustedKeys are given.
 */
export async function createSidecarNode (init: SidecarNodeInit): Promise<SidecarNode> {
  const own: CoarseClock | undefined = init.clock === undefined ? coarseClock() : undefined
  const clock = init.clock ?? (own as CoarseClock)
  const meshName = init.mesh ?? 'default'
  const region = init.region ?? 'local'
  const topics = topicsOf(meshName)
  const countersTopic = topics.counters(region)
  let handle: MeshHandle | undefined
  let meshNode: MeshNode | undefined
  try {
    handle = init.transport === undefined
      ? undefined
      : await init.transport({ clock, mesh: meshName, region, countersTopic, topics: [countersTopic, topics.aggregates, topics.policies, topics.blocklist, topics.membership] })
    const transport = handle?.transport
    const limiterInit = { policies: init.policies, clock, flushIntervalMs: init.flushIntervalMs, maxKeys: init.maxKeys, hashSeed: init.hashSeed }
    if (transport !== undefined) {
      meshNode = await createMeshNode({
        ...limiterInit,
        transport,
        mesh: meshName,
        region,
        trustedKeys: init.trustedKeys,
        expectPeers: handle?.expectPeers,
        syncTimeoutMs: init.syncTimeoutMs,
        logger: init.logger
      })
    } else if (init.trustedKeys !== undefined) {
      throw new Error('trustedKeys need a mesh: signed policy bundles arrive by gossip (give a transport)')
    }
    const limiter: Limiter = meshNode?.limiter ?? createLimiter(limiterInit)
    const blocklist = createBlocklist({ clock, transport, topic: topics.blocklist, ...init.blocklist, onChange: init.onBlockChange })
    const escalation = init.escalation === false ? undefined : createEscalation({ blocklist, clock, ...init.escalation })
    const mesh: MeshInfo = handle?.mesh ?? (transport === undefined ? ALONE : { peers: () => transport.peers().length, lagMs: () => undefined })
    let closed = false
    const node = meshNode
    return {
      id: transport?.peerId ?? 'local',
      region,
      limiter,
      blocklist,
      escalation,
      mesh,
      clock,
      meshNode,
      multiaddrs: () => handle?.multiaddrs?.() ?? [],
      async close () {
        if (closed) return
        closed = true
        blocklist.close()
        // The mesh node flushes the last counts before the transport goes.
        if (node !== undefined) await node.stop()
        else limiter.close()
        await handle?.close?.()
        own?.stop()
      }
    }
  } catch (err) {
    await meshNode?.stop()
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
      // Loopback peers are there at once: nobody to wait for when this is the first.
      expectPeers: raw.peers().length > 0,
      close: () => { network.disconnect(peerId) }
    }
  }
}

export interface Libp2pFactoryInit extends Omit<Libp2pTransportInit, 'topics' | 'psk' | 'privateKey'> {
  /** Private-network key file (`meshlimit psk`); required unless allowNoPsk. */
  pskFile?: string
  /** The swarm key itself (instead of pskFile). */
  psk?: Uint8Array
  /** Identity file: created on first start, so the peer id survives restarts. */
  identityFile?: string
}

/**
 * A transport factory starting a libp2p node (TCP, noise, yamux, gossipsub, private
 * network): nodes in separate processes or machines form a mesh. Libp2p is loaded
 * only when a node uses it.
 */
export function libp2pTransport (init: Libp2pFactoryInit): TransportFactory {
  return async ctx => {
    const { pskFile, psk: givenPsk, identityFile, ...network } = init
    let psk = givenPsk
    if (psk === undefined && pskFile !== undefined) {
      try { psk = await readSwarmKey(pskFile) } catch (err) {
        throw new Error(`cannot use psk file ${pskFile}: ${(err as Error).message}`)
      }
    }
    const privateKey = identityFile === undefined ? undefined : (await loadOrCreateIdentity(identityFile)).privateKey
    const { createLibp2pTransport } = await import('../../gossip/libp2p.js')
    const node = await createLibp2pTransport({ ...network, psk, privateKey, topics: ctx.topics })
    const { transport, lagMs } = measureLag(node, ctx.clock, ctx.countersTopic)
    return {
      transport,
      mesh: { peers: () => node.peers().length, lagMs },
      expectPeers: (init.bootstrap?.length ?? 0) > 0 || init.mdns === true,
      multiaddrs: () => node.multiaddrs(),
      close: async () => { await node.stop() }
    }
  }
}
