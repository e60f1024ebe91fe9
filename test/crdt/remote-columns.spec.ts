import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { RemoteColumns } from '../../crdt/remote-columns.js'

/**
 * What one live block must hold: its replicas in column order and every count. A full
 * block may give back the columns of replicas without counts, so `reps` follows the
 * block's order after each added column (checked: every replica with a count keeps its
 * column and counts, and the live ones keep their order).
 */
interface BlockModel {
  b: number
  headPos: number
  reps: number[]
  /** Replicas given a column since the block was created. */
  added: number
  /** `${pos}|${rep}` -> count (> 0). */
  counts: Map<string, number>
  ahead: number
}

type Op =
  | { t: 'create', hint: number, headPos: number }
  | { t: 'write', blk: number, rep: number, pos: number, count: number }
  | { t: 'expire', blk: number, pos: number }
  | { t: 'ahead', blk: number, v: number }
  | { t: 'release', blk: number }
  | { t: 'compact' }

function opArb (ring: number, pool: number): fc.Arbitrary<Op> {
  const blk = fc.nat(7)
  const pos = fc.nat(ring - 1)
  // Replicas from a pool (small ones keep blocks narrow, so released blocks get reused)
  // and from the whole u32 range (index collisions).
  const repArb = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: pool }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 0xffffffff }) })
  return fc.oneof(
    { weight: 2, arbitrary: fc.record({ t: fc.constant('create' as const), hint: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: pool }), fc.integer({ min: 1, max: 70 })), headPos: pos }) },
    { weight: 12, arbitrary: fc.record({ t: fc.constant('write' as const), blk, rep: repArb, pos, count: fc.integer({ min: 1, max: 2 ** 40 }) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('expire' as const), blk, pos }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('ahead' as const), blk, v: fc.integer({ min: 1, max: 9 }) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('release' as const), blk }) },
    { weight: 1, arbitrary: fc.constant({ t: 'compact' as const }) }
  )
}

/** Checks every live block against its model: columns, index, replicas, counts, totals. */
function check (rc: RemoteColumns, live: BlockModel[], absent: number[]): void {
  expect(rc.size).toBe(live.length)
  for (const m of live) {
    expect(rc.inUse(m.b)).toBe(m.reps.length)
    expect(rc.columns(m.b)).toBe(m.added)
    expect(rc.headPos(m.b)).toBe(m.headPos)
    expect(rc.ahead(m.b)).toBe(m.ahead)
    m.reps.forEach((rep, c) => {
      // The index finds every replica's own column, and that column names the replica.
      expect(rc.find(m.b, rep)).toBe(c)
      expect(rc.repAt(m.b, c)).toBe(rep)
    })
    for (const rep of absent) if (!m.reps.includes(rep)) expect(rc.find(m.b, rep)).toBe(-1)
    let livePositions = 0
    for (let p = 0; p < rc.ring; p++) {
      let total = 0
      const row = rc.row(m.b, p)
      m.reps.forEach((rep, c) => {
        const want = m.counts.get(`${p}|${rep}`) ?? 0
        expect(rc.f64[row + c]).toBe(want)
        total += want
      })
      expect(rc.tot(m.b, p)).toBe(total)
      if (total > 0) livePositions++
    }
    expect(rc.empty(m.b)).toBe(livePositions === 0)
  }
}

describe('RemoteColumns against a model', () => {
  // Rings of up to 32 positions track their non-empty positions in a header mask; longer ones read each row.
  it('every block keeps its columns, index and counts through growth, expiry, release and reuse of blocks, and compaction', () => {
    fc.assert(fc.property(
      fc.tuple(fc.oneof(fc.integer({ min: 1, max: 12 }), fc.constantFrom(31, 32, 33, 40)), fc.constantFrom(1, 2, 5, 90)).chain(([ring, pool]) => fc.tuple(fc.constant(ring), fc.array(opArb(ring, pool), { maxLength: 250 }))),
      ([ring, ops]) => {
        const rc = new RemoteColumns(ring)
        const live: BlockModel[] = []
        const seen = new Set<number>()
        for (const op of ops) {
          const m = 'blk' in op ? live[op.blk % Math.max(1, live.length)] : undefined
          switch (op.t) {
            case 'create': {
              const b = rc.create(op.headPos, op.hint)
              // A new block, even one reusing released space, starts empty and overlaps no live block.
              expect(rc.inUse(b)).toBe(0)
              expect(rc.columns(b)).toBe(0)
              expect(rc.empty(b)).toBe(true)
              for (const other of live) expect(other.b).not.toBe(b)
              live.push({ b, headPos: op.headPos, reps: [], added: 0, counts: new Map(), ahead: 0 })
              break
            }
            case 'write': {
              if (m === undefined) break
              seen.add(op.rep)
              let c = rc.find(m.b, op.rep)
              if (c < 0) {
                const had = m.reps.length
                m.b = rc.addColumn(m.b, op.rep)
                m.added++
                c = rc.inUse(m.b) - 1
                expect(rc.repAt(m.b, c)).toBe(op.rep)
                // Columns given back are exactly some of those without counts; the others keep their order.
                const holds = (rep: number): boolean => [...m.counts.keys()].some(k => k.endsWith(`|${rep}`))
                const kept = Array.from({ length: c }, (_, j) => rc.repAt(m.b, j))
                expect(kept.filter(r => !m.reps.includes(r))).toEqual([])
                expect(m.reps.filter(r => holds(r) || kept.includes(r))).toEqual(kept)
                if (kept.length < had) expect(had - kept.length).toBeGreaterThanOrEqual(Math.max(1, had >> 2))
                m.reps = [...kept, op.rep]
              }
              const key = `${op.pos}|${op.rep}`
              const before = m.counts.get(key) ?? 0
              const delta = rc.raise(m.b, op.pos, c, op.count)
              expect(delta).toBe(op.count - before)
              if (op.count > before) m.counts.set(key, op.count)
              break
            }
            case 'expire': {
              if (m === undefined) break
              let total = 0
              for (const rep of m.reps) {
                total += m.counts.get(`${op.pos}|${rep}`) ?? 0
                m.counts.delete(`${op.pos}|${rep}`)
              }
              expect(rc.expire(m.b, op.pos)).toBe(total)
              break
            }
            case 'ahead':
              if (m === undefined) break
              rc.addAhead(m.b, op.v)
              m.ahead += op.v
              break
            case 'release':
              if (m === undefined) break
              rc.release(m.b)
              live.splice(live.indexOf(m), 1)
              break
            case 'compact': {
              let visited = 0
              rc.compact(visit => {
                for (const x of live) {
                  x.b = visit(x.b)
                  visited++
                }
              })
              expect(visited).toBe(live.length)
              break
            }
          }
          check(rc, live, [...seen])
        }
      }
    ), { numRuns: 200 })
  })

  it('finds the right column among thousands of replicas whose hashes collide in the index', () => {
    const rc = new RemoteColumns(3)
    let b = rc.create(0)
    // Multiples of 2^20 share their low bits; the multiplicative hash must still spread them.
    const reps = Array.from({ length: 3000 }, (_, j) => (j + 1) * 2 ** 20 % 0xffffffff)
    reps.forEach((rep, c) => {
      expect(rc.find(b, rep)).toBe(-1)
      b = rc.addColumn(b, rep)
      expect(rc.raise(b, c % 3, rc.inUse(b) - 1, c + 1)).toBe(c + 1)
    })
    reps.forEach((rep, c) => {
      expect(rc.find(b, rep)).toBe(c)
      expect(rc.f64[rc.row(b, c % 3) + c]).toBe(c + 1)
    })
    expect(rc.tot(b, 0) + rc.tot(b, 1) + rc.tot(b, 2)).toBe(3000 * 3001 / 2)
  })

  it('a busy key written by ever new replicas reuses the columns of those whose counts expired instead of growing', () => {
    const rc = new RemoteColumns(4)
    let b = rc.create(0)
    // Each slot, four new replicas write position p; the slot then expires.
    for (let round = 0; round < 50; round++) {
      const p = round % 4
      rc.expire(b, p)
      for (let j = 0; j < 4; j++) {
        const rep = round * 4 + j + 1
        b = rc.addColumn(b, rep)
        rc.raise(b, p, rc.inUse(b) - 1, 1)
      }
    }
    // At most four positions of four writers hold counts: the block never needs more than 16 columns.
    expect(rc.inUse(b)).toBeLessThanOrEqual(16)
    expect(rc.columns(b)).toBe(200)
    for (let rep = 185; rep <= 200; rep++) expect(rc.find(b, rep)).toBeGreaterThanOrEqual(0)
    expect(rc.find(b, 1)).toBe(-1)
    expect(rc.bytes).toBeLessThan(8 * 4096 + 1)
  })

  it('rejects a ring of size 0', () => {
    expect(() => new RemoteColumns(0)).toThrow(RangeError)
  })
})
