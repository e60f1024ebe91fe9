/**
 * One node of the gossip benchmark, run as its own OS process by bench/gossip.ts (one
 * event loop per node, as in production). Talks to the parent over IPC:
 *   parent -> { type: 'start', bootstrap, psk, flushIntervalMs, checksPerSec, keys, seed }
 *   node   -> { type: 'ready', multiaddr, peerId }
 *   parent -> { type: 'connect', addrs }           node -> { type: 'connected', peers }
 *   parent -> { type: 'traffic', on }              (starts/stops the hot workload)
 *   parent -> { type: 'probe', id }                node -> { type: 'probe-sent', id, at }
 *   node   -> { type: 'probe-seen', id, at }       (when a peer's probe reaches this node)
 *   parent -> { type: 'report' }                   node -> { type: 'report', ... }
 */
import '../src/polyfill.js'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createLibp2pTransport, type Libp2pTransport } from '../gossip/libp2p.js'
import { topicsOf } from '../gossip/topics.js'
import type { Transport } from '../gossip/transport.js'
import { createMeshNode, type MeshNode } from '../src/mesh.js'
import { seededRandom } from '../src/index.js'

interface Start { type: 'start', bootstrap: string[], psk: number[], flushIntervalMs: number, checksPerSec: number, keys: number, seed: number, loopResolutionMs: number, meshDegree?: number, floodPublish?: boolean, idontwantMinBytes?: number }

const send = (m: object): void => { process.send?.(m) }
const now = (): number => performance.timeOrigin + performance.now()
const policies = {
  policies: [
    { id: 'hot', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window' as const, limit: 1_000_000_000, window: '1h' }] },
    { id: 'probe', key: 'probe', limits: [{ id: 'w', algorithm: 'fixed-window' as const, limit: 1_000_000_000, window: '1h' }] }
  ]
}

let node: MeshNode | undefined
let libp2p: Libp2pTransport | undefined
let traffic: NodeJS.Timeout | undefined
const pending = new Set<string>()
let delay = monitorEventLoopDelay({ resolution: 1 })
let checks = 0

/** Wraps the transport so that after each received message this node looks for probes that arrived. */
function watching (t: Transport): Transport {
  return {
    ...t,
    peerId: t.peerId,
    subscribe (topic, handler) {
      t.subscribe(topic, (data, from) => {
        const v = handler(data, from)
        if (pending.size > 0 && node !== undefined) {
          for (const id of pending) {
            if (node.limiter.peek({ probe: id }).remaining < 1_000_000_000) {
              pending.delete(id)
              send({ type: 'probe-seen', id, at: now() })
            }
          }
        }
        return v
      })
    }
  }
}

process.on('message', (raw: unknown) => {
  void (async () => {
    const m = raw as { type: string } & Record<string, unknown>
    if (m.type === 'start') {
      const s = m as unknown as Start
      // The monitor wakes the process every loopResolutionMs: coarser sampling costs the node less.
      delay = monitorEventLoopDelay({ resolution: s.loopResolutionMs })
      const topics = topicsOf('bench')
      libp2p = await createLibp2pTransport({ psk: Uint8Array.from(s.psk), bootstrap: s.bootstrap, meshDegree: s.meshDegree, floodPublish: s.floodPublish, idontwantMinBytes: s.idontwantMinBytes, topics: [topics.counters('default'), topics.membership, topics.aggregates, topics.policies, topics.blocklist] })
      node = await createMeshNode({ mesh: 'bench', policies, transport: watching(libp2p), flushIntervalMs: s.flushIntervalMs, syncOnStart: false, maxKeys: 2_000_000 })
      const rnd = seededRandom(s.seed)
      // 0 checks per second: an idle mesh (only the probes, heartbeats and the mesh's own timers).
      const perTick = s.checksPerSec > 0 ? Math.max(1, Math.round(s.checksPerSec / 100)) : 0
      let on = false
      process.on('message', (x: unknown) => {
        const t = x as { type: string, on?: boolean }
        if (t.type !== 'traffic') return
        if (t.on === true && !on) {
          on = true
          delay.enable()
          if (perTick > 0) {
            traffic = setInterval(() => {
              for (let i = 0; i < perTick; i++) {
                node?.limiter.check({ user: `u${Math.floor(rnd() * s.keys)}` })
                checks++
              }
            }, 10)
          }
        } else if (t.on !== true && on) {
          on = false
          if (traffic !== undefined) clearInterval(traffic)
          traffic = undefined
          delay.disable()
        }
      })
      send({ type: 'ready', multiaddr: libp2p.multiaddrs()[0], peerId: libp2p.peerId })
    } else if (m.type === 'connect') {
      for (const a of m.addrs as string[]) if (a !== libp2p?.multiaddrs()[0]) await libp2p?.dial(a).catch(() => {})
      send({ type: 'connected', peers: libp2p?.peers().length ?? 0 })
    } else if (m.type === 'expect') {
      pending.add(m.id as string)
    } else if (m.type === 'probe') {
      const at = now()
      node?.limiter.check({ probe: m.id as string })
      send({ type: 'probe-sent', id: m.id, at })
    } else if (m.type === 'report') {
      const s = node?.limiter.stats()
      send({
        type: 'report',
        checks,
        // Changes only: re-published live entries are counted apart.
        bytesSent: (s?.replicator?.bytesSent ?? 0) - (s?.replicator?.republishBytes ?? 0),
        messagesSent: (s?.replicator?.messagesSent ?? 0) - (s?.replicator?.republishMessages ?? 0),
        entriesSent: (s?.replicator?.entriesSent ?? 0) - (s?.replicator?.republishEntries ?? 0),
        republishBytes: s?.replicator?.republishBytes ?? 0,
        // Gap repair: requests this node made, lost messages it merged back, answers it served.
        repairRequests: s?.replicator?.repair?.requests ?? 0,
        messagesRepaired: s?.replicator?.repair?.messagesRepaired ?? 0,
        repairsServed: s?.replicator?.repair?.served ?? 0,
        merged: s?.mergedEntries ?? 0,
        cpuMicros: process.cpuUsage().user + process.cpuUsage().system,
        allMessagesSent: s?.replicator?.messagesSent ?? 0,
        markersSent: s?.replicator?.markersSent ?? 0,
        peers: libp2p?.peers().length ?? 0,
        loopDelayP99Ms: delay.count > 0 ? delay.percentile(99) / 1e6 : 0,
        loopDelayMaxMs: delay.count > 0 ? delay.max / 1e6 : 0
      })
    } else if (m.type === 'stop') {
      if (traffic !== undefined) clearInterval(traffic)
      await node?.stop()
      process.exit(0)
    }
  })().catch(err => {
    console.error(err)
    process.exit(1)
  })
})
