import { describe, expect, it } from 'vitest'
import { createLibp2pTransport, type Libp2pTransport } from '../../gossip/libp2p.js'
import { generateSwarmKey } from '../../gossip/psk.js'
import { until } from '../helpers/wait.js'

type Pubsub = { opts: { D: number, Dlo: number, Dhi: number, floodPublish: boolean }, getMeshPeers: (t: string) => unknown[] }
const pubsubOf = (t: Libp2pTransport): Pubsub => t.libp2p.services.pubsub as unknown as Pubsub

describe('libp2p transport: gossipsub mesh degree', () => {
  it('refuses degrees that gossipsub cannot keep, naming them, before a node starts', async () => {
    await expect(createLibp2pTransport({ psk: generateSwarmKey(), topics: [], meshDegree: 3, meshDegreeLow: 4 })).rejects.toThrow(/mesh degrees.*got 4, 3, 6/)
    await expect(createLibp2pTransport({ psk: generateSwarmKey(), topics: [], meshDegree: 0 })).rejects.toThrow(/mesh degrees/)
    await expect(createLibp2pTransport({ psk: generateSwarmKey(), topics: [], meshDegree: 2.5 })).rejects.toThrow(/mesh degrees/)
  })

  it('a mesh of degree 2 among 6 fully connected nodes keeps at most 4 mesh peers each and still delivers every message to every node', async () => {
    const psk = generateSwarmKey()
    const topic = 'test/degree'
    const nodes: Libp2pTransport[] = []
    try {
      for (let i = 0; i < 6; i++) nodes.push(await createLibp2pTransport({ psk, topics: [topic], meshDegree: 2, heartbeatIntervalMs: 100 }))
      expect(pubsubOf(nodes[0]).opts).toMatchObject({ D: 2, Dlo: 1, Dhi: 4, floodPublish: false })
      const got = nodes.map(() => new Set<number>())
      nodes.forEach((n, i) => { n.subscribe(topic, data => { got[i].add(data[0]); return 'accept' }) })
      for (const a of nodes) for (const b of nodes) if (a !== b && !a.peers().includes(b.peerId)) await a.dial(b.multiaddrs()[0])
      await until(() => nodes.every(n => pubsubOf(n).getMeshPeers(topic).length >= 1), 'every node to have a mesh peer')
      // A few heartbeats to settle grafts and prunes.
      await new Promise(resolve => setTimeout(resolve, 500))
      for (const n of nodes) expect(pubsubOf(n).getMeshPeers(topic).length).toBeLessThanOrEqual(4)
      for (let m = 0; m < 30; m++) nodes[m % nodes.length].publish(topic, Uint8Array.of(m))
      await until(() => got.every((s, i) => s.size === 30 - [...Array(30).keys()].filter(m => m % nodes.length === i).length), 'every message at every other node')
    } finally {
      await Promise.all(nodes.map(async n => { await n.stop() }))
    }
  })
})
