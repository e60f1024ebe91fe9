import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ReplicaTable, replicaKey } from '../../crdt/replica.js'
import { MergeResult, WindowStore } from '../../crdt/window-store.js'
import { WindowModel, tripleSet, type KeyModel } from './window-model.js'

// --- model-based command sequences ------------------------------------------------

interface Config {
  pastSlots: number
  futureSlots: number
  maxKeys: number
  /** Drain of the carried level per slot; undefined: no carry (and no aux cache). */
  carryPerSlot: number | undefined
  /** First epoch of the virtual clock (0 and below: clocks that start at 0). */
  base: number
  poolSize: number
  /** Largest replica index merged (0 is the local replica). @default 3 */
  maxRep?: number
}

type Op =
  | { t: 'add', k: number, de: number, cost: number }
  | { t: 'addAt', k: number, back: number, cost: number }
  | { t: 'merge', k: number, rep: number, de: number, count: number }
  | { t: 'mergeHash', k: number, rep: number, de: number, count: number }
  | { t: 'advance', k: number, steps: number }
  | { t: 'tick', n: number }
  | { t: 'drain' }
  | { t: 'sweep', budget: number }
  /** Delivers the last mergeHash again (a duplicated message). */
  | { t: 'again' }

const configArb: fc.Arbitrary<Config> = fc.record({
  pastSlots: fc.oneof({ arbitrary: fc.integer({ min: 1, max: 5 }), weight: 8 }, { arbitrary: fc.constantFrom(40, 250), weight: 1 }),
  futureSlots: fc.integer({ min: 0, max: 3 }),
  maxKeys: fc.oneof(fc.integer({ min: 1, max: 6 }), fc.constant(64)),
  // Dyadic drains keep the carried level exact in floating point.
  carryPerSlot: fc.option(fc.constantFrom(0, 0.5, 1, 4), { nil: undefined }),
  base: fc.constantFrom(-4, 0, 1, 1_700_000_000, 2 ** 40),
  // Few keys make long histories per key; more keys exercise eviction and the index.
  poolSize: fc.oneof(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 8 }))
}).map(c => ({ ...c, futureSlots: Math.min(c.futureSlots, 255 - c.pastSlots) }))

function opArb (c: Config): fc.Arbitrary<Op> {
  const P = c.pastSlots
  const F = c.futureSlots
  const k = fc.nat(c.poolSize - 1)
  const rep = fc.integer({ min: 0, max: c.maxRep ?? 3 })
  const count = fc.integer({ min: 1, max: 8 })
  // Merge epochs relative to now, from stale to too far ahead.
  const de = fc.integer({ min: -(P + 2), max: F + 2 })
  return fc.oneof(
    { weight: 4, arbitrary: fc.record({ t: fc.constant('add' as const), k, de: fc.integer({ min: -2, max: 1 }), cost: fc.integer({ min: 1, max: 9 }) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('addAt' as const), k, back: fc.integer({ min: -2, max: P + 1 }), cost: fc.integer({ min: 1, max: 9 }) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('merge' as const), k, rep, de, count }) },
    { weight: 5, arbitrary: fc.record({ t: fc.constant('mergeHash' as const), k, rep, de, count }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('advance' as const), k, steps: fc.oneof(fc.integer({ min: 0, max: F + 1 }), fc.integer({ min: 0, max: P + F + 2 }), fc.constant(1000)) }) },
    { weight: 4, arbitrary: fc.record({ t: fc.constant('tick' as const), n: fc.oneof(fc.integer({ min: -1, max: 2 }), fc.constant(P + F)) }) },
    { weight: 2, arbitrary: fc.constant({ t: 'drain' as const }) },
    { weight: 2, arbitrary: fc.constant({ t: 'again' as const }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('sweep' as const), budget: fc.integer({ min: 1, max: 80 }) }) }
  )
}

const scenarioArb = configArb.chain(c => fc.tuple(fc.constant(c), fc.array(opArb(c), { maxLength: 60 })))

/** Runs ops against a store and the model, checking every observable after each. */
function runScenario (c: Config, ops: Op[]): void {
  const P = c.pastSlots
  const F = c.futureSlots
  const store = new WindowStore({ slotMs: 1000, pastSlots: P, futureSlots: F, maxKeys: c.maxKeys, carryPerSlot: c.carryPerSlot, initialCapacity: 16 })
  const model = new WindowModel(P, F, c.carryPerSlot)
  const names = Array.from({ length: c.poolSize }, (_, j) => `tenant:${j}`)
  const hashes = names.map(n => store.hashKey(n))
  let now = c.base
  /** The last mergeHash entry the store held, while its key lives. */
  let last: { k: KeyModel, rep: number, epoch: number, count: number } | undefined

  /** Before an op that may create key `hash`: mirrors makeRoom; true when an eviction must follow. */
  const beforeCreate = (hash: number, epoch: number): boolean => {
    if (model.keys.has(hash) || model.keys.size < c.maxKeys) return false
    // makeRoom first sweeps up to 32 records: every one here (at most poolSize <= 8).
    return model.sweepAll(epoch).length === 0
  }
  const afterCreate = (hash: number, mustEvict: boolean): void => {
    if (!mustEvict) return
    const gone = [...model.keys.values()].filter(k => k.hash !== hash && store.findHash(k.hash) === -1)
    expect(gone).toHaveLength(1)
    model.evict(gone[0].hash)
  }
  const live = (j: number): [KeyModel, number] | undefined => {
    const k = model.keys.get(hashes[j])
    return k === undefined ? undefined : [k, store.findHash(k.hash)]
  }

  for (const op of ops) {
    switch (op.t) {
      case 'add': {
        const epoch = now + op.de
        const evict = beforeCreate(hashes[op.k], epoch)
        const i = store.acquire(names[op.k], epoch)
        afterCreate(hashes[op.k], evict)
        const k = model.keys.get(hashes[op.k]) ?? model.create(hashes[op.k], epoch)
        k.name = names[op.k]
        store.add(i, epoch, op.cost)
        model.add(k, epoch, op.cost)
        break
      }
      case 'addAt': {
        const l = live(op.k)
        if (l === undefined) break
        const epoch = l[0].head - op.back
        expect(store.addAt(l[1], epoch, op.cost)).toBe(model.addAt(l[0], epoch, op.cost))
        break
      }
      case 'merge': {
        const evict = beforeCreate(hashes[op.k], now)
        const i = store.acquire(names[op.k], now)
        afterCreate(hashes[op.k], evict)
        const k = model.keys.get(hashes[op.k]) ?? model.create(hashes[op.k], now)
        k.name = names[op.k]
        expect(store.merge(i, op.rep, now + op.de, op.count, now)).toBe(model.merge(k, op.rep, now + op.de, op.count, now))
        break
      }
      case 'mergeHash': {
        const h = hashes[op.k]
        const epoch = now + op.de
        const early = model.mergeHashPrecheck(epoch, now)
        const evict = early === undefined && beforeCreate(h, now)
        const r = store.mergeHash(h, op.rep, epoch, op.count, now)
        afterCreate(h, evict)
        if (early !== undefined) expect(r).toBe(early)
        else expect(r).toBe(model.merge(model.keys.get(h) ?? model.create(h, now), op.rep, epoch, op.count, now))
        const held = model.keys.get(h)
        // Only an entry the store now holds (an own echo ahead of the head is not held).
        if (held !== undefined && model.get(held, op.rep, epoch) >= op.count) last = { k: held, rep: op.rep, epoch, count: op.count }
        break
      }
      case 'again': {
        if (last === undefined || model.keys.get(last.k.hash) !== last.k) break
        const r = store.mergeHash(last.k.hash, last.rep, last.epoch, last.count, now)
        expect(r).toBe(model.mergeHashPrecheck(last.epoch, now) ?? model.merge(last.k, last.rep, last.epoch, last.count, now))
        expect(r).not.toBe(MergeResult.Applied)
        break
      }
      case 'advance': {
        const l = live(op.k)
        if (l === undefined) break
        store.advance(l[1], l[0].head + op.steps)
        model.advance(l[0], l[0].head + op.steps)
        break
      }
      case 'tick':
        now += op.n
        break
      case 'drain': {
        if (model.pending.length > 0 || [...model.keys.values()].some(k => k.dirtyFrom === k.dirtyFrom)) {
          expect(store.dirtyCount).toBeGreaterThan(0)
        }
        const out: number[] = []
        store.drainDirty(out)
        expect(tripleSet(out)).toEqual(tripleSet(model.drain()))
        expect(store.dirtyCount).toBe(0)
        const again: number[] = []
        store.drainDirty(again)
        expect(again).toEqual([])
        break
      }
      case 'sweep': {
        if (op.budget >= Math.min(c.maxKeys, c.poolSize)) {
          // The store never has more records than that, so this examines every key.
          const freed = model.sweepAll(now)
          expect(store.sweep(now, op.budget)).toBe(freed.length)
          break
        }
        const before = new Map([...model.keys.values()].map(k => [k.hash, model.sweepable(k, now)]))
        const n = store.sweep(now, op.budget)
        let gone = 0
        for (const k of [...model.keys.values()]) {
          const i = store.findHash(k.hash)
          if (i === -1) {
            expect(before.get(k.hash)).toBe(true)
            model.keys.delete(k.hash)
            model.expired++
            gone++
            continue
          }
          // An examined clean key is aligned to now; a dirty key is never touched.
          const h = store.headOf(i)
          expect(k.dirtyFrom === k.dirtyFrom ? [k.head] : [k.head, Math.max(k.head, now)]).toContain(h)
          model.advance(k, h)
        }
        expect(n).toBe(gone)
        break
      }
    }
    checkAgainstModel(store, model, names, hashes, c.maxKeys)
  }
}

function checkAgainstModel (store: WindowStore, model: WindowModel, names: string[], hashes: number[], maxKeys: number): void {
  const P = store.pastSlots
  const F = store.futureSlots
  expect(store.size).toBe(model.keys.size)
  expect(store.size).toBeLessThanOrEqual(maxKeys)
  const stats = store.stats()
  expect(stats.keys).toBe(model.keys.size)
  expect(stats.droppedAhead).toBe(model.droppedAhead)
  expect(stats.evictions).toBe(model.evictions)
  expect(stats.expired).toBe(model.expired)
  // A key holds a block of remote columns exactly while a peer's count of it is retained.
  const withRemote = [...model.keys.values()].filter(k => [...k.counts.keys()].some(id => !id.startsWith('0|'))).length
  expect(stats.remoteBlocks).toBe(withRemote)
  names.forEach((name, j) => {
    const k = model.keys.get(hashes[j])
    const i = store.findHash(hashes[j])
    if (k === undefined) {
      expect(i).toBe(-1)
      expect(store.find(name)).toBe(-1)
      return
    }
    expect(i).not.toBe(-1)
    expect(store.hashOf(i)).toBe(k.hash)
    expect(store.find(name)).toBe(k.name === undefined ? -1 : i)
    expect(store.keyAt(i)).toBe(k.name)
    const h = k.head
    expect(store.headOf(i)).toBe(h)
    let total = 0
    for (let e = h - P - 1; e <= h + F + 1; e++) {
      const t = store.slotTotal(i, e)
      expect(t).toBe(model.slotTotal(k, e))
      expect(store.ownAt(i, e)).toBe(e <= h && model.retained(k, e) ? model.get(k, 0, e) : 0)
      if (model.retained(k, e)) total += t
    }
    for (let off = -(P - 1); off <= 0; off++) expect(store.totalAt(i, off)).toBe(store.slotTotal(i, h + off))
    expect(store.sumOf(i)).toBe(total)
    expect(store.sumOf(i)).toBe(model.sum(k))
    expect(store.aheadOf(i)).toBe(model.ahead(k))
    expect(store.newestEpoch(i)).toBe(model.newest(k))
    expect(store.entriesOf(i)).toEqual(model.entries(k))
    expect(store.carriedOf(i)).toBe(k.carried)
  })
}

describe('WindowStore against a reference model', () => {
  it('sums, slot totals, ahead, newest, carry, entries, drains, sweeps and evictions match the model', () => {
    fc.assert(fc.property(scenarioArb, ([c, ops]) => runScenario(c, ops)), { numRuns: 300 })
  })

  it('matches the model with many writing replicas: remote blocks grow, drop, are reused by other keys and come back', () => {
    // Few keys and short rings, so blocks go through many widths and are dropped and re-made often.
    const manyArb = configArb.map(c => ({ ...c, maxRep: 40, pastSlots: Math.min(c.pastSlots, 4) }))
      .chain(c => fc.tuple(fc.constant(c), fc.array(opArb(c), { maxLength: 120 })))
    fc.assert(fc.property(manyArb, ([c, ops]) => runScenario(c, ops)), { numRuns: 150 })
  })
})

// --- examples --------------------------------------------------------------------

function makeStore (pastSlots = 3, futureSlots = 1, maxKeys = 100): WindowStore {
  return new WindowStore({ slotMs: 1000, pastSlots, futureSlots, maxKeys })
}

describe('WindowStore retained range', () => {
  it('a count ahead of the head becomes the newest epoch once the head reaches it', () => {
    const s = makeStore(3, 1)
    expect(s.mergeHash(77, 1, 11, 4, 10)).toBe(MergeResult.Applied)
    const i = s.findHash(77)
    expect(s.aheadOf(i)).toBe(4)
    expect(s.newestEpoch(i)).toBeNaN()
    s.advance(i, 11)
    expect(s.aheadOf(i)).toBe(0)
    expect(s.slotTotal(i, 11)).toBe(4)
    expect(s.newestEpoch(i)).toBe(11)
    s.advance(i, 13)
    expect(s.newestEpoch(i)).toBe(11)
    s.advance(i, 14)
    expect(s.newestEpoch(i)).toBeNaN()
    expect(s.sumOf(i)).toBe(0)
  })

  it('works with a clock that starts at 0: negative epochs, ring positions below 0', () => {
    const s = makeStore(3, 1)
    const i = s.acquire('k', 0)
    expect(s.merge(i, 1, -2, 5, 0)).toBe(MergeResult.Applied)
    expect(s.merge(i, 1, -3, 5, 0)).toBe(MergeResult.Stale)
    expect(s.merge(i, 2, 1, 7, 0)).toBe(MergeResult.Applied)
    expect(s.addAt(i, -1, 2)).toBe(true)
    expect(s.addAt(i, -3, 2)).toBe(false)
    s.add(i, 0, 1)
    expect(s.entriesOf(i)).toEqual({ [-2]: { 1: 5 }, [-1]: { 0: 2 }, 0: { 0: 1 }, 1: { 2: 7 } })
    expect(s.sumOf(i)).toBe(15)
    expect(s.aheadOf(i)).toBe(7)
    expect(s.newestEpoch(i)).toBe(0)
    s.advance(i, 1)
    expect(s.sumOf(i)).toBe(10)
    expect(s.slotTotal(i, -2)).toBe(0)
    expect(s.epochOf(-1)).toBe(-1)
    expect(s.epochOf(0)).toBe(0)
    expect(s.epochOf(999)).toBe(0)
  })

  it('expiry keeps every count inside the window and drops exactly those that leave', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: -20, max: 20 }),
      fc.array(fc.tuple(fc.integer({ min: -12, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 50 })), { maxLength: 20 }),
      fc.array(fc.integer({ min: 0, max: 12 }), { minLength: 1, maxLength: 5 }),
      (P, F, base, writes, steps) => {
        const s = makeStore(P, F)
        const i = s.acquire('k', base)
        // `${replica}|${epoch}` -> what the store must hold while the epoch is retained.
        const kept = new Map<string, number>()
        for (const [de, rep, count] of writes) {
          const e = base + de
          const id = `${rep}|${e}`
          if (rep === 0 ? s.addAt(i, e, count) : s.merge(i, rep, e, count, base) === MergeResult.Applied) {
            kept.set(id, rep === 0 ? (kept.get(id) ?? 0) + count : count)
          }
        }
        const epochOf = (id: string): number => Number(id.split('|')[1])
        let head = base
        for (const step of steps) {
          head += step
          s.advance(i, head)
          const inWindow = [...kept].filter(([id]) => epochOf(id) > head - P)
          for (const e of new Set([...kept.keys()].map(epochOf))) {
            const want = inWindow.filter(([id]) => epochOf(id) === e).reduce((a, [, v]) => a + v, 0)
            expect(s.slotTotal(i, e)).toBe(want)
          }
          expect(s.sumOf(i)).toBe(inWindow.reduce((a, [, v]) => a + v, 0))
        }
      }
    ))
  })

  it('a clock that steps back credits the head slot', () => {
    const s = makeStore(3, 1)
    const i = s.acquire('k', 10)
    s.add(i, 10, 2)
    s.add(i, 8, 3)
    expect(s.ownAt(i, 10)).toBe(5)
    expect(s.headOf(i)).toBe(10)
  })

  it('rejects own echoes ahead of the head and never lowers a count', () => {
    const s = makeStore(3, 2)
    const i = s.acquire('k', 5)
    s.add(i, 5, 4)
    expect(s.merge(i, 0, 6, 9, 5)).toBe(MergeResult.Unchanged)
    expect(s.merge(i, 0, 5, 3, 5)).toBe(MergeResult.Unchanged)
    expect(s.merge(i, 0, 5, 6, 5)).toBe(MergeResult.Applied)
    expect(s.merge(i, 1, 7, 2, 5)).toBe(MergeResult.Applied)
    expect(s.merge(i, 1, 8, 2, 5)).toBe(MergeResult.TooFarAhead)
    expect(s.entriesOf(i)).toEqual({ 5: { 0: 6 }, 7: { 1: 2 } })
  })
})

describe('WindowStore aux cache', () => {
  it('is invalidated when a past slot changes or the head moves', () => {
    const s = new WindowStore({ slotMs: 1000, pastSlots: 4, maxKeys: 10, carryPerSlot: 1 })
    const i = s.acquire('k', 10)
    expect(s.auxOf(i)).toBeNaN()
    const cases: Array<() => void> = [
      () => s.advance(i, s.headOf(i) + 1),
      () => s.addAt(i, s.headOf(i) - 1, 1),
      () => s.merge(i, 1, s.headOf(i) - 2, 100, s.headOf(i)),
      () => s.add(i, s.headOf(i) + 1, 1)
    ]
    for (const change of cases) {
      s.setAux(i, 42)
      expect(s.auxOf(i)).toBe(42)
      change()
      expect(s.auxOf(i)).toBeNaN()
    }
  })
})

describe('WindowStore init validation', () => {
  it.each([
    [{ slotMs: 0 }], [{ slotMs: NaN }], [{ pastSlots: 0 }], [{ pastSlots: 1.5 }], [{ futureSlots: -1 }],
    [{ pastSlots: 250, futureSlots: 6 }], [{ maxKeys: 0 }], [{ maxKeys: 2.5 }], [{ carryPerSlot: -1 }], [{ carryPerSlot: NaN }]
  ])('throws RangeError for %o', bad => {
    expect(() => new WindowStore({ slotMs: 1000, pastSlots: 3, maxKeys: 10, ...bad })).toThrow(RangeError)
  })
})

// --- replication -----------------------------------------------------------------

describe('WindowStore convergence', () => {
  type NetOp =
    | { t: 'add', s: number, k: number, cost: number }
    | { t: 'tick' }
    | { t: 'flush', s: number }
    | { t: 'deliver', pick: number, keep: boolean }

  const netOpArb: fc.Arbitrary<NetOp> = fc.oneof(
    { weight: 4, arbitrary: fc.record({ t: fc.constant('add' as const), s: fc.nat(3), k: fc.nat(3), cost: fc.integer({ min: 1, max: 5 }) }) },
    { weight: 2, arbitrary: fc.constant({ t: 'tick' as const }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('flush' as const), s: fc.nat(3) }) },
    { weight: 5, arbitrary: fc.record({ t: fc.constant('deliver' as const), pick: fc.nat(), keep: fc.boolean() }) }
  )

  it('stores exchanging drained triples in any order, duplicated and re-delivered, agree on every epoch', () => {
    fc.assert(fc.property(
      fc.integer({ min: 2, max: 4 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 2 }),
      fc.array(fc.nat(2), { minLength: 4, maxLength: 4 }), fc.constantFrom(0, 1_700_000_000),
      fc.array(netOpArb, { maxLength: 80 }), fc.gen(),
      (n, P, F, skewSeeds, base, ops, gen) => {
        // Clock skews within futureSlots, so no entry arrives too far ahead.
        const skew = skewSeeds.map(x => Math.min(x, F))
        const ids = Array.from({ length: n }, (_, s) => ({ peerId: `node-${s}`, incarnation: 1 }))
        const tables = ids.map(id => new ReplicaTable(id))
        const stores = ids.map(() => makeStore(P, F, 64))
        const names = ['a', 'b', 'c', 'd'].map(x => `user:${x}`)
        const totals = new Map<string, number>()
        let g = base
        const nowOf = (s: number): number => g + skew[s]
        interface Message { from: number, triples: number[] }
        const sent: Message[] = []
        let inflight: Array<{ to: number, m: Message }> = []
        const flush = (s: number): void => {
          const triples: number[] = []
          stores[s].drainDirty(triples)
          if (triples.length === 0) return
          const m = { from: s, triples }
          sent.push(m)
          for (let to = 0; to < n; to++) if (to !== s) inflight.push({ to, m })
        }
        const deliver = (to: number, m: Message): void => {
          const rep = tables[to].intern(replicaKey(ids[m.from]))
          expect(rep === 0).toBe(to === m.from)
          for (let j = 0; j < m.triples.length; j += 3) {
            const r = stores[to].mergeHash(m.triples[j], rep, m.triples[j + 1], m.triples[j + 2], nowOf(to))
            expect(r).not.toBe(MergeResult.TooFarAhead)
          }
        }
        for (const op of ops) {
          if (op.t === 'add') {
            const s = op.s % n
            const i = stores[s].acquire(names[op.k], nowOf(s))
            stores[s].add(i, nowOf(s), op.cost)
            const id = `${op.k}|${nowOf(s)}`
            totals.set(id, (totals.get(id) ?? 0) + op.cost)
          } else if (op.t === 'tick') {
            // Flushes run far more often than slots turn, so every count is sent while
            // its sender still holds it (a sender with a fast clock drops it first).
            for (let s = 0; s < n; s++) flush(s)
            g++
          }
          else if (op.t === 'flush') flush(op.s % n)
          else if (inflight.length > 0) {
            const at = op.pick % inflight.length
            deliver(inflight[at].to, inflight[at].m)
            if (!op.keep) inflight.splice(at, 1)
          }
        }
        for (let s = 0; s < n; s++) flush(s)
        inflight = gen(fc.shuffledSubarray, inflight, { minLength: inflight.length })
        for (const { to, m } of inflight) deliver(to, m)
        // Old messages again, to every store, the sender included (an echo).
        for (const m of gen(fc.shuffledSubarray, sent)) for (let to = 0; to < n; to++) deliver(to, m)

        const window = (s: number): number[] => Array.from({ length: P + F }, (_, j) => nowOf(s) - P + 1 + j)
        const totalAt = (s: number, k: number, e: number): number => {
          const i = stores[s].findHash(stores[s].hashKey(names[k]))
          if (i === -1) return 0
          stores[s].advance(i, nowOf(s))
          return stores[s].slotTotal(i, e)
        }
        for (let k = 0; k < names.length; k++) {
          for (let s = 0; s < n; s++) {
            // Every retained epoch holds what all stores counted there.
            for (const e of window(s)) expect(totalAt(s, k, e)).toBe(totals.get(`${k}|${e}`) ?? 0)
            for (let t = s + 1; t < n; t++) {
              for (const e of window(s).filter(x => window(t).includes(x))) expect(totalAt(s, k, e)).toBe(totalAt(t, k, e))
            }
          }
        }
      }
    ), { numRuns: 200 })
  })
})

describe('WindowStore drainDirty', () => {
  it('emits absolute own counts of every changed epoch still retained, then nothing', () => {
    const s = makeStore(4, 1)
    const i = s.acquire('k', 10)
    const h = s.hashOf(i)
    s.add(i, 10, 2)
    s.add(i, 10, 3)
    s.merge(i, 1, 10, 50, 10)
    let out: number[] = []
    s.drainDirty(out)
    expect(out).toEqual([h, 10, 5])
    s.drainDirty(out = [])
    expect(out).toEqual([])
    // Remote merges are not own changes.
    s.merge(i, 1, 9, 5, 10)
    s.drainDirty(out = [])
    expect(out).toEqual([])
    s.addAt(i, 8, 1)
    s.add(i, 11, 1)
    s.drainDirty(out = [])
    expect(tripleSet(out)).toEqual(tripleSet([h, 8, 1, h, 10, 5, h, 11, 1]))
    // An epoch that left the window before the drain is still emitted once (a peer whose
    // clock runs behind still counts it); every retained epoch after the oldest changed
    // one is re-sent (absolute values: harmless).
    s.addAt(i, 8, 1)
    s.advance(i, 12)
    s.drainDirty(out = [])
    expect(tripleSet(out)).toEqual(tripleSet([h, 8, 2, h, 10, 5, h, 11, 1]))
    s.addAt(i, 9, 1)
    s.advance(i, 13)
    s.drainDirty(out = [])
    expect(tripleSet(out)).toEqual(tripleSet([h, 9, 1, h, 10, 5, h, 11, 1]))
    s.drainDirty(out = [])
    expect(out).toEqual([])
  })

  it('emits the undrained counts of keys evicted at the maxKeys cap; none is lost', () => {
    const opArb = fc.oneof(
      { weight: 5, arbitrary: fc.record({ t: fc.constant('new' as const), cost: fc.integer({ min: 1, max: 9 }) }) },
      { weight: 4, arbitrary: fc.record({ t: fc.constant('again' as const), back: fc.nat(), cost: fc.integer({ min: 1, max: 9 }) }) },
      { weight: 3, arbitrary: fc.constant({ t: 'foreign' as const }) },
      { weight: 2, arbitrary: fc.constant({ t: 'drain' as const }) },
      { weight: 1, arbitrary: fc.record({ t: fc.constant('sweep' as const), budget: fc.integer({ min: 1, max: 64 }) }) },
      { weight: 1, arbitrary: fc.constant({ t: 'tick' as const }) }
    )
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), fc.array(opArb, { maxLength: 250 }), (maxKeys, ops) => {
      const P = 64
      const s = new WindowStore({ slotMs: 1000, pastSlots: P, maxKeys, initialCapacity: 16 })
      const added = new Map<string, number>()
      const emitted = new Map<string, number>()
      const dirty = new Set<string>()
      const names: string[] = []
      let now = 0
      let foreign = 0
      const drain = (): void => {
        const out: number[] = []
        s.drainDirty(out)
        for (let j = 0; j < out.length; j += 3) {
          const id = `${out[j]}|${out[j + 1]}`
          expect(out[j + 2]).toBeGreaterThanOrEqual(emitted.get(id) ?? 0)
          emitted.set(id, out[j + 2])
        }
        dirty.clear()
      }
      const count = (name: string, cost: number): void => {
        s.add(s.acquire(name, now), now, cost)
        const id = `${s.hashKey(name)}|${now}`
        added.set(id, (added.get(id) ?? 0) + cost)
        dirty.add(name)
      }
      for (const op of ops) {
        if (op.t === 'new' || (op.t === 'again' && names.length === 0)) {
          names.push(`flood:${names.length}`)
          count(names[names.length - 1], op.cost)
        } else if (op.t === 'again') {
          // Counting into a key again is only a G-Counter while the key lives.
          const name = names[names.length - 1 - op.back % Math.min(names.length, 4)]
          if (s.find(name) !== -1) count(name, op.cost)
        } else if (op.t === 'foreign') {
          s.mergeHash(2 ** 40 + foreign++, 1, now, 1, now)
        } else if (op.t === 'drain') drain()
        else if (op.t === 'sweep') {
          const wasLive = [...dirty].filter(n => s.find(n) !== -1)
          s.sweep(now, op.budget)
          for (const name of wasLive) expect(s.find(name)).not.toBe(-1)
        } else if (now < P - 1) now++
        expect(s.size).toBeLessThanOrEqual(maxKeys)
        expect(s.stats().keys).toBe(s.size)
      }
      drain()
      // Nothing left the window (P > run length), so every count must have been emitted.
      expect(emitted).toEqual(added)
    }), { numRuns: 150 })
  })
})

describe('WindowStore keys, eviction and sweep', () => {
  it('never holds more than maxKeys keys under a flood of new keys', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 1500 }), fc.boolean(), (maxKeys, n, byHash) => {
      const s = new WindowStore({ slotMs: 1000, pastSlots: 2, maxKeys, initialCapacity: 16 })
      for (let j = 0; j < n; j++) {
        if (byHash) s.mergeHash(j + 1, 1, 5, 1, 5)
        else s.add(s.acquire(`k${j}`, 5), 5, 1)
        expect(s.size).toBeLessThanOrEqual(maxKeys)
      }
      expect(s.size).toBe(Math.min(n, maxKeys))
      expect(s.stats().evictions).toBe(Math.max(0, n - maxKeys))
      expect(s.stats().capacity).toBeLessThanOrEqual(Math.max(16, maxKeys))
    }), { numRuns: 40 })
  })

  it('gives back the memory of remote columns once a flood of keys written by many replicas has expired', () => {
    const s = new WindowStore({ slotMs: 1000, pastSlots: 2, futureSlots: 0, maxKeys: 10_000 })
    const keys = 2000
    const reps = 40
    for (let k = 0; k < keys; k++) for (let r = 1; r <= reps; r++) s.mergeHash(k + 1, r, 10, r, 10)
    const flooded = s.stats()
    expect(flooded.remoteBlocks).toBe(keys)
    // Ten keys stay written (at the new epoch); the others' counts all leave the window,
    // and the sweep that aligns them drops their blocks, then compacts the arena.
    for (let k = 0; k < 10; k++) for (let r = 1; r <= reps; r++) s.mergeHash(k + 1, r, 13, 100 + r, 13)
    s.sweep(13, keys)
    const after = s.stats()
    expect(after.remoteBlocks).toBe(10)
    expect(after.remoteBytes).toBeLessThan(flooded.remoteBytes / 8)
    for (let k = 0; k < keys; k++) {
      const i = s.findHash(k + 1)
      // Expired keys may stay a while (their share history fades first), without columns.
      if (k >= 10) {
        if (i !== -1) expect(s.entriesOf(i)).toEqual({})
        continue
      }
      const row: Record<number, number> = {}
      for (let r = 1; r <= reps; r++) row[r] = 100 + r
      expect(s.entriesOf(i)).toEqual({ 13: row })
      expect(s.sumOf(i)).toBe(reps * 100 + reps * (reps + 1) / 2)
    }
    // The compacted blocks keep working: new replicas, new epochs.
    const i = s.findHash(1)
    expect(s.merge(i, reps + 1, 14, 7, 14)).toBe(MergeResult.Applied)
    expect(s.slotTotal(i, 14)).toBe(7)
    expect(s.slotTotal(i, 13)).toBe(reps * 100 + reps * (reps + 1) / 2)
  })

  it('sweep frees keys with nothing left in the window and keeps dirty ones', () => {
    const s = makeStore(3, 1)
    const clean = s.acquire('clean', 10)
    s.add(clean, 10, 1)
    const dirty = s.acquire('dirty', 10)
    s.drainDirty([])
    s.add(dirty, 10, 1)
    const remote = s.acquire('remote', 10)
    s.merge(remote, 1, 11, 3, 10)
    const empty = s.acquire('empty', 10)
    expect(s.sweep(12, 100)).toBe(1)
    expect(s.find('empty')).toBe(-1)
    expect(s.sweep(13, 100)).toBe(1)
    expect(s.find('clean')).toBe(-1)
    expect(s.find('remote')).toBe(remote)
    expect(s.sweep(20, 100)).toBe(1)
    expect(s.find('remote')).toBe(-1)
    expect(s.find('dirty')).toBe(dirty)
    expect(s.headOf(dirty)).toBe(10)
    s.drainDirty([])
    expect(s.sweep(20, 100)).toBe(1)
    expect(s.size).toBe(0)
    expect(s.stats().expired).toBe(4)
    expect(s.findHash(s.hashKey('clean'))).toBe(-1)
    expect(s.findHash(s.hashKey('empty'))).toBe(-1)
    expect(clean).not.toBe(empty)
  })

  // Low 32 bits pick the bucket: shared low bits collide, and values near the table
  // end make probe runs wrap around.
  const LOWS = [0, 1, 2, 3, 29, 30, 31, 62, 63, 127, 255, 2 ** 31, 2 ** 32 - 1]
  const craftedHash = fc.tuple(fc.integer({ min: 1, max: 6 }), fc.constantFrom(...LOWS)).map(([hi, lo]) => hi * 2 ** 32 + lo)
  type IndexOp = { t: 'insert', h: number, counted: boolean } | { t: 'sweep', budget: number } | { t: 'tick' } | { t: 'clear' }
  const indexOpArb: fc.Arbitrary<IndexOp> = fc.oneof(
    { weight: 10, arbitrary: fc.record({ t: fc.constant('insert' as const), h: craftedHash, counted: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('sweep' as const), budget: fc.integer({ min: 1, max: 100 }) }) },
    { weight: 2, arbitrary: fc.constant({ t: 'tick' as const }) },
    { weight: 1, arbitrary: fc.constant({ t: 'clear' as const }) }
  )
  const allHashes = [1, 2, 3, 4, 5, 6].flatMap(hi => LOWS.map(lo => hi * 2 ** 32 + lo))

  it('findHash finds exactly the live keys after random inserts, evictions and sweeps (colliding buckets, growth)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 80 }), fc.array(indexOpArb, { maxLength: 150 }), (maxKeys, ops) => {
      const s = new WindowStore({ slotMs: 1000, pastSlots: 2, maxKeys, initialCapacity: 16 })
      let now = 0
      let live = new Set<number>()
      for (const op of ops) {
        let plainInsert = false
        if (op.t === 'insert') {
          if (op.counted) expect(s.mergeHash(op.h, 1, now, 1, now)).not.toBe(MergeResult.Stale)
          const i = op.counted ? s.findHash(op.h) : s.acquireHash(op.h, now)
          expect(i).not.toBe(-1)
          expect(s.hashOf(i)).toBe(op.h)
          plainInsert = !live.has(op.h) && live.size < maxKeys
        } else if (op.t === 'sweep') s.sweep(now, op.budget)
        else if (op.t === 'tick') now++
        else s.clear()
        // Independent oracle: the records whose hash field is set (freed ones are zeroed).
        const scanned = new Set<number>()
        for (let i = 0; i < s.stats().capacity; i++) if (s.hashOf(i) !== 0) scanned.add(s.hashOf(i))
        expect(scanned.size).toBe(s.size)
        expect(s.size).toBeLessThanOrEqual(maxKeys)
        for (const h of allHashes) {
          const i = s.findHash(h)
          expect(i !== -1).toBe(scanned.has(h))
          if (i !== -1) expect(s.hashOf(i)).toBe(h)
        }
        // Nothing appears from nowhere, and a plain insert below the cap removes nothing.
        for (const h of scanned) expect(live.has(h) || (op.t === 'insert' && op.h === h)).toBe(true)
        if (plainInsert && op.t === 'insert') expect(scanned).toEqual(new Set([...live, op.h]))
        if (op.t === 'clear') expect(scanned.size).toBe(0)
        live = scanned
      }
    }), { numRuns: 200 })
  })

  it('keeps every key findable by name and hash after growing past its initial capacity', () => {
    const s = new WindowStore({ slotMs: 1000, pastSlots: 2, maxKeys: 5000, initialCapacity: 16 })
    for (let j = 0; j < 3000; j++) s.add(s.acquire(`k${j}`, 1), 1, j + 1)
    expect(s.stats().capacity).toBeGreaterThanOrEqual(3000)
    for (let j = 0; j < 3000; j++) {
      const i = s.find(`k${j}`)
      expect(s.findHash(s.hashKey(`k${j}`))).toBe(i)
      expect(s.sumOf(i)).toBe(j + 1)
    }
    expect(s.findHash(s.hashKey('absent'))).toBe(-1)
  })

  it('names a key first created by hash when it is acquired by name', () => {
    const s = makeStore()
    const h = s.hashKey('late')
    s.mergeHash(h, 1, 10, 3, 10)
    const i = s.findHash(h)
    expect(s.keyAt(i)).toBeUndefined()
    expect(s.acquire('late', 10)).toBe(i)
    expect(s.keyAt(i)).toBe('late')
    expect(s.find('late')).toBe(i)
    expect(s.sumOf(i)).toBe(3)
  })
})

describe('WindowStore wire-hash index across growth', () => {
  // The index moves into a larger table a few buckets per insert; lookups, removals
  // (sweeps, evictions) and re-use of freed records interleave with the move.
  it('finds every live key by its hash, and only those, while it grows, sweeps and evicts', () => {
    const opArb = fc.oneof(
      { weight: 6, arbitrary: fc.record({ t: fc.constant('acquire' as const), h: fc.integer({ min: 1, max: 400 }), de: fc.integer({ min: 0, max: 3 }) }) },
      { weight: 2, arbitrary: fc.record({ t: fc.constant('name' as const), k: fc.integer({ min: 0, max: 60 }), de: fc.integer({ min: 0, max: 3 }) }) },
      { weight: 1, arbitrary: fc.record({ t: fc.constant('sweep' as const), budget: fc.integer({ min: 1, max: 64 }), de: fc.integer({ min: 0, max: 4 }) }) }
    )
    fc.assert(fc.property(fc.integer({ min: 40, max: 300 }), fc.array(opArb, { minLength: 50, maxLength: 600 }), (maxKeys, ops) => {
      const store = new WindowStore({ slotMs: 1000, pastSlots: 2, futureSlots: 0, maxKeys, initialCapacity: 16 })
      const names = Array.from({ length: 61 }, (_, k) => `name:${k}`)
      const universe = [...Array.from({ length: 400 }, (_, j) => j + 1), ...names.map(n => store.hashKey(n))]
      let now = 1_000
      for (const op of ops) {
        now += op.de
        if (op.t === 'acquire') {
          const i = store.acquireHash(op.h, now)
          expect(store.hashOf(i)).toBe(op.h)
          expect(store.findHash(op.h)).toBe(i)
        } else if (op.t === 'name') {
          const i = store.acquire(names[op.k], now)
          expect(store.findHash(store.hashKey(names[op.k]))).toBe(i)
        } else {
          store.sweep(now, op.budget)
        }
        // Every hash found points at a live record holding it, each record once, and
        // together they are all the live records.
        const found = new Set<number>()
        for (const h of universe) {
          const i = store.findHash(h)
          if (i === -1) continue
          expect(store.hashOf(i)).toBe(h)
          expect(found.has(i)).toBe(false)
          found.add(i)
        }
        expect(found.size).toBe(store.size)
      }
    }), { numRuns: 150 })
  })
})
