import { describe, expect, it } from 'vitest'
import { decodeDelta, encodeDelta, encodeMarker, DEFAULT_CODEC_LIMITS } from '../../gossip/codec.js'
import { createRepair } from '../../gossip/repair.js'
import { decodeRepairRequest, encodeRepairAnswer } from '../../gossip/repair-codec.js'
import type { MessageHandler, Transport } from '../../gossip/transport.js'
import { createLimiter, createLoopbackNetwork, VirtualClock, type Limiter, type LoopbackNetwork, type PolicyDocument } from '../../src/index.js'
import type { LimiterInit } from '../../src/limiter.js'

const T0 = 1_800_000_000_000
const TOPIC = 'meshlimit/counters'
const PROTOCOL = `/meshlimit/repair/1/${TOPIC}`
const policies: PolicyDocument = { policies: [{ id: 'fixed', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 1_000_000, window: '1h' }] }] }

const settle = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }
/** Moves virtual time `ms` forward 1 ms at a time, letting promise continuations (answers) run. */
async function run (clock: VirtualClock, ms: number): Promise<void> {
  for (let i = 0; i < ms; i++) {
    clock.advance(1)
    await settle()
  }
}

const used = (l: Limiter, k: string): number => 1_000_000 - l.peek({ user: k }).remaining
const repairOf = (l: Limiter) => l.stats().replicator?.repair as NonNullable<NonNullable<ReturnType<Limiter['stats']>['replicator']>['repair']>
const seqOf = (data: Uint8Array): number | undefined => {
  const r = decodeDelta(data)
  return r.ok && r.msg.groups.length > 0 ? r.msg.seq : undefined
}

interface Pair { clock: VirtualClock, net: LoopbackNetwork, a: Limiter, b: Limiter, dropped: number[] }

/**
 * Two limiters on the loopback network (2 ms per leg), flushing every 50 ms, with
 * re-publication off so only gap repair can fill a gap. `lose(seq)` decides which of
 * a's counter messages to b are lost; idle markers are lost when `markers` is false.
 */
function pair (lose: (seq: number) => boolean, o: { markers?: boolean, a?: Partial<LimiterInit>, b?: Partial<LimiterInit> } = {}): Pair {
  const clock = new VirtualClock(T0)
  const dropped: number[] = []
  const net = createLoopbackNetwork({
    clock,
    latencyMs: 2,
    drop (topic, from, to, data) {
      if (topic !== TOPIC || from !== 'a' || to !== 'b') return false
      const seq = seqOf(data)
      if (seq === undefined) return o.markers === false
      if (!lose(seq)) return false
      dropped.push(seq)
      return true
    }
  })
  const make = (id: string, extra: Partial<LimiterInit> = {}): Limiter => createLimiter({ clock, policies, transport: net.connect(id), flushIntervalMs: 50, incarnation: 1, republishIntervalMs: 0, ...extra })
  return { clock, net, a: make('a', o.a), b: make('b', o.b), dropped }
}

/** a counts key `k` `n` times, then one flush carries it (message seq = a's next). */
async function burst (p: Pair, k: string, n = 1): Promise<void> {
  p.a.check({ user: k }, n)
  await run(p.clock, 50)
}

describe('gap repair (loopback, virtual time)', () => {
  it('a lost message is requested from its sender and merged, long before re-publication', async () => {
    const p = pair(seq => seq === 2)
    await burst(p, 'x1')
    await burst(p, 'x2', 3)
    expect(used(p.b, 'x2')).toBe(0)
    await burst(p, 'x3')
    // seq 3 reveals the gap; after the grace (25 ms) b asks a and merges the answer.
    await run(p.clock, 40)
    expect(p.dropped).toEqual([2])
    expect(used(p.b, 'x2')).toBe(3)
    expect(repairOf(p.b)).toMatchObject({ gaps: 1, requests: 1, messagesRepaired: 1, snapshotsMerged: 0, answersRejected: 0 })
    expect(repairOf(p.a).served).toBe(1)
    for (const k of ['x1', 'x2', 'x3']) expect(used(p.b, k)).toBe(used(p.a, k))
  })

  it('a message that arrives late, within the grace, causes no request', async () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 2 })
    const ta = net.connect('a')
    const inner = net.connect('b')
    // b's transport holds seq 2 back 10 ms, so seq 3 overtakes it.
    const tb: Transport = {
      ...inner,
      peerId: 'b',
      subscribe (topic, handler: MessageHandler) {
        inner.subscribe(topic, (data, from) => {
          if (topic === TOPIC && seqOf(data) === 2) {
            clock.setTimer(10, () => { handler(data, from) })
            return 'accept'
          }
          return handler(data, from)
        })
      }
    }
    const a = createLimiter({ clock, policies, transport: ta, flushIntervalMs: 50, incarnation: 1, republishIntervalMs: 0 })
    const b = createLimiter({ clock, policies, transport: tb, flushIntervalMs: 50, incarnation: 1, republishIntervalMs: 0 })
    a.check({ user: 'x1' })
    await run(clock, 50)
    a.check({ user: 'x2' })
    a.flush()
    a.check({ user: 'x3' })
    a.flush()
    await run(clock, 200)
    expect(used(b, 'x2')).toBe(1)
    expect(used(b, 'x3')).toBe(1)
    const r = repairOf(b)
    expect(r.gaps).toBe(1)
    expect(r.requests).toBe(0)
    expect(net.stats.requests).toBe(0)
  })

  it('a trailing loss (nothing follows) is caught by the idle marker', async () => {
    const p = pair(seq => seq === 2)
    await burst(p, 'x1')
    await burst(p, 'x2', 2)
    expect(used(p.b, 'x2')).toBe(0)
    // a goes idle: its next flush sends a marker with seq 2.
    await run(p.clock, 100)
    expect(used(p.b, 'x2')).toBe(2)
    expect(p.a.stats().replicator?.markersSent).toBeGreaterThan(0)
    expect(repairOf(p.b).messagesRepaired).toBe(1)
  })

  it('a trailing loss whose markers are lost too is caught by the seq a heartbeat announces', async () => {
    const p = pair(seq => seq === 2, { markers: false })
    await burst(p, 'x1')
    await burst(p, 'x2', 2)
    await run(p.clock, 1000)
    expect(used(p.b, 'x2')).toBe(0)
    expect(repairOf(p.b).requests).toBe(0)
    // What membership does with a same-region heartbeat carrying a's last seq.
    expect(p.a.gossipSeq()).toBe(2)
    p.b.announcedSeq('a', 1, p.a.gossipSeq())
    await run(p.clock, 40)
    expect(used(p.b, 'x2')).toBe(2)
    expect(repairOf(p.b).messagesRepaired).toBe(1)
  })

  it('seqs that left the sender\'s ring are answered with a snapshot of its own live entries', async () => {
    // a keeps 3 messages; b hears nothing of seqs 1-6, then seq 7.
    // b is no young node (youngMs 0): a sender's first seq it hears does not start its count.
    const p = pair(seq => seq <= 6, { a: { repair: { ringMessages: 3 } }, b: { repair: { youngMs: 0 } } })
    for (let i = 1; i <= 7; i++) await burst(p, `x${i}`, i)
    await run(p.clock, 40)
    const r = repairOf(p.b)
    expect(r.snapshotsMerged).toBe(1)
    expect(r.messagesRepaired).toBe(0)
    expect(repairOf(p.a).servedSnapshots).toBe(1)
    for (let i = 1; i <= 7; i++) expect(used(p.b, `x${i}`)).toBe(i)
    // The snapshot covers everything a had sent: no gap is left open.
    await run(p.clock, 300)
    expect(repairOf(p.b).requests).toBe(1)
  })

  it('a restarted sender (new incarnation) is tracked afresh from seq 1', async () => {
    let restarted = false
    const p = pair(seq => restarted && seq === 2)
    await burst(p, 'x1')
    await burst(p, 'x2')
    await burst(p, 'x3')
    p.a.close()
    p.net.disconnect('a')
    // Same peer id, incarnation 2: its seq 1 continues nothing b knows, and is no gap.
    restarted = true
    const a2 = createLimiter({ clock: p.clock, policies, transport: p.net.connect('a'), flushIntervalMs: 50, incarnation: 2, republishIntervalMs: 0 })
    a2.check({ user: 'y1' })
    await run(p.clock, 60)
    expect(used(p.b, 'y1')).toBe(1)
    expect(repairOf(p.b).gaps).toBe(0)
    // A gap in the new incarnation (its seq 2 lost) is repaired from it, at seq 2 (not 5).
    a2.check({ user: 'y2' })
    await run(p.clock, 50)
    a2.check({ user: 'y3' })
    await run(p.clock, 90)
    expect(p.dropped).toEqual([2])
    expect(used(p.b, 'y2')).toBe(1)
    expect(repairOf(p.b)).toMatchObject({ gaps: 1, requests: 1, messagesRepaired: 1 })
  })
})

describe('gap repair rejects forged and malformed answers', () => {
  /** b (a real limiter) and a fake peer `f` that publishes seq 2 and answers repairs with `answer`. */
  async function forged (answer: (req: Uint8Array) => Uint8Array): Promise<{ b: Limiter, clock: VirtualClock }> {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 2 })
    const b = createLimiter({ clock, policies, transport: net.connect('b'), flushIntervalMs: 50, incarnation: 1, republishIntervalMs: 0 })
    const f = net.connect('f')
    f.handle(PROTOCOL, answer)
    const epoch = Math.floor(T0 / 3_600_000)
    const publish = (seq: number, hash: number): void => {
      for (const m of encodeDelta({ incarnation: 1, seq, sentAtMs: clock.now(), groups: [{ limit: 'fixed/w', slotMs: 3_600_000, entries: [hash, epoch, 5] }] })) f.publish(TOPIC, m)
    }
    publish(1, 111)
    await run(clock, 5)
    publish(3, 333)
    await run(clock, 100)
    return { b, clock }
  }
  const forgedMessage = (o: { incarnation?: number, sentAtMs?: number }): Uint8Array =>
    encodeDelta({ incarnation: o.incarnation ?? 1, seq: 2, sentAtMs: o.sentAtMs ?? T0, groups: [{ limit: 'fixed/w', slotMs: 3_600_000, entries: [12345, Math.floor(T0 / 3_600_000), 999] }] })[0]

  it.each<[string, (req: Uint8Array) => Uint8Array, RegExp]>([
    ['garbage bytes', () => new Uint8Array([1, 2, 3]), /repair answer from f/],
    ['a message naming another incarnation', req => encodeRepairAnswer({ incarnation: decodeRepairRequest(req)?.incarnation ?? 1, lastSeq: 3, snapshot: false, messages: [forgedMessage({ incarnation: 7 })] }), /incarnation 7/],
    ['a malformed message', () => encodeRepairAnswer({ incarnation: 1, lastSeq: 3, snapshot: false, messages: [new Uint8Array([0x95, 2, 1, 2])] }), /repair answer from f/],
    ['a message stamped in the future', () => encodeRepairAnswer({ incarnation: 1, lastSeq: 3, snapshot: false, messages: [forgedMessage({ sentAtMs: T0 + 3_600_000 })] }), /future/],
    ['a seq that was not asked for', () => encodeRepairAnswer({ incarnation: 1, lastSeq: 9, snapshot: false, messages: [encodeDelta({ incarnation: 1, seq: 8, sentAtMs: T0, groups: [{ limit: 'fixed/w', slotMs: 3_600_000, entries: [12345, Math.floor(T0 / 3_600_000), 999] }] })[0]] }), /not asked/]
  ])('%s: rejected, nothing merged, the peer not asked again at once', async (_what, answer, reason) => {
    const { b, clock } = await forged(answer)
    const r = repairOf(b)
    expect(r.requests).toBe(1)
    expect(r.answersRejected).toBe(1)
    expect(r.messagesRepaired).toBe(0)
    expect(b.stats().replicator?.lastRejections.at(-1)).toMatch(reason)
    // The two published entries only: the forged count (hash 12345) was never merged.
    expect(b.stats().mergedEntries).toBe(2)
    await run(clock, 500)
    expect(repairOf(b).requests).toBe(1)
  })
})

/** A started repair of node 'me' alone on a loopback network, with `o` over the defaults. */
function standalone (o: Partial<Parameters<typeof createRepair>[0]> = {}) {
  const clock = new VirtualClock(T0)
  const net = createLoopbackNetwork({ clock })
  const repair = createRepair({
    transport: net.connect('me'),
    clock,
    protocol: PROTOCOL,
    incarnation: 1,
    maxMessageBytes: 65536,
    codecLimits: DEFAULT_CODEC_LIMITS,
    decode: decodeDelta,
    snapshot: () => [],
    check: () => undefined,
    apply: () => 'accept',
    ...o
  })
  repair.start()
  return { clock, net, repair }
}

describe('createRepair bounds', () => {

  it('tracks at most maxSenders senders under a flood of them', () => {
    const { repair } = standalone({ maxSenders: 8 })
    for (let i = 0; i < 1000; i++) repair.received(`p${i}`, 1, 1 + (i % 5))
    expect(repair.senders).toBe(8)
    repair.forget('p999')
    expect(repair.senders).toBe(7)
  })

  it('an old node asks a newly heard sender for everything from seq 1; a young one starts at its first seq', () => {
    const young = standalone({ youngMs: 10_000 })
    young.repair.received('p', 1, 5)
    expect(young.repair.stats.gaps).toBe(0)
    const old = standalone({ youngMs: 10_000 })
    old.clock.advance(10_000)
    old.repair.received('p', 1, 5)
    expect(old.repair.stats.gaps).toBe(1)
  })

  it('requests to one peer are rate limited while a gap stays open', async () => {
    const { clock, repair } = standalone({ youngMs: 0 })
    // Nobody answers (no such peer): each attempt fails at once.
    repair.received('ghost', 1, 10)
    await run(clock, 1000)
    // graceMs 50, at most one request per 100 ms.
    expect(repair.stats.requests).toBeGreaterThan(3)
    expect(repair.stats.requests).toBeLessThanOrEqual(11)
    expect(repair.stats.requestsFailed).toBe(repair.stats.requests)
  })

  it('the ring holds at most ringMessages messages and at most ringBytes bytes; older seqs get a snapshot', async () => {
    const { encodeRepairRequest, decodeRepairAnswer } = await import('../../gossip/repair-codec.js')
    const ringOf = async (o: { ringMessages?: number, ringBytes?: number }): Promise<(from: number, to: number) => Promise<{ snapshot: boolean, n: number }>> => {
      const { net, repair } = standalone(o)
      for (let seq = 1; seq <= 3000; seq++) repair.sent(seq, new Uint8Array(2000))
      expect(repair.lastSeq).toBe(3000)
      expect(() => { repair.sent(3002, new Uint8Array(1)) }).toThrow(RangeError)
      let peer = 0
      return async (from, to) => {
        const r = decodeRepairAnswer(await net.connect(`p${peer++}`).request('me', PROTOCOL, encodeRepairRequest({ incarnation: 1, ranges: [from, to] }), 1000))
        if (!r.ok) throw new Error(r.reason)
        return { snapshot: r.answer.snapshot, n: r.answer.messages.length }
      }
    }
    // Count-bound: the last 1,024 messages.
    const byCount = await ringOf({})
    expect(await byCount(1977, 3000)).toEqual({ snapshot: false, n: 1024 })
    expect((await byCount(1976, 1976)).snapshot).toBe(true)
    // Byte-bound: 10,000 bytes hold five 2,000-byte messages.
    const byBytes = await ringOf({ ringBytes: 10_000 })
    expect(await byBytes(2996, 3000)).toEqual({ snapshot: false, n: 5 })
    expect((await byBytes(2995, 2995)).snapshot).toBe(true)
    // An idle marker takes no seq and is a couple dozen bytes.
    expect(encodeMarker(T0, 5000, T0).byteLength).toBeLessThanOrEqual(26)
  })
})

describe('snapshot answers are rate limited', () => {
  it('per requester and across requesters', async () => {
    let walks = 0
    const { clock, net, repair } = standalone({
      snapshot: () => { walks++; return [{ limit: 'fixed/w', slotMs: 1000, entries: [1, 5, 1] }] },
      ringMessages: 2
    })
    for (let seq = 1; seq <= 5; seq++) repair.sent(seq, encodeDelta({ incarnation: 1, seq, sentAtMs: T0, groups: [{ limit: 'fixed/w', slotMs: 1000, entries: [seq, 5, 1] }] })[0])
    const { encodeRepairRequest, decodeRepairAnswer } = await import('../../gossip/repair-codec.js')
    const ask = async (peer: string): Promise<boolean> => {
      const t = net.connect(peer)
      try {
        const r = decodeRepairAnswer(await t.request('me', PROTOCOL, encodeRepairRequest({ incarnation: 1, ranges: [1, 5] }), 1000))
        return r.ok && r.answer.snapshot
      } catch {
        return false
      } finally {
        net.disconnect(peer)
      }
    }
    // Seqs 1-3 left the ring of 2: a snapshot, once per requester per second...
    expect(await ask('p0')).toBe(true)
    net.disconnect('p0')
    const again = net.connect('p0')
    await expect(again.request('me', PROTOCOL, encodeRepairRequest({ incarnation: 1, ranges: [1, 5] }), 1000)).rejects.toThrow(/too often/)
    net.disconnect('p0')
    // ...and at most 8 per second in all.
    const answers: boolean[] = []
    for (let i = 1; i <= 12; i++) answers.push(await ask(`p${i}`))
    expect(answers.filter(Boolean)).toHaveLength(7)
    expect(walks).toBe(8)
    clock.advance(1000)
    expect(await ask('p0')).toBe(true)
  })
})
