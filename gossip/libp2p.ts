import { gossipsub, type GossipsubEvents } from '@chainsafe/libp2p-gossipsub'
import { createPeerScoreParams, createPeerScoreThresholds, createTopicScoreParams } from '@chainsafe/libp2p-gossipsub/score'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bootstrap } from '@libp2p/bootstrap'
import { identify } from '@libp2p/identify'
import { TopicValidatorResult, type Libp2p, type PeerId, type PrivateKey, type PubSub, type Message } from '@libp2p/interface'
import { mdns } from '@libp2p/mdns'
import { peerIdFromString } from '@libp2p/peer-id'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { lpStream } from 'it-length-prefixed-stream'
import { createLibp2p, type Libp2pOptions } from 'libp2p'
import type { MessageHandler, RequestHandler, Transport, Verdict } from './transport.js'

/** Transports libp2p can be built with: TCP in production, the in-memory one in tests. */
export type TransportKind = 'tcp' | 'memory'

export interface Libp2pTransportInit {
  /**
   * Multiaddrs to listen on.
   * @default ["/ip4/127.0.0.1/tcp/0"] (or a fresh /memory address with kind "memory")
   */
  listen?: string[]
  /** Multiaddrs (with /p2p/<peer id>) dialled at start and whenever discovery finds them. */
  bootstrap?: string[]
  /**
   * Private-network key in the libp2p swarm key format (see generateSwarmKey): only
   * peers with the same key can connect. Required unless allowNoPsk.
   */
  psk?: Uint8Array
  /**
   * Runs an open network without a pre-shared key (tests and local development only).
   * @default false
   */
  allowNoPsk?: boolean
  /** The node's identity; a fresh Ed25519 key when absent (persist one to keep the peer id). */
  privateKey?: PrivateKey
  /**
   * Discovers peers on the local network by mDNS (local development).
   * @default false
   */
  mdns?: boolean
  /** @default "tcp" */
  kind?: TransportKind
  /**
   * Topics to score (invalid messages on them lower the sender's score); pass every
   * topic this node subscribes to.
   */
  topics: string[]
  /**
   * Gossipsub heartbeat interval, in ms (mesh maintenance, gossip emission).
   * @default 1000
   */
  heartbeatIntervalMs?: number
  /**
   * Largest request or answer on request/response protocols, in bytes.
   * @default 16 MiB
   */
  maxRequestBytes?: number
  /**
   * Interval at which bootstrap peers that are not connected (and not blocked) are
   * dialled again, so the mesh re-forms after a partition heals or a peer restarts
   * (libp2p dials bootstrap peers once, at start); 0 disables.
   * @default 2000
   */
  redialIntervalMs?: number
  /**
   * Gossipsub mesh degree: the peers each node relays every message to (gossipsub's
   * D; Dlo and Dhi follow as D - 1 and 2 x D unless meshDegreeLow / meshDegreeHigh say
   * otherwise). Every node needs every counter message of its region, so each extra
   * mesh peer is one more duplicate copy to decrypt and drop per message: a low degree
   * saves CPU and bytes; a higher one tolerates more failed links before a message
   * needs gossip (IHAVE/IWANT) to arrive. See docs/mesh.md.
   * @default 3
   */
  meshDegree?: number
  /** @default meshDegree - 1 (at least 1) */
  meshDegreeLow?: number
  /** @default 2 x meshDegree */
  meshDegreeHigh?: number
  /**
   * Sends a node's own messages to every connected peer of the topic, not only its
   * mesh peers (one hop less for non-mesh peers, one more copy each).
   * @default false
   */
  floodPublish?: boolean
  /**
   * Messages at least this large are announced with IDONTWANT to mesh peers (gossipsub
   * 1.2), which saves their duplicate copies on slow links; on fast links the copies
   * are already on their way, and the announcements cost one frame per mesh peer.
   * @default 65536
   */
  idontwantMinBytes?: number
}

/** A Transport over libp2p, plus what a node operator (and the chaos harness) needs. */
export interface Libp2pTransport extends Transport {
  readonly libp2p: Libp2p<{ pubsub: PubSub<GossipsubEvents> }>
  /** Addresses peers can dial, each ending in /p2p/<peer id>. */
  multiaddrs(): string[]
  dial(addr: string): Promise<void>
  /** Blocks a peer (connection gater) and hangs up on it; used to inject partitions. */
  block(peerId: string): Promise<void>
  unblock(peerId: string): void
  /** Gossipsub score of a peer (negative after invalid messages). */
  score(peerId: string): number
  stop(): Promise<void>
}

const OK = 0
const FAILED = 1

/**
 * Scores only what matters here: invalid messages (rejected by a validator) cost a
 * lot and decay; message-rate and mesh-time components stay off, since rate-limit
 * traffic is bursty and a quiet peer is not a bad one.
 */
function scoreParams (topics: string[]): ReturnType<typeof createPeerScoreParams> {
  const perTopic = Object.fromEntries(topics.map(t => [t, createTopicScoreParams({
    topicWeight: 1,
    timeInMeshWeight: 0,
    timeInMeshQuantum: 1000,
    firstMessageDeliveriesWeight: 0,
    meshMessageDeliveriesWeight: 0,
    meshFailurePenaltyWeight: 0,
    invalidMessageDeliveriesWeight: -100,
    invalidMessageDeliveriesDecay: 0.5
  })]))
  return createPeerScoreParams({ topics: perTopic, IPColocationFactorWeight: 0, behaviourPenaltyWeight: -10, decayInterval: 1000, decayToZero: 0.01 })
}

/** Maps our verdict to gossipsub's validation result. */
function toResult (v: Verdict): TopicValidatorResult {
  return v === 'accept' ? TopicValidatorResult.Accept : v === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
}

let memoryCounter = 0

/**
 * Keeps bootstrap peers connected: every `intervalMs`, dials each one that is neither
 * connected, blocked nor already being dialled. Without it a mesh cut by a partition
 * (or by a bootstrap peer's restart) stays cut after the network heals.
 */
function redialBootstrap (node: Libp2p, addrs: string[], blocked: Set<string>, intervalMs: number): { now: () => void, stop: () => void } {
  const self = node.peerId.toString()
  const seeds = addrs.flatMap(a => {
    const ma = multiaddr(a)
    const id = ma.getPeerId()
    return id === null || id === self ? [] : [{ id, ma }]
  })
  if (seeds.length === 0 || intervalMs <= 0) return { now: () => {}, stop: () => {} }
  const dialing = new Set<string>()
  const redial = (): void => {
    const connected = new Set(node.getPeers().map(p => p.toString()))
    for (const { id, ma } of seeds) {
      if (connected.has(id) || blocked.has(id) || dialing.has(id)) continue
      dialing.add(id)
      node.dial(ma).then(() => {}, () => {}).finally(() => dialing.delete(id))
    }
  }
  const timer = setInterval(redial, intervalMs)
  timer.unref()
  return { now: redial, stop: () => { clearInterval(timer) } }
}

/**
 * Gossipsub's local key for dropping a duplicate copy before its signature is checked.
 * Gossipsub verifies a copy's signature before it computes the message id and looks it
 * up among seen ones, so without this key every copy of a message (about one per mesh
 * peer) costs an ed25519 verification and a public-key import. The key is the first
 * 16 bytes of the signature (deterministic for ed25519 over from, seqno, topic and
 * data; 128 bits keep the cache small, an entry per message for gossipsub's seen TTL,
 * and no signer can aim a signature at another's prefix). Gossipsub records a key only
 * after its copy validated, so a forged copy cannot shadow the real one; a copy that
 * repeats a real signature over other bytes is dropped as the duplicate it claims to be.
 */
export function duplicateKey (msg: { signature?: Uint8Array }): string {
  const sig = msg.signature
  // Unsigned copies never validate under StrictSign, so this key is never recorded.
  if (sig === undefined || sig.length === 0) return 'unsigned'
  return Buffer.from(sig.buffer, sig.byteOffset, Math.min(DUPLICATE_KEY_BYTES, sig.byteLength)).toString('base64')
}

/** Signature bytes in a duplicate key. */
const DUPLICATE_KEY_BYTES = 16

/** Gossipsub's D, Dlo, Dhi (and Dout, Dscore, Dlazy, which must fit under them). */
function meshDegrees (init: Libp2pTransportInit): { D: number, Dlo: number, Dhi: number, Dout: number, Dscore: number, Dlazy: number } {
  const D = init.meshDegree ?? 3
  const Dlo = init.meshDegreeLow ?? Math.max(1, D - 1)
  const Dhi = init.meshDegreeHigh ?? 2 * D
  if (!(Number.isInteger(D) && Number.isInteger(Dlo) && Number.isInteger(Dhi) && Dlo >= 1 && Dlo <= D && D <= Dhi)) {
    throw new Error(`createLibp2pTransport: mesh degrees must be integers with 1 <= meshDegreeLow <= meshDegree <= meshDegreeHigh (got ${Dlo}, ${D}, ${Dhi})`)
  }
  // Dout < Dlo and Dout <= D / 2 (gossipsub's rule); Dscore <= D; gossip to as many non-mesh peers.
  return { D, Dlo, Dhi, Dout: Math.min(Dlo - 1, Math.floor(D / 2)), Dscore: Math.min(D, Math.max(1, D - 2)), Dlazy: D }
}

/**
 * Builds and starts a libp2p node (TCP or memory, noise, yamux, identify, gossipsub
 * with StrictSign, optional pre-shared key, bootstrap and mDNS) and wraps it in the
 * Transport seam. Messages are handled inside gossipsub's topic validators, so a
 * message this node rejects is never forwarded and lowers its sender's score.
 */
export async function createLibp2pTransport (init: Libp2pTransportInit): Promise<Libp2pTransport> {
  if (init.psk === undefined && init.allowNoPsk !== true) {
    throw new Error('createLibp2pTransport: a pre-shared key (psk) is required; generate one with `meshlimit psk` or pass allowNoPsk: true for tests and local development')
  }
  const kind = init.kind ?? 'tcp'
  const maxRequestBytes = init.maxRequestBytes ?? 16 << 20
  const blocked = new Set<string>()
  const listen = init.listen ?? [kind === 'memory' ? `/memory/meshlimit-${process.pid}-${++memoryCounter}` : '/ip4/127.0.0.1/tcp/0']
  let transports: Libp2pOptions['transports']
  if (kind === 'memory') {
    const { memory } = await import('@libp2p/memory')
    transports = [memory()]
  } else {
    transports = [tcp()]
  }
  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = []
  if (init.bootstrap !== undefined && init.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: init.bootstrap, timeout: 100 }))
  if (init.mdns === true) peerDiscovery.push(mdns())
  const node = await createLibp2p({
    privateKey: init.privateKey,
    addresses: { listen },
    transports,
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: init.psk === undefined ? undefined : preSharedKey({ psk: init.psk }),
    connectionGater: {
      denyDialPeer: (peer: PeerId) => blocked.has(peer.toString()),
      denyInboundEncryptedConnection: (peer: PeerId) => blocked.has(peer.toString()),
      denyOutboundEncryptedConnection: (peer: PeerId) => blocked.has(peer.toString()),
      // Loopback and private addresses are what meshes (and tests) dial.
      denyDialMultiaddr: () => false
    },
    peerDiscovery,
    services: {
      identify: identify(),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictSign',
        fastMsgIdFn: duplicateKey,
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        fallbackToFloodsub: false,
        heartbeatInterval: init.heartbeatIntervalMs ?? 1000,
        ...meshDegrees(init),
        floodPublish: init.floodPublish ?? false,
        idontwantMinDataSize: init.idontwantMinBytes ?? 65536,
        scoreParams: scoreParams(init.topics),
        scoreThresholds: createPeerScoreThresholds({ gossipThreshold: -10, publishThreshold: -50, graylistThreshold: -80, acceptPXThreshold: 10, opportunisticGraftThreshold: 20 })
      }) as (components: any) => PubSub<GossipsubEvents>
    }
  })
  const pubsub = node.services.pubsub
  const validators = pubsub.topicValidators
  const redial = redialBootstrap(node, init.bootstrap ?? [], blocked, init.redialIntervalMs ?? 2000)
  const handlers = new Map<string, MessageHandler>()
  /** Publishes in flight; stop() waits for them so the last flush leaves the node. */
  const inflight = new Set<Promise<unknown>>()

  const transport: Libp2pTransport = {
    libp2p: node,
    peerId: node.peerId.toString(),
    publish (topic, data) {
      // Fire and forget: a failed publish is repaired by re-publication.
      const p = pubsub.publish(topic, data).catch(() => {})
      inflight.add(p)
      void p.finally(() => inflight.delete(p))
    },
    subscribe (topic, handler) {
      handlers.set(topic, handler)
      validators.set(topic, (_propagationSource: PeerId, msg: Message) => {
        // StrictSign: the signer is the authenticated origin of the message.
        if (msg.type !== 'signed') return TopicValidatorResult.Reject
        const h = handlers.get(topic)
        if (h === undefined) return TopicValidatorResult.Ignore
        try {
          return toResult(h(msg.data, msg.from.toString()))
        } catch {
          return TopicValidatorResult.Reject
        }
      })
      pubsub.subscribe(topic)
    },
    unsubscribe (topic) {
      handlers.delete(topic)
      validators.delete(topic)
      pubsub.unsubscribe(topic)
    },
    async request (peerId, protocol, data, timeoutMs) {
      const signal = AbortSignal.timeout(timeoutMs)
      const stream = await node.dialProtocol(peerIdFromString(peerId), protocol, { signal })
      try {
        const lp = lpStream(stream, { maxDataLength: maxRequestBytes })
        await lp.write(data, { signal })
        const answer = (await lp.read({ signal })).subarray()
        await stream.close({ signal })
        if (answer.byteLength === 0) throw new Error(`${protocol}: empty answer from ${peerId}`)
        if (answer[0] !== OK) throw new Error(`${protocol}: ${peerId} failed: ${new TextDecoder().decode(answer.subarray(1))}`)
        return answer.subarray(1)
      } catch (err) {
        stream.abort(err instanceof Error ? err : new Error(String(err)))
        throw err
      }
    },
    handle (protocol, handler: RequestHandler) {
      void node.handle(protocol, ({ stream, connection }) => {
        void (async () => {
          const lp = lpStream(stream, { maxDataLength: maxRequestBytes })
          try {
            const request = (await lp.read()).subarray()
            let answer: Uint8Array
            try {
              const body = await handler(request, connection.remotePeer.toString())
              answer = new Uint8Array(body.byteLength + 1)
              answer[0] = OK
              answer.set(body, 1)
            } catch (err) {
              const text = new TextEncoder().encode(err instanceof Error ? err.message : String(err))
              answer = new Uint8Array(text.byteLength + 1)
              answer[0] = FAILED
              answer.set(text, 1)
            }
            await lp.write(answer)
            await stream.close()
          } catch (err) {
            stream.abort(err instanceof Error ? err : new Error(String(err)))
          }
        })()
      }, { runOnLimitedConnection: false })
    },
    unhandle (protocol) {
      void node.unhandle(protocol)
    },
    peers () {
      return node.getPeers().map(p => p.toString())
    },
    multiaddrs () {
      return node.getMultiaddrs().map(a => a.toString())
    },
    async dial (addr) {
      await node.dial(multiaddr(addr))
    },
    async block (peerId) {
      blocked.add(peerId)
      await node.hangUp(peerIdFromString(peerId)).catch(() => {})
    },
    unblock (peerId) {
      blocked.delete(peerId)
      // A lifted block is a healed link: reconnect now rather than at the next tick.
      redial.now()
    },
    score (peerId) {
      return (pubsub as unknown as { getScore: (p: string) => number }).getScore(peerId)
    },
    async stop () {
      redial.stop()
      // Let the last flush leave (bounded), then stop.
      await Promise.race([Promise.allSettled([...inflight]), new Promise(resolve => setTimeout(resolve, 2000).unref())])
      await node.stop()
    }
  }
  return transport
}
