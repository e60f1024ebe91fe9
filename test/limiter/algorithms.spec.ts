import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createLimiter, VirtualClock, type LimitSpec, type Limiter } from '../../src/index.js'

const T0 = 1_800_000_000_000

function single (limit: LimitSpec, clock = new VirtualClock(T0)): { limiter: Limiter, clock: VirtualClock } {
  const limiter = createLimiter({ clock, policies: { policies: [{ id: 'p', key: 'user', limits: [limit] }] } })
  return { limiter, clock }
}

/** A request stream: gaps between requests (ms) and their costs. */
const streamArb = (maxGapMs: number, maxCost: number): fc.Arbitrary<Array<{ gap: number, cost: number }>> =>
  fc.array(fc.record({ gap: fc.integer({ min: 0, max: maxGapMs }), cost: fc.integer({ min: 1, max: maxCost }) }), { minLength: 1, maxLength: 300 })

describe('sliding window', () => {
  it('admits exactly the limit from idle, then denies', () => {
    const { limiter } = single({ limit: 5, windowMs: 1000 })
    const got = Array.from({ length: 7 }, () => limiter.check({ user: 'a' }).allowed)
    expect(got).toEqual([true, true, true, true, true, false, false])
  })

  it('weights the oldest slot by the share of it still inside the window', () => {
    // 10 slots of 100 ms. 10 requests at t=0 land in slot 0; at t=1050 the window
    // (50 ms .. 1050 ms] still holds half of slot 0, so the estimate is 5 and 5 more fit.
    const { limiter, clock } = single({ limit: 10, windowMs: 1000 })
    clock.runUntil(0 + Math.ceil(T0 / 100) * 100)
    const start = clock.now()
    for (let i = 0; i < 10; i++) expect(limiter.check({ user: 'a' }).allowed).toBe(true)
    clock.runUntil(start + 1050)
    let admitted = 0
    while (limiter.check({ user: 'a' }).allowed) admitted++
    expect(admitted).toBe(5)
  })

  it('never lets the estimate pass the limit, and bounds the exact count in any window', () => {
    // Exact admitted count in (t - W, t] is at most limit + the count of the slot the
    // window start cuts (the interpolation's only error), checked at every admission.
    fc.assert(fc.property(streamArb(120, 3), fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 12 }), (stream, limit, slots) => {
      const windowMs = 1000
      const slotMs = windowMs / slots
      const { limiter, clock } = single({ limit, windowMs, slots })
      const admitted: Array<{ t: number, cost: number }> = []
      for (const { gap, cost } of stream) {
        clock.advance(gap)
        const t = clock.now()
        const d = limiter.check({ user: 'k' }, cost)
        if (!d.allowed) continue
        admitted.push({ t, cost })
        const inWindow = admitted.filter(a => a.t > t - windowMs).reduce((n, a) => n + a.cost, 0)
        const cutSlot = Math.floor((t - windowMs) / slotMs)
        const inCutSlot = admitted.filter(a => Math.floor(a.t / slotMs) === cutSlot).reduce((n, a) => n + a.cost, 0)
        expect(inWindow).toBeLessThanOrEqual(limit + inCutSlot)
        expect(d.remaining).toBeGreaterThanOrEqual(0)
      }
    }), { numRuns: 150 })
  })

  it('is exact for traffic spread evenly: a steady 2x overload admits the limit per window', () => {
    const { limiter, clock } = single({ limit: 100, windowMs: 1000 })
    let admitted = 0
    for (let t = 0; t < 10_000; t += 5) {
      clock.advance(5)
      if (limiter.check({ user: 'a' }).allowed && t >= 2000) admitted++
    }
    // 8 windows of steady traffic after warm-up: within 1% of 800.
    expect(Math.abs(admitted - 800)).toBeLessThanOrEqual(8)
  })
})

describe('fixed window', () => {
  it('admits at most the limit per aligned window and resets at the boundary', () => {
    fc.assert(fc.property(streamArb(300, 4), fc.integer({ min: 0, max: 20 }), (stream, limit) => {
      const windowMs = 1000
      const { limiter, clock } = single({ algorithm: 'fixed-window', limit, windowMs })
      const perWindow = new Map<number, number>()
      for (const { gap, cost } of stream) {
        clock.advance(gap)
        const w = Math.floor(clock.now() / windowMs)
        const used = perWindow.get(w) ?? 0
        const d = limiter.check({ user: 'k' }, cost)
        // Exact: allowed iff the cost still fits in this window.
        expect(d.allowed).toBe(used + cost <= limit)
        if (d.allowed) perWindow.set(w, used + cost)
        expect(d.resetMs).toBe((w + 1) * windowMs - clock.now())
      }
    }), { numRuns: 150 })
  })
})

describe('token bucket', () => {
  it('admits a full burst after idle, then the refill rate', () => {
    const { limiter, clock } = single({ algorithm: 'token-bucket', ratePerSecond: 10, burst: 20 })
    let burst = 0
    while (limiter.check({ user: 'a' }).allowed) burst++
    expect(burst).toBe(20)
    // Over the next 10 s of a tight loop it admits ~10/s (the model delays a slot's refill).
    let admitted = 0
    for (let t = 0; t < 10_000; t += 10) {
      clock.advance(10)
      if (limiter.check({ user: 'a' }).allowed) admitted++
    }
    expect(admitted).toBeLessThanOrEqual(100)
    expect(admitted).toBeGreaterThanOrEqual(97)
  })

  it('never admits more than burst + rate x elapsed over any interval', () => {
    fc.assert(fc.property(streamArb(400, 3), fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 50 }), (stream, burst, rate) => {
      const { limiter, clock } = single({ algorithm: 'token-bucket', ratePerSecond: rate, burst })
      const admitted: Array<{ t: number, cost: number }> = []
      for (const { gap, cost } of stream) {
        clock.advance(gap)
        if (limiter.check({ user: 'k' }, cost).allowed) admitted.push({ t: clock.now(), cost })
      }
      for (let i = 0; i < admitted.length; i++) {
        let total = 0
        for (let j = i; j < admitted.length; j++) {
          total += admitted[j].cost
          const elapsedS = (admitted[j].t - admitted[i].t) / 1000
          expect(total).toBeLessThanOrEqual(burst + rate * elapsedS + 1e-9)
        }
      }
    }), { numRuns: 120 })
  })
})

describe('retry-after', () => {
  const algorithms: Array<[string, LimitSpec]> = [
    ['sliding-window', { limit: 7, windowMs: 1000, slots: 5 }],
    ['fixed-window', { algorithm: 'fixed-window', limit: 7, windowMs: 1000 }],
    ['token-bucket', { algorithm: 'token-bucket', ratePerSecond: 5, burst: 7 }]
  ]
  for (const [name, spec] of algorithms) {
    it(`${name}: a denied request passes once retryAfterMs has elapsed with no other traffic`, () => {
      fc.assert(fc.property(streamArb(150, 3), fc.integer({ min: 1, max: 7 }), (stream, cost) => {
        const { limiter, clock } = single(spec)
        for (const { gap, cost: c } of stream) {
          clock.advance(gap)
          limiter.check({ user: 'k' }, c)
        }
        const d = limiter.check({ user: 'k' }, cost)
        if (d.allowed) return
        expect(Number.isFinite(d.retryAfterMs)).toBe(true)
        expect(d.retryAfterMs).toBeGreaterThan(0)
        clock.advance(d.retryAfterMs)
        expect(limiter.check({ user: 'k' }, cost).allowed).toBe(true)
      }), { numRuns: 150 })
    })
  }

  it('fixed window: the retry is tight (1 ms earlier still denies)', () => {
    const { limiter, clock } = single({ algorithm: 'fixed-window', limit: 2, windowMs: 1000 })
    limiter.check({ user: 'a' })
    limiter.check({ user: 'a' })
    const d = limiter.check({ user: 'a' })
    expect(d.allowed).toBe(false)
    clock.advance(d.retryAfterMs - 1)
    expect(limiter.peek({ user: 'a' }).allowed).toBe(false)
    clock.advance(1)
    expect(limiter.peek({ user: 'a' }).allowed).toBe(true)
  })

  it('a cost above the limit can never pass: retryAfterMs is Infinity', () => {
    for (const [, spec] of algorithms) {
      const { limiter } = single(spec)
      const d = limiter.check({ user: 'a' }, 8)
      expect(d.allowed).toBe(false)
      expect(d.retryAfterMs).toBe(Infinity)
    }
  })
})

describe('concurrency', () => {
  const policies = { policies: [{ id: 'c', key: 'user', limits: [{ id: 'inflight', algorithm: 'concurrency' as const, limit: 2, leaseTtlMs: 10_000 }] }] }

  it('holds at most the limit in flight; release frees a place; release is idempotent', () => {
    const clock = new VirtualClock(T0)
    const limiter = createLimiter({ clock, policies })
    const a = limiter.acquire({ user: 'u' })
    const b = limiter.acquire({ user: 'u' })
    const c = limiter.acquire({ user: 'u' })
    expect([a.allowed, b.allowed, c.allowed]).toEqual([true, true, false])
    expect(c.retryAfterMs).toBeGreaterThan(0)
    c.release()
    a.release()
    a.release()
    expect(limiter.acquire({ user: 'u' }).allowed).toBe(true)
    expect(limiter.acquire({ user: 'u' }).allowed).toBe(false)
  })

  it('check() ignores concurrency limits and acquire() does not leak on denial', () => {
    const clock = new VirtualClock(T0)
    const limiter = createLimiter({ clock, policies })
    for (let i = 0; i < 5; i++) expect(limiter.check({ user: 'u' }).allowed).toBe(true)
    expect(limiter.acquire({ user: 'u' }).allowed).toBe(true)
    expect(limiter.acquire({ user: 'u' }).allowed).toBe(true)
  })

  it('a lease never released stops counting after its TTL', () => {
    const clock = new VirtualClock(T0)
    const limiter = createLimiter({ clock, policies })
    limiter.acquire({ user: 'u' })
    limiter.acquire({ user: 'u' })
    expect(limiter.acquire({ user: 'u' }).allowed).toBe(false)
    clock.advance(10_000 + 1_000)
    expect(limiter.acquire({ user: 'u' }).allowed).toBe(true)
  })

  it('in flight never exceeds the limit under random acquire/release interleavings', () => {
    fc.assert(fc.property(fc.array(fc.oneof(fc.constant('acquire' as const), fc.nat({ max: 20 })), { maxLength: 200 }), ops => {
      const clock = new VirtualClock(T0)
      const limiter = createLimiter({ clock, policies })
      const held: Array<{ release: () => void }> = []
      for (const op of ops) {
        clock.advance(3)
        if (op === 'acquire') {
          const lease = limiter.acquire({ user: 'u' })
          if (lease.allowed) held.push(lease)
          expect(lease.allowed).toBe(held.length <= 2 && lease.allowed)
        } else if (held.length > 0) {
          held.splice(op % held.length, 1)[0].release()
        }
        expect(held.length).toBeLessThanOrEqual(2)
      }
    }), { numRuns: 100 })
  })
})
