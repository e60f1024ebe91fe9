import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MergeResult, WindowStore } from '../../crdt/window-store.js'

/** Everything a store exposes about its keys: per key, head, sum, writers and every (replica, epoch, count). */
function state (s: WindowStore): unknown[] {
  const out: unknown[] = []
  s.forEachKey(i => {
    const entries: number[] = []
    s.forEachEntry(i, (rep, epoch, count) => { entries.push(rep, epoch, count) })
    out.push([s.hashOf(i), s.headOf(i), s.sumOf(i), s.aheadOf(i), s.writersOf(i), s.newestEpoch(i), entries])
  })
  return out
}

const entry = fc.tuple(fc.integer({ min: 1, max: 40 }), fc.integer({ min: -6, max: 3 }), fc.integer({ min: 1, max: 50 }))

describe('WindowStore.warm', () => {
  it('reads only: the store is the same after warming any entries, and merging them afterwards gives the same results as without', () => {
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.integer({ min: 1, max: 9 }), entry), { maxLength: 120 }),
      fc.integer({ min: 0, max: 9 }),
      fc.array(entry, { maxLength: 30 }),
      (history, rep, batch) => {
        const make = (): WindowStore => {
          const s = new WindowStore({ slotMs: 100, pastSlots: 10, futureSlots: 2, maxKeys: 32, initialCapacity: 16 })
          for (const [r, [h, de, count]] of history) s.mergeHash(h, r, 1000 + de, count, 1000)
          return s
        }
        const warmed = make()
        const plain = make()
        const flat = batch.flatMap(([h, de, count]) => [h, 1000 + de, count])
        const before = state(warmed)
        warmed.warm(flat, rep)
        expect(state(warmed)).toEqual(before)
        const a: MergeResult[] = []
        const b: MergeResult[] = []
        for (let j = 0; j < flat.length; j += 3) {
          a.push(warmed.mergeHash(flat[j], rep, flat[j + 1], flat[j + 2], 1001))
          b.push(plain.mergeHash(flat[j], rep, flat[j + 1], flat[j + 2], 1001))
        }
        expect(a).toEqual(b)
        expect(state(warmed)).toEqual(state(plain))
      }
    ), { numRuns: 300 })
  })
})
