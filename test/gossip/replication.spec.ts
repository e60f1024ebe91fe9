import fc from 'fast-check'
import { encode } from '@msgpack/msgpack'
import { describe, expect, it } from 'vitest'
import { encodeDelta } from '../../gossip/codec.js'
import type { MessageHandler, Transport } from '../../gossip/transport.js'
import { stubTransport } from '../helpers/transport.js'
import { createLimiter, createLoopbackNetwork, seededRandom, VirtualClock, type Limiter, type PolicyDocument } from '../../src/index.js'
import type { LimiterInit } from '../../src/limiter.js'

const T0 = 1_800_000_000_000
const TOPIC = 'meshlimit/counters'

/** Limits large enough never to deny, so every request is admitted and totals are exact. */
const policies: PolicyDocument = {
  policies: [
    { id: 'fixed', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 1_000_000, window: '1h' }] },
    { id: 'slide', key: 'apiKey', limits: [{ id: 'w', limit: 1_000_000, window: '1h' }] },
    { id: 'local', key: 'route', scope: 'node', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 1_000_000, window: '1h' }] }
  ]
}

interface Mesh {
  clock: VirtualClock
  nodes: Limiter[]
}

/** A network that delivers each message 1-3 times, each copy after its own random delay. */
function chaoticNetwork (clock: VirtualClock, seed: number, lossRate = 0): (peerId: string) => Transport {
  const rnd = seededRandom(seed)
  const members = new Map<string, Map<string, MessageHandler>>()
  return peerId => {
    const topics = new Map<string, MessageHandler>()
    members.set(peerId, topics)
    return stubTransport(peerId, {
      publish (topic, data) {
        for (const [to, theirs] of members) {
          if (to === peerId || !theirs.has(topic)) continue
          if (rnd() < lossRate) continue
          const copies = 1 + Math.floor(rnd() * 3)
          for (let c = 0; c < copies; c++) {
            clock.setTimer(1 + Math.floor(rnd() * 80), () => theirs.get(topic)?.(data, peerId))
          }
        }
      },
      subscribe (topic, handler) { topics.set(topic, handler) },
      unsubscribe (topic) { topics.delete(topic) }
    })
  }
}

function mesh (n: number, connect: (peerId: string) => Transport, clock: VirtualClock, extra: Partial<LimiterInit> = {}): Mesh {
  const nodes = Array.from({ length: n }, (_, i) => createLimiter({ clock, policies, transport: connect(`node-${i}`), flushIntervalMs: 20, incarnation: 1, ...extra }))
  return { clock, nodes }
}

/** Drives `requests` random requests (node, key) and returns the true admitted totals per key. */
function drive (m: Mesh, seed: number, requests: number, keys: number): Map<string, number> {
  const rnd = seededRandom(seed)
  const truth = new Map<string, number>()
  for (let r = 0; r < requests; r++) {
    m.clock.advance(Math.floor(rnd() * 3))
    const node = m.nodes[Math.floor(rnd() * m.nodes.length)]
    const k = `k${Math.floor(rnd() * keys)}`
    const cost = 1 + Math.floor(rnd() * 3)
    const d = node.check({ user: k, apiKey: k, route: k }, cost)
    expect(d.allowed).toBe(true)
    truth.set(k, (truth.get(k) ?? 0) + cost)
  }
  return truth
}

/** What node `l` believes each policy has used for key `k`. */
function used (l: Limiter, k: string): { fixed: number, slide: number, local: number } {
  const d = l.peek({ user: k, apiKey: k, route: k }, 1)
  const by = (p: string): number => {
    const s = d.limits.find(x => x.policy === p)
    if (s === undefined) throw new Error(`no ${p}`)
    return s.limit - s.remaining
  }
  return { fixed: by('fixed'), slide: by('slide'), local: by('local') }
}

describe('replication over the loopback transport', () => {
  it('every node converges to exactly what the mesh admitted', () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 5 })
    const m = mesh(5, id => net.connect(id), clock)
    const truth = drive(m, 7, 3000, 40)
    clock.advance(200)
    for (const [k, total] of truth) {
      for (const node of m.nodes) {
        const u = used(node, k)
        expect(u.fixed).toBe(total)
        expect(u.slide).toBe(total)
      }
    }
    expect(net.stats.rejectedFrom.size).toBe(0)
  })

  it('converges exactly whatever the duplication and reordering (property)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 1e9 }), fc.integer({ min: 2, max: 6 }), (seed, n) => {
      const clock = new VirtualClock(T0)
      const m = mesh(n, chaoticNetwork(clock, seed), clock)
      const truth = drive(m, seed + 1, 400, 8)
      clock.advance(500)
      for (const [k, total] of truth) {
        for (const node of m.nodes) expect(used(node, k).fixed).toBe(total)
      }
    }), { numRuns: 25 })
  })

  it('with message loss a node may lag, never counts more than was admitted, and re-publication alone repairs it', () => {
    const clock = new VirtualClock(T0)
    // Gap repair off (this network has no request/response): the safety net on its own.
    const m = mesh(4, chaoticNetwork(clock, 99, 0.3), clock, { repair: false, republishIntervalMs: 5000 })
    const truth = drive(m, 5, 2000, 10)
    clock.advance(200)
    let lagging = 0
    for (const [k, total] of truth) {
      for (const node of m.nodes) {
        const u = used(node, k).fixed
        expect(u).toBeLessThanOrEqual(total)
        if (u < total) lagging++
      }
    }
    expect(lagging).toBeGreaterThan(0)
    // Every live entry is re-published once per 5 s: a few rotations
    // later every view is exact, even though 30% of those messages are lost too.
    clock.advance(30_000)
    for (const [k, total] of truth) {
      for (const node of m.nodes) expect(used(node, k).fixed).toBe(total)
    }
  })

  it('never gossips node-scoped limits', () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 5 })
    const m = mesh(3, id => net.connect(id), clock)
    m.nodes[0].check({ user: 'x', apiKey: 'x', route: 'x' }, 7)
    clock.advance(200)
    expect(used(m.nodes[0], 'x').local).toBe(7)
    expect(used(m.nodes[1], 'x')).toEqual({ fixed: 7, slide: 7, local: 0 })
  })
})

describe('replication: hostile input', () => {
  function victim (): { clock: VirtualClock, node: Limiter, inject: (data: Uint8Array, from?: string) => string } {
    const clock = new VirtualClock(T0)
    let handler: MessageHandler | undefined
    const transport: Transport = stubTransport('victim', {
      subscribe (_topic, h) { handler = h },
      unsubscribe () { handler = undefined }
    })
    const node = createLimiter({ clock, policies, transport, flushIntervalMs: 20 })
    return { clock, node, inject: (data, from = 'attacker') => (handler as MessageHandler)(data, from) }
  }

  it('rejects malformed bytes and merges nothing', () => {
    const v = victim()
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), bytes => {
      const verdict = v.inject(bytes)
      expect(['reject', 'accept']).toContain(verdict)
    }), { numRuns: 300 })
    expect(v.inject(new Uint8Array([0xc1]))).toBe('reject')
    expect(v.inject(encode([1, -1, T0, []]))).toBe('reject')
    expect(v.inject(encode([1, 1, T0, [['fixed/w', 3_600_000, 0, [1, 0, 0]]]]))).toBe('reject')
    expect(v.node.stats().mergedEntries).toBe(0)
  })

  it('rejects a message stamped beyond the clock-skew tolerance', () => {
    const v = victim()
    const hash = 12345
    const epoch = Math.floor(T0 / 3_600_000)
    const [msg] = encodeDelta({ incarnation: 1, sentAtMs: T0 + 60_000, groups: [{ limit: 'fixed/w', slotMs: 3_600_000, entries: [hash, epoch, 5] }] })
    expect(v.inject(msg)).toBe('reject')
    const [ok] = encodeDelta({ incarnation: 1, sentAtMs: T0 + 100, groups: [{ limit: 'fixed/w', slotMs: 3_600_000, entries: [hash, epoch, 5] }] })
    expect(v.inject(ok)).toBe('accept')
    expect(v.node.stats().mergedEntries).toBe(1)
  })

  it('a cached clock lagging behind a stalled event loop does not wrong an honest peer: the source is read before rejecting', () => {
    // now() is the cached time, 1.5 s behind the source (a stall); fresh() is the source.
    let source = T0 + 1500
    const reads = { fresh: 0 }
    const clock = { now: () => T0, fresh: () => { reads.fresh++; return source }, setTimer: () => () => {} }
    let handler: MessageHandler | undefined
    const transport: Transport = stubTransport('victim', { subscribe (_topic, h) { handler = h }, unsubscribe () {} })
    const node = createLimiter({ clock, policies, transport, flushIntervalMs: 20 })
    const epoch = Math.floor(T0 / 3_600_000)
    const stamped = (at: number): Uint8Array => encodeDelta({ incarnation: 1, sentAtMs: at, groups: [{ limit: 'fixed/w', slotMs: 3_600_000, entries: [777, epoch, 2] }] })[0]
    // Within tolerance of the cache: the source is not read (the common path stays a field load).
    expect((handler as MessageHandler)(stamped(T0 + 500), 'peer')).toBe('accept')
    expect(reads.fresh).toBe(0)
    // Ahead of the cache by more than the tolerance (1 s), not of the source: accepted.
    expect((handler as MessageHandler)(stamped(T0 + 1600), 'peer')).toBe('accept')
    expect(reads.fresh).toBe(1)
    // Ahead of the source too: rejected, and the reason gives the distance to the source.
    source = T0
    expect((handler as MessageHandler)(stamped(T0 + 1600), 'peer')).toBe('reject')
    expect(node.stats().replicator?.lastRejections.at(-1)).toMatch(/stamped 1600 ms in the future/)
    node.close()
  })

  it('ignores limits it does not run and layouts that disagree', () => {
    const v = victim()
    const epoch = Math.floor(T0 / 3_600_000)
    const [msg] = encodeDelta({ incarnation: 1, sentAtMs: T0, groups: [
      { limit: 'unknown/w', slotMs: 1000, entries: [1, epoch, 5] },
      { limit: 'fixed/w', slotMs: 999, entries: [1, epoch, 5] },
      { limit: 'local/w', slotMs: 3_600_000, entries: [1, epoch, 5] }
    ] })
    expect(v.inject(msg)).toBe('accept')
    const s = v.node.stats()
    expect(s.mergedEntries).toBe(0)
    expect(s.unknownLimitGroups).toBe(3)
  })

  it('a peer can only write its own replica: its entries never overwrite ours', () => {
    const v = victim()
    v.node.check({ user: 'k', apiKey: 'k', route: 'k' }, 3)
    // An attacker replays counts for the same key: they land in the attacker's column.
    const h = (v.node as unknown as { wire: Map<string, { hashKey: (k: string) => number }> }).wire.get('fixed/w')?.hashKey('k') as number
    const epoch = Math.floor(T0 / 3_600_000)
    const [msg] = encodeDelta({ incarnation: 1, sentAtMs: T0, groups: [{ limit: 'fixed/w', slotMs: 3_600_000, entries: [h, epoch, 1] }] })
    v.inject(msg, 'victim')
    v.inject(msg, 'attacker')
    expect(used(v.node, 'k').fixed).toBe(3 + 1 + 1)
  })
})
