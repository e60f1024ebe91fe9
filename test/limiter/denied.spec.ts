import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeDelta, encodeDelta, type CounterGroup, type DeltaMessage } from '../../gossip/codec.js'
import { DENIED_SUFFIX } from '../../src/algorithms.js'
import { createLimiter, createLoopbackNetwork, VirtualClock, type Limiter } from '../../src/index.js'

const T0 = 1_800_000_000_000
const SLOT_MS = 250
const policies = { policies: [{ id: 'p', key: 'user', limits: [{ id: 'w', limit: 2, window: '1s', slots: 4 }] }] }
const DEN = `p/w${DENIED_SUFFIX}`

function sum (xs: number[] | undefined): number {
  return (xs ?? []).reduce((a, b) => a + b, 0)
}

/** Two gossiping limiters on one loopback network (each flush reaches the other at once). */
function pair (maxKeys?: number): { clock: VirtualClock, a: Limiter, b: Limiter } {
  const clock = new VirtualClock(T0)
  const net = createLoopbackNetwork()
  const a = createLimiter({ clock, policies, transport: net.connect('a'), incarnation: 1, maxKeys })
  const b = createLimiter({ clock, policies, transport: net.connect('b'), incarnation: 2, maxKeys })
  return { clock, a, b }
}

/** b's own '#den' group after it was denied on `key` (a wrote the key first, so b knows it is shared). */
function deniedGroup (key: string, tries: number): { a: Limiter, b: Limiter, clock: VirtualClock, group: CounterGroup, denied: number } {
  const { clock, a, b } = pair()
  a.check({ user: key })
  a.flush()
  let denied = 0
  for (let j = 0; j < tries; j++) if (!b.check({ user: key }).allowed) denied++
  const group = b.collectDelta().find(g => g.limit === DEN)
  if (group === undefined) throw new Error('b gossiped no denied entries')
  return { a, b, clock, group, denied }
}

function message (groups: CounterGroup[]): DeltaMessage {
  return { incarnation: 2, sentAtMs: T0, groups }
}

describe('denied units of sliding windows (the demand peers see)', () => {
  it('a key other replicas write: denials are gossiped per replica and merged, admissions untouched', () => {
    const { a, b } = pair()
    a.check({ user: 'u' })
    a.flush()
    let denied = 0
    for (let j = 0; j < 6; j++) if (!b.check({ user: 'u' }).allowed) denied++
    expect(denied).toBe(5)
    b.flush()
    // a holds b's denials in b's own column, and only there.
    const den = a.inspect(DEN, 'u', true)
    expect(sum(den?.totals)).toBe(denied)
    expect([...(den?.replicas?.keys() ?? [])]).toEqual(['b@2'])
    // Usage is admissions only: one by a, one by b.
    expect(sum(a.inspect('p/w', 'u')?.totals)).toBe(2)
    expect(a.peek({ user: 'u' }).allowed).toBe(false)
    a.close()
    b.close()
  })

  it('a key only this node writes records no denial and sends none', () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork()
    const a = createLimiter({ clock, policies, transport: net.connect('a'), incarnation: 1 })
    for (let j = 0; j < 10; j++) a.check({ user: 'solo' })
    expect(a.inspect(DEN, 'solo')).toBeUndefined()
    expect(a.collectDelta().map(g => g.limit)).toEqual(['p/w'])
    a.close()
  })

  it('the simple rule keeps them apart: no denied store without local shares', () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork()
    const a = createLimiter({ clock, policies, transport: net.connect('a'), incarnation: 1, localShares: false })
    const b = createLimiter({ clock, policies, transport: net.connect('b'), incarnation: 2, localShares: false })
    a.check({ user: 'u' })
    a.flush()
    for (let j = 0; j < 6; j++) b.check({ user: 'u' })
    expect(b.collectDelta().map(g => g.limit)).toEqual(['p/w'])
    expect(b.inspect(DEN, 'u')).toBeUndefined()
    a.close()
    b.close()
  })

  it('merges by max per replica and epoch: replays, reordering and lower re-sends change nothing', () => {
    fc.assert(fc.property(
      fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 8 }),
      counts => {
        const { a, b, group, clock } = deniedGroup('k', 3)
        const [hash, epoch] = group.entries
        // Applied in any order, the held count is the largest sent (and a replay changes nothing).
        for (const c of counts) expect(a.applyDelta('b', message([{ ...group, entries: [hash, epoch, c] }]))).toBe('accept')
        for (const c of counts) a.applyDelta('b', message([{ ...group, entries: [hash, epoch, c] }]))
        const held = a.inspect(DEN, 'k', true)?.replicas?.get('b@2') ?? []
        const max = Math.max(...counts)
        expect(held).toEqual(max > 0 ? [epoch, max] : [])
        expect(clock.now()).toBe(T0)
        a.close()
        b.close()
      }
    ), { numRuns: 30 })
  })

  it('forged groups: a wrong slot width or an unknown limit is refused, never merged', () => {
    const { a, b, group } = deniedGroup('k', 3)
    const before = a.stats().unknownLimitGroups
    a.applyDelta('b', message([{ ...group, slotMs: SLOT_MS * 2 }]))
    a.applyDelta('b', message([{ ...group, limit: 'p/w#nope' }]))
    a.applyDelta('b', message([{ ...group, limit: 'p/other#den' }]))
    expect(a.stats().unknownLimitGroups).toBe(before + 3)
    expect(a.inspect(DEN, 'k')).toBeUndefined()
    // Entries the codec cannot carry are rejected at decoding, whatever the suffix.
    for (const bad of [[group.entries[0], group.entries[1], -1], [group.entries[0], group.entries[1], 1.5], [-3, group.entries[1], 1]]) {
      let decoded: ReturnType<typeof decodeDelta> | undefined
      try {
        decoded = decodeDelta(encodeDelta(message([{ ...group, entries: bad }]))[0])
      } catch {
        decoded = undefined
      }
      if (decoded !== undefined) expect(decoded.ok).toBe(false)
    }
    a.close()
    b.close()
  })

  it('a sender only writes its own column, and its denials never count as usage', () => {
    const { a, b, group } = deniedGroup('k', 3)
    const huge = [group.entries[0], group.entries[1], 1_000_000]
    a.applyDelta('b', message([{ ...group, entries: huge }]))
    const den = a.inspect(DEN, 'k', true)
    expect([...(den?.replicas?.keys() ?? [])]).toEqual(['b@2'])
    // Admissions stay what they were: a's one.
    expect(sum(a.inspect('p/w', 'k')?.totals)).toBe(1)
    a.close()
    b.close()
  })

  it('denied records expire like counts: a sweep after the window (and the share history) has passed frees them', () => {
    const { a, b, clock, group } = deniedGroup('k', 3)
    a.applyDelta('b', message([group]))
    expect(a.inspect(DEN, 'k')).toBeDefined()
    expect(b.inspect(DEN, 'k')).toBeDefined()
    clock.advance(60_000)
    a.sweep()
    b.sweep()
    expect(a.inspect(DEN, 'k')).toBeUndefined()
    expect(b.inspect(DEN, 'k')).toBeUndefined()
    a.close()
    b.close()
  })

  it('memory stays bounded under a flood of denied entries for distinct keys', () => {
    const maxKeys = 64
    const { a, b, group } = deniedGroup('k', 3)
    const small = pair(maxKeys)
    const epoch = group.entries[1]
    for (let m = 0; m < 20; m++) {
      const entries: number[] = []
      for (let j = 0; j < 500; j++) entries.push(1 + m * 500 + j, epoch, 7)
      expect(small.a.applyDelta('b', message([{ ...group, entries }]))).toBe('accept')
    }
    const st = small.a.stats().limits.find(l => l.name === 'p/w')
    expect(st?.keys).toBeLessThanOrEqual(maxKeys)
    expect(st?.evictions).toBeGreaterThan(0)
    for (const l of [a, b, small.a, small.b]) l.close()
  })

  it('peers\' denied demand engages shares: the rule cuts a node whose peers are denied, not otherwise', () => {
    const pol = { policies: [{ id: 'p', key: 'user', limits: [{ id: 'w', limit: 100, window: '1s', slots: 10 }] }] }
    const run = (withDenied: boolean): number => {
      const clock = new VirtualClock(T0)
      const net = createLoopbackNetwork()
      const init = { clock, policies: pol, flushIntervalMs: 3_600_000, shareHorizonMs: 100 }
      const a = createLimiter({ ...init, transport: net.connect('a'), incarnation: 1 })
      const b = createLimiter({ ...init, transport: net.connect('b'), incarnation: 2 })
      // b admitted 50 in one slot; it also says it was denied 1000 units there.
      for (let j = 0; j < 50; j++) b.check({ user: 'hot' })
      const own = b.collectDelta()
      a.applyDelta('b', message(own))
      const [hash, epoch] = own[0].entries
      if (withDenied) a.applyDelta('b', message([{ limit: DEN, slotMs: 100, entries: [hash, epoch, 1000] }]))
      // Once that slot has settled, a asks 20: the key has room for 50 more.
      clock.advance(300)
      let admitted = 0
      for (let j = 0; j < 20; j++) if (a.check({ user: 'hot' }).allowed) admitted++
      a.close()
      b.close()
      return admitted
    }
    // Demand 50 per window fits the limit: the rule stands aside.
    expect(run(false)).toBe(20)
    // Demand 1050 per window: a, which asked nothing in the settled slots, gets about
    // 100 x 1 / 1167 of a request (a coin), not the 50 the simple rule would allow.
    expect(run(true)).toBeLessThanOrEqual(1)
  })
})
