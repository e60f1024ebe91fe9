import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { GCounterState } from '../../crdt/gcounter.js'
import { PNCounter, type PNCounterState } from '../../crdt/pncounter.js'

const replicaArb = fc.oneof(fc.constantFrom('a@0', 'b@0', 'c@1', '__proto__'), fc.string({ maxLength: 6 }))

type Op = { t: 'inc' | 'dec', r: string, by: number }
const opArb: fc.Arbitrary<Op> = fc.record({ t: fc.constantFrom('inc' as const, 'dec' as const), r: replicaArb, by: fc.nat(500) })

/** A counter built by increments and decrements, as its plain-object state. */
const stateArb: fc.Arbitrary<PNCounterState> = fc.array(opArb, { maxLength: 12 }).map(ops => {
  const c = new PNCounter()
  for (const op of ops) apply(c, op)
  return c.state()
})

const garbageArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.string(), fc.constant(null), fc.boolean(), fc.constant(NaN), fc.constant(Infinity),
  fc.constant(-Infinity), fc.integer({ max: -1 }), fc.double({ max: -Number.MIN_VALUE, noNaN: true }), fc.record({ v: fc.nat() })
)

const badIncrementArb = fc.oneof(
  fc.constantFrom(NaN, Infinity, -Infinity, -1, -Number.MIN_VALUE),
  fc.double({ max: -Number.MIN_VALUE, noNaN: true })
)

function apply (c: PNCounter, op: Op): void {
  if (op.t === 'inc') c.increment(op.r, op.by)
  else c.decrement(op.r, op.by)
}

function join (...states: PNCounterState[]): PNCounter {
  const c = new PNCounter()
  for (const s of states) c.merge(s)
  return c
}

function maxOf (...states: GCounterState[]): GCounterState {
  const out = new Map<string, number>()
  for (const s of states) for (const [r, v] of Object.entries(s)) if (v > 0) out.set(r, Math.max(out.get(r) ?? 0, v))
  return Object.fromEntries(out)
}

const sum = (s: GCounterState): number => Object.values(s).reduce((a, v) => a + v, 0)
/** An entry of a plain state, own properties only (a state may hold "toString"). */
const own = (s: GCounterState, r: string): number => Object.hasOwn(s, r) ? s[r] : 0

describe('PNCounter merge laws', () => {
  it('merge is the pointwise max of both halves', () => {
    fc.assert(fc.property(stateArb, stateArb, (a, b) => {
      expect(join(a, b).state()).toEqual({ p: maxOf(a.p, b.p), n: maxOf(a.n, b.n) })
    }))
  })

  it('is commutative', () => {
    fc.assert(fc.property(stateArb, stateArb, (a, b) => {
      expect(join(a, b).state()).toEqual(join(b, a).state())
    }))
  })

  it('is associative', () => {
    fc.assert(fc.property(stateArb, stateArb, stateArb, (a, b, c) => {
      expect(join(join(a, b).state(), c).state()).toEqual(join(a, join(b, c).state()).state())
    }))
  })

  it('is idempotent', () => {
    fc.assert(fc.property(stateArb, stateArb, (a, b) => {
      const c = join(a, b)
      const once = c.state()
      expect(c.merge(a)).toBe(false)
      expect(c.merge(b)).toBe(false)
      expect(c.merge(once)).toBe(false)
      expect(c.state()).toEqual(once)
    }))
  })

  it('merge returns true exactly when an entry of either half grew', () => {
    fc.assert(fc.property(stateArb, stateArb, (a, b) => {
      const c = join(a)
      const grewP = Object.entries(b.p).some(([r, v]) => v > own(a.p, r))
      const grewN = Object.entries(b.n).some(([r, v]) => v > own(a.n, r))
      expect(c.merge(b)).toBe(grewP || grewN)
    }))
  })
})

describe('PNCounter value', () => {
  it('equals total increments minus total decrements across replicas once all deltas are delivered', () => {
    const nodeOp = fc.record({ node: fc.nat(3), t: fc.constantFrom('inc' as const, 'dec' as const, 'take' as const), by: fc.nat(50) })
    fc.assert(fc.property(fc.integer({ min: 1, max: 4 }), fc.array(nodeOp, { maxLength: 50 }), fc.gen(), (n, ops, gen) => {
      const nodes = Array.from({ length: n }, () => new PNCounter())
      const deltas: PNCounterState[] = []
      let inc = 0
      let dec = 0
      for (const op of ops) {
        const k = op.node % n
        if (op.t === 'take') deltas.push(nodes[k].takeDelta())
        else {
          // Each node writes only under its own replica key, as a real replica does.
          apply(nodes[k], { t: op.t, r: `node-${k}@0`, by: op.by })
          if (op.t === 'inc') inc += op.by
          else dec += op.by
        }
      }
      for (const c of nodes) deltas.push(c.takeDelta())
      const order = gen(fc.shuffledSubarray, deltas, { minLength: deltas.length })
      const again = gen(fc.shuffledSubarray, deltas)
      for (const c of nodes) for (const d of [...order, ...again]) c.merge(d)
      for (const c of nodes) {
        expect(c.value).toBe(inc - dec)
        expect(c.state()).toEqual(join(...nodes.map(x => x.state())).state())
      }
    }), { numRuns: 150 })
  })

  it('value is P - N of the state and may go negative', () => {
    fc.assert(fc.property(stateArb, stateArb, (a, b) => {
      const c = join(a, b)
      const s = c.state()
      expect(c.value).toBe(sum(s.p) - sum(s.n))
    }))
    const c = new PNCounter()
    c.decrement('a@0', 3)
    c.increment('a@0', 1)
    expect(c.value).toBe(-2)
  })

  it('increments and decrements never lower either half', () => {
    fc.assert(fc.property(fc.array(fc.oneof(opArb.map(op => ({ op })), stateArb.map(s => ({ s }))), { maxLength: 30 }), steps => {
      const c = new PNCounter()
      let prev = c.state()
      for (const step of steps) {
        if ('op' in step) apply(c, step.op)
        else c.merge(step.s)
        const now = c.state()
        for (const [r, v] of Object.entries(prev.p)) expect(now.p[r]).toBeGreaterThanOrEqual(v)
        for (const [r, v] of Object.entries(prev.n)) expect(now.n[r]).toBeGreaterThanOrEqual(v)
        if ('op' in step) expect(c.value - (sum(prev.p) - sum(prev.n))).toBe(step.op.t === 'inc' ? step.op.by : 0 - step.op.by)
        prev = now
      }
    }))
  })
})

describe('PNCounter deltas', () => {
  it('the deltas of a counter, merged in any order with duplicates, rebuild its state', () => {
    fc.assert(fc.property(fc.array(fc.oneof(opArb.map(op => ({ op })), fc.constant({ take: true })), { maxLength: 40 }), fc.gen(), (steps, gen) => {
      const c = new PNCounter()
      const deltas: PNCounterState[] = []
      for (const step of steps) {
        if ('op' in step) apply(c, step.op)
        else deltas.push(c.takeDelta())
      }
      deltas.push(c.takeDelta())
      expect(c.takeDelta()).toEqual({ p: {}, n: {} })
      const shuffled = gen(fc.shuffledSubarray, deltas, { minLength: deltas.length })
      const replay = join(...shuffled, ...gen(fc.shuffledSubarray, deltas))
      expect(replay.state()).toEqual(c.state())
      expect(replay.value).toBe(c.value)
    }))
  })
})

describe('PNCounter input validation', () => {
  it('throws RangeError on a bad increment or decrement and changes nothing', () => {
    fc.assert(fc.property(stateArb, replicaArb, badIncrementArb, fc.boolean(), (s, r, by, isInc) => {
      const c = join(s)
      c.takeDelta()
      expect(() => isInc ? c.increment(r, by) : c.decrement(r, by)).toThrow(RangeError)
      expect(c.state()).toEqual(s)
      expect(c.takeDelta()).toEqual({ p: {}, n: {} })
    }))
  })

  it('merge ignores non-numeric and negative entries in either half', () => {
    fc.assert(fc.property(stateArb, fc.array(fc.tuple(replicaArb, garbageArb), { maxLength: 4 }), fc.array(fc.tuple(replicaArb, garbageArb), { maxLength: 4 }), (s, jp, jn) => {
      const c = join(s)
      c.takeDelta()
      const bad = { p: Object.fromEntries(jp), n: Object.fromEntries(jn) } as PNCounterState
      expect(c.merge(bad)).toBe(false)
      expect(c.state()).toEqual(s)
      expect(c.takeDelta()).toEqual({ p: {}, n: {} })
    }))
  })
})
