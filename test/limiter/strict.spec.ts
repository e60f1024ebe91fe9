import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createLoopbackNetwork } from '../../gossip/loopback.js'
import { VirtualClock } from '../../membership/clock.js'
import { ESCROW_PROTOCOL, decodeAnswer, decodeRequest, encodeAnswer, encodeRequest } from '../../src/escrow.js'
import { createLimiter, type Limiter } from '../../src/limiter.js'
import { validatePolicies } from '../../src/policy/validate.js'

const WINDOW = 1000
const LIMIT = 100

const doc = (holders: string[], limit = LIMIT): unknown => ({
  escrow: { holders },
  policies: [{ id: 'pay', key: 'user', strict: true, limits: [{ limit, windowMs: WINDOW, algorithm: 'fixed-window' }] }]
})

/** Lets promise chains (transfer requests and answers) run to completion. */
const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve)) }

interface Mesh {
  clock: VirtualClock
  nodes: Map<string, Limiter>
  /** Pairs that cannot talk (both directions). */
  cut: Set<string>
  restart(id: string): void
  step(ms: number): Promise<void>
  close(): void
}

/** Nodes started just before `startMs` (holders own rights from the first window that starts after them). */
function mesh (ids: string[], holders: string[], startMs = 10_000, latencyMs = 5): Mesh {
  const clock = new VirtualClock(startMs - 10)
  const cut = new Set<string>()
  const net = createLoopbackNetwork({ clock, latencyMs, drop: (_t, from, to) => cut.has(`${from}|${to}`) })
  const nodes = new Map<string, Limiter>()
  const make = (id: string): Limiter => createLimiter({ policies: doc(holders) as never, clock, transport: net.connect(id), flushIntervalMs: 20 })
  for (const id of ids) nodes.set(id, make(id))
  clock.advance(10)
  return {
    clock,
    nodes,
    cut,
    restart (id) {
      nodes.get(id)?.close()
      net.disconnect(id)
      nodes.set(id, make(id))
    },
    async step (ms) {
      for (let t = 0; t < ms; t++) {
        clock.advance(1)
        await settle()
      }
    },
    close () { for (const l of nodes.values()) l.close() }
  }
}

const partition = (m: Mesh, a: string[], b: string[]): void => {
  for (const x of a) for (const y of b) { m.cut.add(`${x}|${y}`); m.cut.add(`${y}|${x}`) }
}

describe('strict mode: policy validation', () => {
  it('needs fixed windows and escrow holders, and names the field', () => {
    expect(validatePolicies(doc(['a', 'b'])).escrow).toEqual({ holders: ['a', 'b'] })
    expect(() => validatePolicies({ policies: [{ id: 'p', strict: true, limits: [{ limit: 1, window: '1s', algorithm: 'fixed-window' }] }] }))
      .toThrow(expect.objectContaining({ field: 'policies[0].strict' }))
    expect(() => validatePolicies({ escrow: { holders: ['a'] }, policies: [{ id: 'p', strict: true, limits: [{ limit: 1, window: '1s' }] }] }))
      .toThrow(expect.objectContaining({ field: 'policies[0].limits[0].algorithm' }))
    expect(() => validatePolicies({ escrow: { holders: [] }, policies: [] })).toThrow(expect.objectContaining({ field: 'escrow.holders' }))
    expect(() => validatePolicies({ escrow: { holders: ['a', 'a'] }, policies: [] })).toThrow(/lists a peer twice/)
    expect(() => validatePolicies({ escrow: { holders: ['bad id'] }, policies: [] })).toThrow(expect.objectContaining({ field: 'escrow.holders[0]' }))
    expect(() => validatePolicies({ escrow: { holders: ['a'], owners: 1 }, policies: [] })).toThrow(expect.objectContaining({ field: 'escrow.owners' }))
    expect(() => validatePolicies({ policies: [{ id: 'p', strict: 'yes', limits: [{ limit: 1, window: '1s' }] }] })).toThrow(expect.objectContaining({ field: 'policies[0].strict' }))
  })
})

describe('strict mode: the transfer codec', () => {
  it('round-trips requests and answers, and refuses anything else', () => {
    fc.assert(fc.property(fc.string({ maxLength: 50 }), fc.string({ maxLength: 100 }), fc.nat(), fc.integer({ min: 1, max: 2 ** 32 }), fc.nat(), (limit, key, epoch, want, inc) => {
      expect(decodeRequest(encodeRequest(limit, key, epoch, want, inc))).toEqual({ limit, key, epoch, want, incarnation: inc })
    }))
    fc.assert(fc.property(fc.nat(), fc.nat(), fc.nat(), fc.option(fc.string({ minLength: 1, maxLength: 60 }), { nil: undefined }), (epoch, cum, inc, hint) => {
      expect(decodeAnswer(encodeAnswer(epoch, cum, inc, hint))).toEqual({ epoch, cumulative: cum, incarnation: inc, hint })
    }))
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), bytes => {
      // Never throws; a valid decoding is only accepted with the right shape.
      const r = decodeRequest(bytes)
      if (r !== undefined) expect(r.want).toBeGreaterThanOrEqual(1)
      decodeAnswer(bytes)
    }))
    expect(decodeRequest(encodeRequest('p', 'k', 1, 0, 1))).toBeUndefined()
    expect(decodeAnswer(encodeRequest('p', 'k', 1, 1, 1))).toBeUndefined()
  })
})

describe('strict mode on a mesh', () => {
  it('admits traffic spread over non-holders by moving rights to them, and never past the limit', async () => {
    const m = mesh(['a', 'b', 'c', 'd'], ['a', 'b'])
    let admitted = 0
    // 40 per window on each of c and d (80 < 100): rights must flow from the holders.
    for (let t = 0; t < WINDOW; t += 25) {
      for (const id of ['c', 'd']) if (m.nodes.get(id)?.check({ user: 'u' }).allowed === true) admitted++
      await m.step(25)
    }
    // The first request on each non-holder is denied while its first transfer travels.
    expect(admitted).toBeGreaterThanOrEqual(80 - 4)
    const s = m.nodes.get('c')?.stats().escrow
    expect(s?.rightsReceived).toBeGreaterThan(0)
    m.close()
  })

  it('never admits more than the limit in a window, whatever the demand, partitions and restarts (property)', async () => {
    let admittedAll = 0
    await fc.assert(fc.asyncProperty(
      fc.array(fc.record({ node: fc.constantFrom('a', 'b', 'c', 'd', 'e'), burst: fc.integer({ min: 1, max: 40 }), gapMs: fc.integer({ min: 0, max: 100 }) }), { minLength: 5, maxLength: 80 }),
      fc.option(fc.record({ atStep: fc.nat({ max: 79 }), side: fc.subarray(['a', 'b', 'c', 'd', 'e'], { minLength: 1, maxLength: 4 }) }), { nil: undefined }),
      fc.option(fc.record({ atStep: fc.nat({ max: 79 }), node: fc.constantFrom('a', 'b', 'c') }), { nil: undefined }),
      async (steps, split, restart) => {
        const m = mesh(['a', 'b', 'c', 'd', 'e'], ['a', 'b', 'c'])
        const perWindow = new Map<number, number>()
        for (const [k, s] of steps.entries()) {
          if (split !== undefined && split.atStep === k) partition(m, split.side, ['a', 'b', 'c', 'd', 'e'].filter(x => !split.side.includes(x)))
          if (restart !== undefined && restart.atStep === k) m.restart(restart.node)
          for (let j = 0; j < s.burst; j++) {
            if (m.nodes.get(s.node)?.check({ user: 'hot' }).allowed === true) {
              const w = Math.floor(m.clock.now() / WINDOW)
              perWindow.set(w, (perWindow.get(w) ?? 0) + 1)
            }
          }
          await m.step(s.gapMs)
        }
        m.close()
        for (const [w, n] of perWindow) expect(n, `window ${w}`).toBeLessThanOrEqual(LIMIT)
        admittedAll += [...perWindow.values()].reduce((a, b) => a + b, 0)
      }), { numRuns: 25 })
    // The property is not vacuous: the runs admitted traffic.
    expect(admittedAll).toBeGreaterThan(25 * 50)
  })

  it('keeps each side of a partition to the rights it holds: the two sides together stay within the limit', async () => {
    const m = mesh(['a', 'b', 'c', 'd'], ['a', 'b'])
    partition(m, ['a', 'c'], ['b', 'd'])
    let admitted = 0
    let denied = 0
    for (let t = 0; t < WINDOW - 50; t += 5) {
      for (const id of ['a', 'b', 'c', 'd']) {
        if (m.nodes.get(id)?.check({ user: 'x' }).allowed === true) admitted++
        else denied++
      }
      await m.step(5)
    }
    // Each holder owns 50; a plain limiter here would admit up to 100 per side.
    expect(admitted).toBe(LIMIT)
    expect(denied).toBeGreaterThan(0)
    m.close()
  })

  it('a holder restarted mid-window issues no rights until the next window (it cannot remember what it gave)', async () => {
    const m = mesh(['a', 'b'], ['a'])
    let admitted = 0
    for (let k = 0; k < 60; k++) if (m.nodes.get('a')?.check({ user: 'r' }).allowed === true) admitted++
    expect(admitted).toBe(60)
    m.restart('a')
    for (let k = 0; k < 60; k++) if (m.nodes.get('a')?.check({ user: 'r' }).allowed === true) admitted++
    expect(admitted).toBe(60)
    // Next window: fresh rights.
    await m.step(WINDOW)
    let next = 0
    for (let k = 0; k < 120; k++) if (m.nodes.get('a')?.check({ user: 'r' }).allowed === true) next++
    expect(next).toBe(LIMIT)
    m.close()
  })

  it('a roster change gives each holder the smaller of its old and new share for a window', async () => {
    const m = mesh(['a', 'b'], ['a'])
    const a = m.nodes.get('a') as Limiter
    a.setPolicies(doc(['a', 'b']) as never)
    await m.step(WINDOW)
    // Within one window of the change: min(100, 50) = 50.
    let admitted = 0
    for (let k = 0; k < 120; k++) if (a.check({ user: 'q' }).allowed === true) admitted++
    expect(admitted).toBe(50)
    await m.step(WINDOW)
    admitted = 0
    for (let k = 0; k < 120; k++) if (a.check({ user: 'q' }).allowed === true) admitted++
    expect(admitted).toBe(50)
    m.close()
  })

  it('refuses malformed transfer requests, and answers unknown limits with nothing', async () => {
    const clock = new VirtualClock(9_990)
    const net = createLoopbackNetwork()
    const a = createLimiter({ policies: doc(['a']) as never, clock, transport: net.connect('a') })
    clock.advance(10)
    const x = net.connect('x')
    await expect(x.request('a', ESCROW_PROTOCOL, new Uint8Array([1, 2, 3]), 100)).rejects.toThrow()
    const answer = decodeAnswer(await x.request('a', ESCROW_PROTOCOL, encodeRequest('nope/0', 'k', 10, 5, 1), 100))
    expect(answer?.cumulative).toBe(0)
    expect(a.stats().escrow).toMatchObject({ rejected: 1, rightsGiven: 0 })
    a.close()
  })

  it('a node alone (no transport) enforces a strict limit exactly, without escrow', () => {
    const l = createLimiter({ policies: doc(['a']) as never, clock: new VirtualClock(10_000) })
    let admitted = 0
    for (let k = 0; k < 150; k++) if (l.check({ user: 'solo' }).allowed) admitted++
    expect(admitted).toBe(LIMIT)
    expect(l.stats().escrow).toBeUndefined()
    l.close()
  })
})
