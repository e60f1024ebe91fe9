import { describe, expect, it } from 'vitest'
import { decodeDelta } from '../../gossip/codec.js'
import { createLibp2pTransport, type Libp2pTransport } from '../../gossip/libp2p.js'
import { generateSwarmKey } from '../../gossip/psk.js'
import type { Transport } from '../../gossip/transport.js'
import { createLimiter, type Limiter, type PolicyDocument } from '../../src/index.js'
import { until } from '../helpers/wait.js'

const TOPIC = 'test/repair/counters'
const policies: PolicyDocument = { policies: [{ id: 'fixed', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 1_000_000, window: '1h' }] }] }
const used = (l: Limiter, k: string): number => 1_000_000 - l.peek({ user: k }).remaining

/** The receiver's side of a lossy link: counter messages whose seq `lose` names never reach its handler. */
function dropping (t: Libp2pTransport, lose: (seq: number) => boolean, dropped: number[]): Transport {
  return {
    peerId: t.peerId,
    publish: (topic, data) => { t.publish(topic, data) },
    subscribe: (topic, handler) => {
      t.subscribe(topic, (data, from) => {
        const r = decodeDelta(data)
        if (topic === TOPIC && r.ok && r.msg.groups.length > 0 && lose(r.msg.seq ?? 0)) {
          dropped.push(r.msg.seq ?? 0)
          return 'ignore'
        }
        return handler(data, from)
      })
    },
    unsubscribe: topic => { t.unsubscribe(topic) },
    request: async (peer, protocol, data, timeoutMs) => await t.request(peer, protocol, data, timeoutMs),
    handle: (protocol, handler) => { t.handle(protocol, handler) },
    unhandle: protocol => { t.unhandle(protocol) },
    peers: () => t.peers()
  }
}

describe('gap repair over real libp2p (TCP loopback, gossipsub, request/response)', () => {
  it('messages dropped before the receiver are requested and merged within a second, with re-publication off', async () => {
    const psk = generateSwarmKey()
    const ta = await createLibp2pTransport({ psk, topics: [TOPIC], heartbeatIntervalMs: 100 })
    const tb = await createLibp2pTransport({ psk, topics: [TOPIC], heartbeatIntervalMs: 100 })
    const dropped: number[] = []
    const limiters: Limiter[] = []
    try {
      const a = createLimiter({ policies, transport: ta, topic: TOPIC, flushIntervalMs: 20, incarnation: 1, republishIntervalMs: 0 })
      // The receiver loses seqs 2 and 5 (5 is a trailing loss: the sender goes idle after it).
      const b = createLimiter({ policies, transport: dropping(tb, seq => seq === 2 || seq === 5, dropped), topic: TOPIC, flushIntervalMs: 20, incarnation: 1, republishIntervalMs: 0 })
      limiters.push(a, b)
      await ta.dial(tb.multiaddrs()[0])
      type Pubsub = { getSubscribers: (t: string) => Array<{ toString: () => string }> }
      const subs = (t: Libp2pTransport): string[] => (t.libp2p.services.pubsub as unknown as Pubsub).getSubscribers(TOPIC).map(p => p.toString())
      await until(() => subs(ta).includes(tb.peerId) && subs(tb).includes(ta.peerId), 'both nodes to see each other subscribed')
      // Five flushes, one key each: seqs 1-5.
      for (let i = 1; i <= 5; i++) {
        a.check({ user: `k${i}` }, i)
        a.flush()
        await until(() => a.gossipSeq() === i, `seq ${i} to be published`)
        await new Promise(resolve => setTimeout(resolve, 30))
      }
      const started = Date.now()
      await until(() => [1, 2, 3, 4, 5].every(i => used(b, `k${i}`) === i), 'the receiver to hold every count', 5000)
      const tookMs = Date.now() - started
      expect(dropped).toEqual([2, 5])
      const r = b.stats().replicator?.repair
      expect(r?.messagesRepaired).toBe(2)
      expect(r?.answersRejected).toBe(0)
      expect(a.stats().replicator?.repair?.served).toBeGreaterThanOrEqual(2)
      expect(a.stats().replicator?.markersSent).toBeGreaterThan(0)
      // Re-publication is off (and its default period is 30 s): only gap repair filled these.
      expect(tookMs).toBeLessThan(5000)
    } finally {
      for (const l of limiters) l.close()
      await Promise.all([ta.stop(), tb.stop()])
    }
  })
})
