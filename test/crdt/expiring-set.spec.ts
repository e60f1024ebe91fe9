import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ExpiringSet, SetMerge, compareEntries, type SetEntry } from '../../crdt/expiring-set.js'

const entry = fc.record({
  key: fc.constantFrom('a', 'b', 'c'),
  ts: fc.integer({ min: 0, max: 20 }),
  replica: fc.constantFrom('r1', 'r2', 'r3'),
  present: fc.boolean(),
  expiresAt: fc.integer({ min: 0, max: 40 }),
  reason: fc.constantFrom('', 'x', 'y')
})

const build = (es: SetEntry[]): ExpiringSet => {
  const s = new ExpiringSet()
  for (const e of es) s.merge(e)
  return s
}
const state = (s: ExpiringSet): SetEntry[] => [...s.entries()].sort((a, b) => (a.key < b.key ? -1 : 1))
/** Merge of two states: every entry of b into a copy of a. */
const union = (a: ExpiringSet, b: ExpiringSet): ExpiringSet => build([...a.entries(), ...b.entries()])

describe('ExpiringSet merge laws', () => {
  it('compareEntries is a total order (antisymmetric, transitive, 0 only for equal entries)', () => {
    fc.assert(fc.property(entry, entry, entry, (a, b, c) => {
      // "|| 0" folds -0 into 0: equal entries compare 0 both ways, and -0 is not 0 to toBe.
      expect(Math.sign(compareEntries(a, b)) || 0).toBe(-Math.sign(compareEntries(b, a)) || 0)
      if (compareEntries(a, b) === 0) expect(a).toEqual(b)
      if (compareEntries(a, b) <= 0 && compareEntries(b, c) <= 0) expect(compareEntries(a, c)).toBeLessThanOrEqual(0)
    }))
  })

  it('merge is commutative, associative and idempotent', () => {
    const set = fc.array(entry, { maxLength: 12 }).map(build)
    fc.assert(fc.property(set, set, set, (a, b, c) => {
      expect(state(union(a, b))).toEqual(state(union(b, a)))
      expect(state(union(union(a, b), c))).toEqual(state(union(a, union(b, c))))
      expect(state(union(a, a))).toEqual(state(a))
    }))
  })

  it('delivery order and duplicates do not matter', () => {
    fc.assert(fc.property(fc.array(entry, { maxLength: 20 }), fc.func(fc.integer()), (es, f) => {
      const shuffled = [...es, ...es].sort((x, y) => f(x) - f(y))
      expect(state(build(shuffled))).toEqual(state(build(es)))
    }))
  })

  it('a block/unblock race converges to the later write, and an exact tie to the unblock', () => {
    const block: SetEntry = { key: 'k', ts: 10, replica: 'r2', present: true, expiresAt: 100, reason: 'manual' }
    const unblock: SetEntry = { key: 'k', ts: 11, replica: 'r1', present: false, expiresAt: 100, reason: '' }
    expect(build([block, unblock]).has('k', 50)).toBe(false)
    expect(build([unblock, block]).has('k', 50)).toBe(false)
    const tie = { ...unblock, ts: 10, replica: 'r2' }
    expect(build([block, tie]).has('k', 50)).toBe(false)
    expect(build([tie, block]).has('k', 50)).toBe(false)
  })

  it('entries count only before they expire, and sweeping expired entries changes no answer', () => {
    fc.assert(fc.property(fc.array(entry, { maxLength: 20 }), fc.integer({ min: 0, max: 45 }), (es, now) => {
      const s = build(es)
      const before = ['a', 'b', 'c'].map(k => s.has(k, now))
      s.sweep(now)
      expect(['a', 'b', 'c'].map(k => s.has(k, now))).toEqual(before)
      for (const e of s.entries()) expect(e.expiresAt).toBeGreaterThan(now)
    }))
  })

  it('a full set refuses new keys but still updates known ones', () => {
    const s = new ExpiringSet(1)
    expect(s.merge({ key: 'a', ts: 1, replica: 'r', present: true, expiresAt: 9, reason: '' })).toBe(SetMerge.Applied)
    expect(s.merge({ key: 'b', ts: 1, replica: 'r', present: true, expiresAt: 9, reason: '' })).toBe(SetMerge.Full)
    expect(s.merge({ key: 'a', ts: 2, replica: 'r', present: false, expiresAt: 9, reason: '' })).toBe(SetMerge.Applied)
    expect(s.size).toBe(1)
  })
})
