import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GCounter, type GCounterState } from '../../crdt/gcounter.js'

/** Replica keys: a small pool (so states overlap) plus arbitrary strings. */
const replicaArb = fc.oneof(
  fc.constantFrom('a@0', 'b@0', 'c@1', 'd@7', '__proto__', 'constructor', 'toString'),
  fc.string({ maxLength: 8 })
)

/** A counter built by increments, as its plain-object state. */
const stateArb: fc.Arbitrary<GCounterState> = fc.array(fc.tuple(replicaArb, fc.nat(1000)), { maxLength: 12 })
  .map(ops => {
    const c = new GCounter()
    for (const [r, by] of ops) c.increment(r, by)
    return c.state()
  })

/** Values merge must skip: not a number, negative, NaN or infinite. */
const garbageArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.string(),
  fc.constant(null),
  fc.constant(undefined),
  fc.boolean(),
  fc.bigInt(),
  fc.constant(NaN),
  fc.constant(Infinity),
  fc.constant(-Infinity),
  fc.double({ max: -Number.MIN_VALUE, noNaN: true }),
  fc.integer({ max: -1 }),
  fc.array(fc.nat(), { maxLength: 2 }),
  fc.record({ v: fc.nat() })
)

const badIncrementArb = fc.oneof(
  fc.constantFrom(NaN, Infinity, -Infinity, -1, -Number.MIN_VALUE),
  fc.double({ max: -Number.MIN_VALUE, noNaN: true }),
  fc.integer({ min: -1e9, max: -1 })
)

/** An entry of a plain state, own properties only (a state may hold "toString"). */
const own = (s: GCounterState, r: string): number => Object.hasOwn(s, r) ? s[r] : 0

function join (...states: GCounterState[]): GCounter {
  const c = new GCounter()
  for (const s of states) c.merge(s)
  return c
}

/** Reference join: pointwise max over the valid (positive finite) entries. */
function pointwiseMax (...states: GCounterState[]): GCounterState {
  const out = new Map<string, number>()
  for (const s of states) {
    for (const [r, v] of Object.entries(s)) {
      if (typeof v === 'number' && v > 0 && Number.isFinite(v)) out.set(r, Math.max(out.get(r) ?? 0, v))
    }
  }
  return Object.fromEntries(out)
}

describe('GCounter merge laws', () => {
  it('merge is the pointwise max', () => {
    fc.assert(fc.property(stateArb, stateArb, (a, b) => {
      expect(join(a, b).state()).toEqual(pointwiseMax(a, b))
    }))
  })

  it('is commutative', () => {
    fc.assert(fc.property(stateArb, stateArb, (a, b) => {
      expect(join(a, b).state()).toEqual(join(b, a).state())
    }))
  })

  it('is associative', () => {
    fc.assert(fc.property(stateArb, stateArb, stateArb, (a, b, c) => {
      const left = join(join(a, b).state(), c).state()
      const right = join(a, join(b, c).state()).state()
      expect(left).toEqual(right)
    }))
  })

  it('is idempotent', () => {
    fc.assert(fc.property(stateArb, stateArb, (a, b) => {
      const c = join(a)
      expect(c.merge(a)).toBe(false)
      expect(c.state()).toEqual(pointwiseMax(a))
      c.merge(b)
      const once = c.state()
      expect(c.merge(b)).toBe(false)
      expect(c.merge(once)).toBe(false)
      expect(c.state()).toEqual(once)
    }))
  })

  it('merge returns true exactly when some entry grew', () => {
    fc.assert(fc.property(stateArb, stateArb, (a, b) => {
      const c = join(a)
      const grew = Object.entries(b).some(([r, v]) => v > c.get(r))
      expect(c.merge(b)).toBe(grew)
    }))
  })
})

describe('GCounter deltas', () => {
  interface Msg { from: number, delta: GCounterState }

  it('deltas delivered in any order, duplicated or re-delivered converge to the full-state join', () => {
    const opArb = fc.oneof(
      fc.record({ t: fc.constant('inc' as const), node: fc.nat(3), by: fc.integer({ min: 0, max: 20 }) }),
      fc.record({ t: fc.constant('take' as const), node: fc.nat(3) }),
      fc.record({ t: fc.constant('deliver' as const), pick: fc.nat(), keep: fc.boolean() })
    )
    fc.assert(fc.property(fc.integer({ min: 2, max: 4 }), fc.array(opArb, { maxLength: 60 }), fc.gen(), (n, ops, gen) => {
      const nodes = Array.from({ length: n }, () => new GCounter())
      const name = (k: number): string => `node-${k}@1`
      const expected = new Map<string, number>()
      const sent: Msg[] = []
      let inflight: Array<{ to: number, msg: Msg }> = []
      const broadcast = (from: number): void => {
        const msg = { from, delta: nodes[from].takeDelta() }
        sent.push(msg)
        for (let to = 0; to < n; to++) if (to !== from) inflight.push({ to, msg })
      }
      for (const op of ops) {
        if (op.t === 'inc') {
          const k = op.node % n
          nodes[k].increment(name(k), op.by)
          if (op.by > 0) expected.set(name(k), (expected.get(name(k)) ?? 0) + op.by)
        } else if (op.t === 'take') {
          broadcast(op.node % n)
        } else if (inflight.length > 0) {
          const at = op.pick % inflight.length
          const { to, msg } = inflight[at]
          nodes[to].merge(msg.delta)
          if (!op.keep) inflight.splice(at, 1)
        }
      }
      for (let k = 0; k < n; k++) broadcast(k)
      // Everything still in flight, in any order; then old messages arrive again.
      inflight = gen(fc.shuffledSubarray, inflight, { minLength: inflight.length })
      for (const { to, msg } of inflight) nodes[to].merge(msg.delta)
      for (const msg of gen(fc.shuffledSubarray, sent)) {
        for (let to = 0; to < n; to++) nodes[to].merge(msg.delta)
      }
      const full = join(...nodes.map(c => c.state()))
      const want = Object.fromEntries(expected)
      expect(full.state()).toEqual(want)
      for (const c of nodes) {
        expect(c.state()).toEqual(want)
        expect(c.value).toBe([...expected.values()].reduce((s, v) => s + v, 0))
      }
    }), { numRuns: 150 })
  })

  it('takeDelta returns the changed entries as absolute values, then nothing', () => {
    fc.assert(fc.property(stateArb, fc.array(fc.tuple(replicaArb, fc.integer({ min: 1, max: 50 })), { minLength: 1, maxLength: 6 }), (base, incs) => {
      const c = join(base)
      c.takeDelta()
      expect(c.takeDelta()).toEqual({})
      for (const [r, by] of incs) c.increment(r, by)
      const delta = c.takeDelta()
      const touched = new Set(incs.map(([r]) => r))
      expect(Object.keys(delta).sort()).toEqual([...touched].sort())
      for (const r of touched) expect(delta[r]).toBe(c.get(r))
      expect(c.takeDelta()).toEqual({})
    }))
  })

  it('merged entries that grew are part of the next delta', () => {
    fc.assert(fc.property(stateArb, stateArb, (a, b) => {
      const c = join(a)
      c.takeDelta()
      c.merge(b)
      const grown = Object.keys(b).filter(r => b[r] > own(a, r))
      expect(Object.keys(c.takeDelta()).sort()).toEqual(grown.sort())
    }))
  })

  it('keeps a replica named like an Object.prototype member in deltas', () => {
    const c = new GCounter()
    c.increment('__proto__', 3)
    c.increment('constructor', 2)
    const delta = c.takeDelta()
    expect(Object.keys(delta).sort()).toEqual(['__proto__', 'constructor'])
    expect(join(delta).state()).toEqual(c.state())
  })
})

describe('GCounter monotonicity', () => {
  it('value and every entry never decrease under increments and merges', () => {
    const opArb = fc.oneof(
      fc.record({ t: fc.constant('inc' as const), r: replicaArb, by: fc.nat(100) }),
      fc.record({ t: fc.constant('merge' as const), s: stateArb }),
      fc.record({ t: fc.constant('garbage' as const), r: replicaArb, v: garbageArb })
    )
    fc.assert(fc.property(fc.array(opArb, { maxLength: 40 }), ops => {
      const c = new GCounter()
      let value = 0
      let before = c.state()
      for (const op of ops) {
        if (op.t === 'inc') c.increment(op.r, op.by)
        else if (op.t === 'merge') c.merge(op.s)
        else c.merge(Object.fromEntries([[op.r, op.v]]) as GCounterState)
        expect(c.value).toBeGreaterThanOrEqual(value)
        for (const [r, v] of Object.entries(before)) expect(c.get(r)).toBeGreaterThanOrEqual(v)
        if (op.t === 'inc') expect(c.value).toBe(value + op.by)
        value = c.value
        before = c.state()
      }
    }))
  })

  it('value is the sum of the entries', () => {
    fc.assert(fc.property(stateArb, stateArb, (a, b) => {
      const c = join(a, b)
      expect(c.value).toBe(Object.values(c.state()).reduce((s, v) => s + v, 0))
    }))
  })
})

describe('GCounter input validation', () => {
  it('throws RangeError on a negative, NaN or infinite increment and changes nothing', () => {
    fc.assert(fc.property(stateArb, replicaArb, badIncrementArb, (s, r, by) => {
      const c = join(s)
      c.takeDelta()
      expect(() => c.increment(r, by)).toThrow(RangeError)
      expect(c.state()).toEqual(s)
      expect(c.takeDelta()).toEqual({})
    }))
  })

  it('a zero increment creates no entry and no delta', () => {
    const c = new GCounter()
    c.increment('a@0', 0)
    expect(c.state()).toEqual({})
    expect(c.takeDelta()).toEqual({})
  })

  it('merge ignores non-numeric, negative, NaN and infinite entries', () => {
    fc.assert(fc.property(stateArb, fc.array(fc.tuple(replicaArb, garbageArb), { maxLength: 6 }), (s, junk) => {
      const c = join(s)
      c.takeDelta()
      const bad = Object.fromEntries(junk) as GCounterState
      expect(c.merge(bad)).toBe(false)
      expect(c.state()).toEqual(s)
      expect(c.takeDelta()).toEqual({})
    }))
  })

  it('merge applies the valid entries of a partly malformed state', () => {
    fc.assert(fc.property(stateArb, stateArb, fc.array(fc.tuple(replicaArb, garbageArb), { minLength: 1, maxLength: 4 }), (s, good, junk) => {
      const mixed = Object.fromEntries([...Object.entries(good), ...junk]) as GCounterState
      const c = join(s)
      c.merge(mixed)
      // pointwiseMax skips the junk values, so this is the join of s and the valid part.
      expect(c.state()).toEqual(pointwiseMax(s, mixed))
    }))
  })
})
