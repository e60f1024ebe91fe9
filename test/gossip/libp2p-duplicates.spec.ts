import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createLibp2pTransport, duplicateKey, type Libp2pTransport } from '../../gossip/libp2p.js'
import { generateSwarmKey } from '../../gossip/psk.js'
import { until } from '../helpers/wait.js'

describe('libp2p transport: duplicate copies dropped before their signature is checked', () => {
  it('two copies share a key exactly when their signatures start alike (16 bytes), wherever the bytes sit', () => {
    const sig = fc.uint8Array({ minLength: 64, maxLength: 64 })
    fc.assert(fc.property(sig, sig, fc.nat(16), (a, b, pad) => {
      // The same signature inside a larger buffer (as a decoder hands it out) keys alike.
      const big = new Uint8Array(pad + 64 + pad)
      big.set(a, pad)
      expect(duplicateKey({ signature: big.subarray(pad, pad + 64) })).toBe(duplicateKey({ signature: a }))
      const equal = a.subarray(0, 16).every((x, i) => x === b[i])
      expect(duplicateKey({ signature: a }) === duplicateKey({ signature: b })).toBe(equal)
    }))
    // Same first 16 bytes (one ed25519 signature repeated over other bytes): one key.
    const c = new Uint8Array(64).fill(7)
    const d = c.slice()
    d[40] = 8
    expect(duplicateKey({ signature: c })).toBe(duplicateKey({ signature: d }))
    expect(duplicateKey({})).toBe('unsigned')
    expect(duplicateKey({ signature: new Uint8Array(0) })).toBe('unsigned')
  })

  it('a 4-node mesh delivers every message once per node and keys the seen copies', async () => {
    const psk = generateSwarmKey()
    const topic = 'test/duplicates'
    const nodes: Libp2pTransport[] = []
    try {
      for (let i = 0; i < 4; i++) nodes.push(await createLibp2pTransport({ psk, topics: [topic], heartbeatIntervalMs: 100 }))
      for (const a of nodes) for (const b of nodes) if (a !== b) await a.dial(b.multiaddrs()[0])
      const seen = nodes.map(() => new Map<string, number>())
      nodes.forEach((n, i) => n.subscribe(topic, data => {
        const k = new TextDecoder().decode(data)
        seen[i].set(k, (seen[i].get(k) ?? 0) + 1)
        return 'accept'
      }))
      type Pubsub = { getMeshPeers: (t: string) => unknown[], fastMsgIdCache?: { size: number } }
      const pubsub = (t: Libp2pTransport): Pubsub => t.libp2p.services.pubsub as unknown as Pubsub
      await until(() => nodes.every(n => pubsub(n).getMeshPeers(topic).length >= 2), 'every node to have at least 2 mesh peers')
      const sent: string[] = []
      for (let round = 0; round < 5; round++) {
        nodes.forEach((n, i) => {
          const k = `m${round}-${i}`
          sent.push(k)
          n.publish(topic, new TextEncoder().encode(k))
        })
        await new Promise(resolve => setTimeout(resolve, 20))
      }
      await until(() => seen.every((m, i) => sent.filter(k => !k.endsWith(`-${i}`)).every(k => m.has(k))), 'every node to hear every other node\'s messages')
      // Give relayed copies time to arrive, then check none was handled twice.
      await new Promise(resolve => setTimeout(resolve, 300))
      for (const m of seen) for (const [k, n] of m) expect(n, `message ${k} handled ${n} times`).toBe(1)
      // Each node keyed the 15 messages of its peers it validated.
      for (const n of nodes) expect(pubsub(n).fastMsgIdCache?.size).toBeGreaterThanOrEqual(15)
    } finally {
      await Promise.all(nodes.map(async n => { await n.stop() }))
    }
  }, 30_000)
})
