import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { WindowStore } from '../../crdt/window-store.js'
import { createLimiter, VirtualClock, type Limiter, type PolicyDocument } from '../../src/index.js'
import { mappedEpoch, migrateStore, type MigrationStats } from '../../src/migrate.js'
import { createLoopbackNetwork } from '../../gossip/loopback.js'
import { encodeBundle, generateOperatorKey, signBundle } from '../../src/policy/bundle.js'
import { createPolicyDistributor } from '../../src/policy/distribute.js'
import { createPolicyManager } from '../../src/policy/manager.js'
import { stubTransport } from '../helpers/transport.js'

const T0 = 1_800_000_000_000

// --- store level: every count moves later or stays, never earlier, and exactly when aligned ---

interface Layout { slotMs: number, pastSlots: number, futureSlots: number }

/** Slot widths: whole milliseconds (often multiples of each other) and fractional ones (window / slots). */
const slotMsArb = fc.oneof(
  fc.constantFrom(1, 2, 5, 10, 50, 100, 250, 1000, 3000, 6000),
  fc.integer({ min: 1, max: 5000 }),
  fc.tuple(fc.integer({ min: 1, max: 60_000 }), fc.integer({ min: 1, max: 12 })).map(([w, k]) => w / k)
)
const layoutArb: fc.Arbitrary<Layout> = fc.record({ slotMs: slotMsArb, pastSlots: fc.integer({ min: 1, max: 13 }), futureSlots: fc.integer({ min: 0, max: 3 }) })

interface Event { rep: number, t: number, count: number }

function store (l: Layout, replicated = true): WindowStore {
  return new WindowStore({ ...l, maxKeys: 64, replicated })
}

/**
 * Feeds `events` (times relative to `now`) to a store the way replication does: absolute
 * counts per (replica, slot), own counts included, merged at `now`. Returns the events
 * the store kept (those inside its retained range).
 */
function feed (s: WindowStore, key: string, events: Event[], now: number): Event[] {
  const nowEpoch = s.epochOf(now)
  const i = s.acquire(key, nowEpoch)
  const sums = new Map<string, number>()
  const kept: Event[] = []
  for (const ev of events) {
    const e = s.epochOf(ev.t)
    if (e <= nowEpoch - s.pastSlots || e > nowEpoch + (ev.rep === 0 ? 0 : s.futureSlots)) continue
    kept.push(ev)
    const k = `${ev.rep}:${e}`
    sums.set(k, (sums.get(k) ?? 0) + ev.count)
  }
  for (const [k, count] of sums) {
    const [rep, e] = k.split(':').map(Number)
    s.merge(i, rep, e, count, nowEpoch)
  }
  return kept
}

/** Total of the counts of `s`'s key at epochs >= b. */
function suffix (s: WindowStore, key: string, b: number): number {
  let total = 0
  s.forEachEntry(s.find(key), (_rep, e, c) => { if (e >= b) total += c })
  return total
}

const eventsArb = (span: number): fc.Arbitrary<Event[]> => fc.array(fc.record({
  rep: fc.integer({ min: 0, max: 3 }),
  // From well before the window to a little after now (peers with fast clocks), in whole and half ms.
  t: fc.integer({ min: -2 * Math.ceil(span), max: Math.ceil(span / 4) }).map(h => h / 2),
  count: fc.integer({ min: 1, max: 9 })
}), { maxLength: 30 })

function emptyStats (): MigrationStats {
  return { keys: 0, entries: 0, dropped: 0, folded: 0, skipped: undefined }
}

describe('migrateStore', () => {
  const setup = fc.tuple(layoutArb, layoutArb, fc.constantFrom(T0, 1_000_003.5, 0)).chain(([from, to, now]) => {
    const span = Math.max(from.slotMs * (from.pastSlots + 1), to.slotMs * (to.pastSlots + 1))
    return fc.tuple(fc.constant(from), fc.constant(to), fc.constant(now), eventsArb(span).map(evs => evs.map(e => ({ ...e, t: now + (e.rep === 0 ? Math.min(0, e.t) : e.t) }))))
  })

  it('never moves a count earlier: for every slot boundary, usage from there on is at least the exact re-bucketing', () => {
    fc.assert(fc.property(setup, ([from, to, now, events]) => {
      const src = store(from)
      const kept = feed(src, 'k', events, now)
      const dst = store(to)
      migrateStore(src, dst, now, 0, emptyStats())
      const dstNow = dst.epochOf(now)
      const oldest = dstNow - to.pastSlots + 1
      if (dst.find('k') < 0) {
        // Nothing moved: nothing kept fell inside the new window either.
        for (const ev of kept) expect(Math.floor(ev.t / to.slotMs) < oldest || Math.floor(ev.t / to.slotMs) > dstNow + to.futureSlots).toBe(true)
        return
      }
      for (let b = oldest; b <= dstNow + to.futureSlots + 1; b++) {
        const exact = kept.filter(ev => {
          const e = Math.floor(ev.t / to.slotMs)
          return e >= b && e <= dstNow + to.futureSlots
        }).reduce((n, ev) => n + ev.count, 0)
        expect(suffix(dst, 'k', b)).toBeGreaterThanOrEqual(exact)
        // And no count moves more than one old slot later than it happened.
        const bound = kept.filter(ev => ev.t + from.slotMs > b * to.slotMs - 1e-6 * to.slotMs).reduce((n, ev) => n + ev.count, 0)
        expect(suffix(dst, 'k', b)).toBeLessThanOrEqual(bound)
      }
    }), { numRuns: 500 })
  })

  it('is exact per replica and slot when every old slot lies inside one new slot', () => {
    const aligned = fc.tuple(fc.constantFrom(1, 2, 5, 10, 100, 1000), fc.integer({ min: 1, max: 6 }), layoutArb, layoutArb, fc.constantFrom(T0, 0, 7_000_000))
      .chain(([w, m, a, b, now]) => {
        const from = { ...a, slotMs: w }
        const to = { ...b, slotMs: w * m }
        return fc.tuple(fc.constant(from), fc.constant(to), fc.constant(now), eventsArb(Math.max(w * (a.pastSlots + 1), w * m * (b.pastSlots + 1))).map(evs => evs.map(e => ({ ...e, t: now + (e.rep === 0 ? Math.min(0, e.t) : e.t) }))))
      })
    fc.assert(fc.property(aligned, ([from, to, now, events]) => {
      const src = store(from)
      const kept = feed(src, 'k', events, now)
      const dst = store(to)
      migrateStore(src, dst, now, 0, emptyStats())
      const dstNow = dst.epochOf(now)
      const oldest = dstNow - to.pastSlots + 1
      const expected = new Map<string, number>()
      for (const ev of kept) {
        let e = Math.floor(ev.t / to.slotMs)
        // Peers' slots further ahead than the new store keeps are held at its edge.
        if (e > dstNow + to.futureSlots) e = dstNow + to.futureSlots
        if (e < oldest) continue
        expected.set(`${ev.rep}:${e}`, (expected.get(`${ev.rep}:${e}`) ?? 0) + ev.count)
      }
      const got = new Map<string, number>()
      const i = dst.find('k')
      if (i >= 0) dst.forEachEntry(i, (rep, e, c) => got.set(`${rep}:${e}`, c))
      expect(got).toEqual(expected)
    }), { numRuns: 500 })
  })

  it('maps an old slot to the new slot holding its last millisecond', () => {
    expect(mappedEpoch(0, 100, 200)).toBe(0)
    expect(mappedEpoch(1, 100, 200)).toBe(0)
    expect(mappedEpoch(2, 100, 200)).toBe(1)
    expect(mappedEpoch(0, 1000, 300)).toBe(3)
    expect(mappedEpoch(-1, 100, 200)).toBe(-1)
    // Widths that floats cannot represent (1000 / 3, 60000 / 7 ms) still map exactly when aligned.
    fc.assert(fc.property(fc.integer({ min: -1000, max: 2e12 }), fc.integer({ min: 1, max: 120 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 2_678_400_000 }), (e, k, m, w) => {
      expect(mappedEpoch(e, 1000 / 3, 1000)).toBe(Math.floor(e / 3))
      expect(mappedEpoch(e, w / k, w)).toBe(Math.floor(e / k))
      expect(mappedEpoch(e, w / k, (w * m) / k)).toBe(Math.floor(e / m))
      // Finer new slots: the last of the new slots inside the old one.
      expect(mappedEpoch(e, w / k, w / (k * m))).toBe((e + 1) * m - 1)
    }))
    // Not aligned: never earlier than the slot holding the old slot's last instant (times up to year 2096).
    fc.assert(fc.property(fc.integer({ min: -1000, max: 4e12 }), fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 5000 }), (t, a, b) => {
      const e = Math.floor(t / a)
      const got = mappedEpoch(e, a, b)
      // ceil((e + 1) a / b) - 1 in exact integer arithmetic (floor division for negatives too).
      const num = BigInt(e + 1) * BigInt(a)
      const q = num / BigInt(b) + (num % BigInt(b) > 0n ? 1n : 0n) - 1n
      const exact = Number(num >= 0n ? q : -((-num) / BigInt(b)) - 1n)
      expect(got === exact || got === exact + 1).toBe(true)
    }))
  })

  it('moves keys known only by hash between replicated stores, and only own counts into a node-scoped store', () => {
    const src = store({ slotMs: 100, pastSlots: 5, futureSlots: 1 })
    const now = 10_000
    const h = src.hashKey('peer-only')
    src.mergeHash(h, 2, src.epochOf(now), 7, src.epochOf(now))
    const mine = src.acquire('mine', src.epochOf(now))
    src.merge(mine, 1, src.epochOf(now), 3, src.epochOf(now))
    src.add(mine, src.epochOf(now), 4)
    const replicated = store({ slotMs: 200, pastSlots: 3, futureSlots: 1 })
    migrateStore(src, replicated, now, 0, emptyStats())
    expect(replicated.sumOf(replicated.findHash(h))).toBe(7)
    expect(replicated.sumOf(replicated.find('mine'))).toBe(7)
    const local = store({ slotMs: 200, pastSlots: 3, futureSlots: 1 }, false)
    migrateStore(src, local, now, 0, emptyStats())
    expect(local.size).toBe(1)
    expect(local.sumOf(local.find('mine'))).toBe(4)
  })

  it('re-sends own counts that peers had not heard of, and nothing else', () => {
    const now = 10_000
    const src = store({ slotMs: 100, pastSlots: 5, futureSlots: 1 })
    const a = src.acquire('drained', src.epochOf(now))
    src.add(a, src.epochOf(now), 2)
    src.drainDirty([])
    const b = src.acquire('pending', src.epochOf(now))
    src.add(b, src.epochOf(now), 5)
    const dst = store({ slotMs: 200, pastSlots: 3, futureSlots: 1 })
    migrateStore(src, dst, now, 0, emptyStats())
    const out: number[] = []
    dst.drainDirty(out)
    expect(out).toEqual([dst.hashKey('pending'), dst.epochOf(now), 5])
    // Counts of a node-scoped store were never gossiped: all of them go out once it is replicated.
    const local = store({ slotMs: 100, pastSlots: 5, futureSlots: 1 }, false)
    local.add(local.acquire('x', local.epochOf(now)), local.epochOf(now), 3)
    const rep = store({ slotMs: 100, pastSlots: 5, futureSlots: 1 })
    migrateStore(local, rep, now, 0, emptyStats())
    const out2: number[] = []
    rep.drainDirty(out2)
    expect(out2).toEqual([rep.hashKey('x'), rep.epochOf(now), 3])
  })
})

// --- limiter level: setPolicies keeps usage across a window change ---------------------

function limiterWith (doc: PolicyDocument, clock: VirtualClock): Limiter {
  return createLimiter({ clock, policies: doc })
}

function perUser (limit: Record<string, unknown>): PolicyDocument {
  return { policies: [{ id: 'per-user', key: 'user', limits: [{ id: 'main', ...limit }] }] }
}

function spend (l: Limiter, n: number, user = 'u'): void {
  for (let i = 0; i < n; i++) expect(l.check({ user }).allowed).toBe(true)
}

describe('setPolicies with a changed layout keeps usage', () => {
  it('a longer window (aligned): exact', () => {
    const clock = new VirtualClock(T0)
    const l = limiterWith(perUser({ limit: 100, window: '1m' }), clock)
    spend(l, 30)
    clock.advance(20_000)
    spend(l, 10)
    l.setPolicies(perUser({ limit: 100, window: '2m' }))
    expect(l.check({ user: 'u' }).remaining).toBe(59)
    expect(l.stats().limits[0]).toMatchObject({ name: 'per-user/main', keys: 1 })
  })

  it('a shorter window drops only what left it', () => {
    const clock = new VirtualClock(Math.ceil(T0 / 60_000) * 60_000)
    const l = limiterWith(perUser({ limit: 100, window: '1m', slots: 6 }), clock)
    spend(l, 30)
    clock.advance(40_000)
    spend(l, 10)
    l.setPolicies(perUser({ limit: 100, window: '20s', slots: 2 }))
    // The 30 from 40 s ago are outside a 20 s window; the 10 just now are inside.
    expect(l.check({ user: 'u' }).remaining).toBe(89)
  })

  it('a finer window (not aligned): never fewer than the exact count, at most one old slot later', () => {
    // Old slots of 15 s, new slots of 1 s; T0 is a multiple of both.
    const clock = new VirtualClock(T0)
    const l = limiterWith(perUser({ limit: 100, window: '1m', slots: 4 }), clock)
    clock.advance(5_000)
    spend(l, 10)
    clock.advance(20_000)
    l.setPolicies(perUser({ limit: 100, window: '1m', slots: 60 }))
    expect(l.check({ user: 'u' }).remaining).toBe(89)
    // The 10 taken at +5 s moved to the end of their old slot (+14 s): at +70 s an exact
    // count would have forgotten them, the migrated one still holds them.
    clock.advance(45_000)
    expect(l.peek({ user: 'u' }).remaining).toBe(89)
    // Past +14 s + 61 s they are gone; the request at +25 s still counts.
    clock.advance(6_000)
    expect(l.peek({ user: 'u' }).remaining).toBe(99)
  })

  it('sliding to fixed window and back, and fixed to token bucket', () => {
    const clock = new VirtualClock(Math.floor(T0 / 60_000) * 60_000 + 10_000)
    const l = limiterWith(perUser({ limit: 50, window: '1m' }), clock)
    spend(l, 20)
    l.setPolicies(perUser({ algorithm: 'fixed-window', limit: 50, window: '1m' }))
    expect(l.check({ user: 'u' }).remaining).toBe(29)
    l.setPolicies(perUser({ limit: 50, window: '1m' }))
    expect(l.check({ user: 'u' }).remaining).toBe(28)
    l.setPolicies(perUser({ algorithm: 'token-bucket', ratePerSecond: 1, burst: 30 }))
    // 22 taken just now: a bucket of 30 has about 8 left.
    const d = l.check({ user: 'u' }, 8)
    expect(d.allowed).toBe(true)
    expect(l.check({ user: 'u' }).allowed).toBe(false)
  })

  it('a token bucket keeps its level when its refill horizon changes (aligned: same answers as the new layout from the start)', () => {
    const start = Math.ceil(T0 / 10_000) * 10_000
    const v1 = perUser({ algorithm: 'token-bucket', ratePerSecond: 1, burst: 10 })
    const v2 = perUser({ algorithm: 'token-bucket', ratePerSecond: 1, burst: 10, slots: 5 })
    const clock = new VirtualClock(start)
    const l = limiterWith(v1, clock)
    const ref = limiterWith(v2, clock)
    for (const x of [l, ref]) spend(x, 10)
    clock.advance(500)
    l.setPolicies(v2)
    for (const dt of [0, 1500, 1000, 2000, 5000]) {
      clock.advance(dt)
      for (let cost = 1; cost <= 10; cost++) expect(l.peek({ user: 'u' }, cost).allowed).toBe(ref.peek({ user: 'u' }, cost).allowed)
    }
    // 10 s after the burst, 8 tokens are back (refill starts when the 2 s slot closes).
    expect([l.peek({ user: 'u' }, 8).allowed, l.peek({ user: 'u' }, 9).allowed]).toEqual([true, false])
  })

  it('a busy token bucket keeps history older than its ring (the carried level)', () => {
    // Rate 1/s, burst 100, one 100 s slot: the ring keeps 200 s, older slots fold into a carried level.
    const start = Math.ceil(T0 / 100_000) * 100_000
    const clock = new VirtualClock(start)
    const l = limiterWith(perUser({ algorithm: 'token-bucket', ratePerSecond: 1, burst: 100, slots: 1 }), clock)
    expect(l.check({ user: 'u' }, 100).allowed).toBe(true)
    clock.advance(150_000)
    expect(l.check({ user: 'u' }, 50).allowed).toBe(true)
    clock.advance(60_000)
    // Level now: 40 of 100 in use, 100 of it from the carried slot.
    expect([l.peek({ user: 'u' }, 60).allowed, l.peek({ user: 'u' }, 61).allowed]).toEqual([true, false])
    l.setPolicies(perUser({ algorithm: 'token-bucket', ratePerSecond: 1, burst: 100, slots: 10 }))
    // The 50 moved to the end of their 100 s slot: 50 in use now, 10 more than before (never fewer).
    expect([l.peek({ user: 'u' }, 50).allowed, l.peek({ user: 'u' }, 51).allowed]).toEqual([true, false])
  })

  it('concurrency: leases in flight stay counted when the lease TTL changes', () => {
    const clock = new VirtualClock(T0)
    const l = limiterWith(perUser({ algorithm: 'concurrency', limit: 3, leaseTtlMs: 10_000 }), clock)
    const a = l.acquire({ user: 'u' })
    const b = l.acquire({ user: 'u' })
    b.release()
    l.setPolicies(perUser({ algorithm: 'concurrency', limit: 3, leaseTtlMs: 20_000 }))
    expect(l.acquire({ user: 'u' }).allowed).toBe(true)
    expect(l.acquire({ user: 'u' }).allowed).toBe(true)
    expect(l.acquire({ user: 'u' }).allowed).toBe(false)
    a.release()
  })

  it('a window limit that becomes a concurrency limit starts empty', () => {
    const clock = new VirtualClock(T0)
    const l = limiterWith(perUser({ limit: 5, window: '1m' }), clock)
    spend(l, 5)
    l.setPolicies(perUser({ algorithm: 'concurrency', limit: 1 }))
    expect(l.acquire({ user: 'u' }).allowed).toBe(true)
  })

  it('peers\' counts move with the layout, and a node-scoped limit made global gossips its past usage', () => {
    const clock = new VirtualClock(T0)
    const peer = createLimiter({ clock, policies: perUser({ limit: 100, window: '1m' }), transport: stubTransport('peer') })
    const l = createLimiter({ clock, policies: perUser({ limit: 100, window: '1m' }), transport: stubTransport('me') })
    for (let i = 0; i < 7; i++) peer.check({ user: 'u' })
    l.applyDelta('peer', { incarnation: 1, sentAtMs: clock.now(), groups: peer.collectDelta() })
    spend(l, 3)
    l.setPolicies(perUser({ limit: 100, window: '2m' }))
    expect(l.check({ user: 'u' }).remaining).toBe(89)

    const local = createLimiter({ clock, policies: { policies: [{ id: 'p', key: 'user', scope: 'node', limits: [{ id: 'm', limit: 100, window: '1m' }] }] }, transport: stubTransport('x') })
    spend(local, 4)
    expect(local.collectDelta()).toEqual([])
    local.setPolicies({ policies: [{ id: 'p', key: 'user', limits: [{ id: 'm', limit: 100, window: '1m' }] }] })
    const groups = local.collectDelta()
    expect(groups.map(g => [g.limit, g.entries.length / 3, g.entries[2]])).toEqual([['p/m', 1, 4]])
    for (const x of [peer, l, local]) x.close()
  })

  it('shadow would-denials are counted per limit and survive a layout change', () => {
    const clock = new VirtualClock(T0)
    const shadow = (window: string): PolicyDocument => ({ policies: [{ id: 'new', key: 'user', shadow: true, limits: [{ id: 'm', limit: 2, window }] }] })
    const l = limiterWith(shadow('1m'), clock)
    for (let i = 0; i < 5; i++) expect(l.check({ user: 'u' }).allowed).toBe(true)
    // peek() is not a request: it does not count.
    l.peek({ user: 'u' })
    expect(l.stats().limits[0].shadowDenied).toBe(3)
    l.setPolicies(shadow('2m'))
    l.check({ user: 'u' })
    expect(l.stats().limits[0].shadowDenied).toBe(4)
  })
})

describe('a window change rolled out by bundle on a replicating mesh', () => {
  it('keeps the fleet-wide usage exact (aligned windows) and keeps converging afterwards', async () => {
    const key = generateOperatorKey()
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 5 })
    const v = (version: number, window: string): Uint8Array => encodeBundle(signBundle({ version, ...perUser({ limit: 1000, window }) }, key))
    const nodes = ['a', 'b', 'c'].map(id => {
      const transport = net.connect(id)
      const limiter = createLimiter({ clock, policies: perUser({ limit: 1000, window: '1m' }), transport, flushIntervalMs: 20 })
      const manager = createPolicyManager({ trustedKeys: [key.text], limiter, clock, initialBundle: v(1, '1m') })
      const dist = createPolicyDistributor({ transport, clock, manager, topic: 'mesh/policies' })
      void dist.start()
      return { limiter, manager, dist }
    })
    const tick = async (ms: number): Promise<void> => {
      for (let t = 0; t < ms; t += 5) {
        clock.advance(5)
        await new Promise(resolve => setImmediate(resolve))
      }
    }
    const used = (i: number): number => 1000 - nodes[i].limiter.peek({ user: 'u' }).remaining
    for (const [i, n] of [[0, 30], [1, 20], [2, 10]]) for (let j = 0; j < n; j++) nodes[i].limiter.check({ user: 'u' })
    await tick(100)
    expect([used(0), used(1), used(2)]).toEqual([60, 60, 60])
    nodes[0].manager.offer(v(2, '2m'), 'admin')
    await tick(100)
    expect(nodes.map(n => n.manager.version)).toEqual([2, 2, 2])
    // Every node moved its own and its peers' counts: still 60 everywhere, not 120.
    expect([used(0), used(1), used(2)]).toEqual([60, 60, 60])
    for (let j = 0; j < 7; j++) nodes[1].limiter.check({ user: 'u' })
    await tick(100)
    expect([used(0), used(1), used(2)]).toEqual([67, 67, 67])
    // The counts stay until the new 2 min window passes them (60 s on, a 1 min window would have dropped them).
    for (let s = 0; s < 90; s++) {
      clock.advance(1000)
      await new Promise(resolve => setImmediate(resolve))
    }
    expect(used(2)).toBe(67)
    for (const n of nodes) {
      n.dist.stop()
      n.limiter.close()
    }
  })
})
