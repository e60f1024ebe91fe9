import { describe, expect, it } from 'vitest'
import { createLimiter, createLoopbackNetwork, VirtualClock, type LimitSpec } from '../../src/index.js'

/**
 * Accuracy when several nodes share one key, with the simple rule (each node admits
 * while its own view has room) and with local shares (the default). These runs produce
 * the figures in docs/algorithms.md; set MESHLIMIT_PRINT_ACCURACY=1 to print the tables.
 *
 * Setup: limit 100/s, gossip every 50 ms over a 5 ms link (staleness S = 55 ms), 20
 * simulated seconds, the first 2 s excluded as warm-up.
 */
const T0 = 1_800_000_000_000
const FLUSH_MS = 50
const LATENCY_MS = 5
const STALENESS_MS = FLUSH_MS + LATENCY_MS
const SECONDS = 20
const WARM_MS = 2000
const NODES = [1, 3, 10, 30]

const ALGORITHMS: Array<[string, LimitSpec]> = [
  ['sliding-window', { limit: 100, windowMs: 1000 }],
  ['fixed-window', { algorithm: 'fixed-window', limit: 100, windowMs: 1000 }],
  ['token-bucket', { algorithm: 'token-bucket', ratePerSecond: 100, burst: 100 }]
]

function mesh (spec: LimitSpec, n: number, localShares: boolean): { clock: VirtualClock, check: (node: number) => boolean } {
  const clock = new VirtualClock(T0)
  const net = createLoopbackNetwork({ clock, latencyMs: LATENCY_MS })
  const nodes = Array.from({ length: n }, (_, i) => createLimiter({
    clock,
    policies: { policies: [{ id: 'p', key: 'user', limits: [spec] }] },
    transport: net.connect(`n${i}`),
    flushIntervalMs: FLUSH_MS,
    incarnation: 1,
    localShares
  }))
  return { clock, check: node => nodes[node].check({ user: 'hot' }).allowed }
}

interface Overload {
  /** Admitted over the measured period vs limit x seconds, in %. */
  excessPct: number
  /** Most admitted in any aligned 1 s window. */
  worstWindow: number
}

/**
 * Overload of one hot key: `sync` sends every node a request every 5 ms at once (10x
 * the limit: every node sees every release of capacity at the same moment, the worst
 * case), `even` one request every 5 ms to the nodes in turn (2x the limit).
 */
function overload (spec: LimitSpec, n: number, sync: boolean, shares: boolean): Overload {
  const { clock, check } = mesh(spec, n, shares)
  const perTick = sync ? Math.max(1, Math.round((100 * 10 * 0.005) / n)) : 1
  const perWindow = new Map<number, number>()
  let admitted = 0
  for (let t = 0, r = 0; t < SECONDS * 1000; t += 5, r++) {
    clock.advance(5)
    const targets = sync ? Array.from({ length: n }, (_, k) => k) : [r % n]
    for (const node of targets) {
      for (let j = 0; j < perTick; j++) {
        if (!check(node) || t < WARM_MS) continue
        admitted++
        const w = Math.floor(clock.now() / 1000)
        perWindow.set(w, (perWindow.get(w) ?? 0) + 1)
      }
    }
  }
  const expected = 100 * (SECONDS - WARM_MS / 1000)
  return { excessPct: ((admitted - expected) / expected) * 100, worstWindow: Math.max(...perWindow.values()) }
}

/** A client under its limit (`fraction` of it), spread evenly over the nodes: % denied. */
function underLimit (spec: LimitSpec, n: number, fraction: number, shares: boolean): number {
  const { clock, check } = mesh(spec, n, shares)
  const gap = 1000 / (100 * fraction)
  let denied = 0
  let total = 0
  let next = 0
  let r = 0
  for (let t = 0; t < SECONDS * 1000; t++) {
    clock.advance(1)
    while (next <= t) {
      next += gap
      const ok = check(r++ % n)
      if (t < WARM_MS) continue
      total++
      if (!ok) denied++
    }
  }
  return (100 * denied) / total
}

const pct = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}%`

describe('accuracy when nodes share a key', () => {
  const tables = { simple: [] as string[], shares: [] as string[], under: [] as string[] }

  for (const [name, spec] of ALGORITHMS) {
    it(`${name}: the simple rule is exact on one node and bounded by staleness on several`, () => {
      const cells: string[] = []
      for (const n of NODES) {
        const even = overload(spec, n, false, false)
        const sync = overload(spec, n, true, false)
        cells.push(`${pct(even.excessPct)} / ${pct(sync.excessPct)} (${sync.worstWindow})`)
        if (n === 1 && name !== 'sliding-window') {
          expect(even.excessPct).toBeLessThanOrEqual(0)
          expect(sync.excessPct).toBeLessThanOrEqual(0)
        }
        expect(even.excessPct).toBeLessThanOrEqual(2)
        if (name === 'fixed-window') {
          // One release of capacity per window: the others admit at most their offered
          // rate for one staleness period before they see the first admissions.
          const perNodePerMs = Math.max(1, Math.round((100 * 10 * 0.005) / n)) / 5
          expect(sync.worstWindow).toBeLessThanOrEqual(100 + (n - 1) * perNodePerMs * STALENESS_MS)
        }
      }
      tables.simple.push(`| ${name} | ${cells.join(' | ')} |`)
    })

    it(`${name}: local shares cut the synchronized over-admission and never deny a client under its limit`, () => {
      const cells: string[] = []
      const under: string[] = []
      for (const n of NODES) {
        const even = overload(spec, n, false, true)
        const sync = overload(spec, n, true, true)
        const simple = overload(spec, n, true, false)
        cells.push(`${pct(even.excessPct)} / ${pct(sync.excessPct)} (${sync.worstWindow})`)
        // Shares never do worse than the simple rule under synchronized overload...
        expect(sync.excessPct).toBeLessThanOrEqual(Math.max(simple.excessPct, 2) + 0.5)
        // ...and are within a few percent of the limit on the even overload.
        expect(Math.abs(even.excessPct)).toBeLessThanOrEqual(5)
        if (name !== 'sliding-window') expect(sync.excessPct).toBeLessThanOrEqual(2.5)
        else expect(sync.excessPct).toBeLessThanOrEqual(n <= 3 ? 3 : 6)
        // A client at 80% or 95% of its limit is never denied, however many nodes it is spread over.
        const d80 = underLimit(spec, n, 0.8, true)
        const d95 = underLimit(spec, n, 0.95, true)
        expect(d80).toBe(0)
        expect(d95).toBeLessThanOrEqual(1)
        under.push(`${d80.toFixed(2)}% / ${d95.toFixed(2)}%`)
      }
      tables.shares.push(`| ${name} | ${cells.join(' | ')} |`)
      tables.under.push(`| ${name} | ${under.join(' | ')} |`)
    })
  }

  it('prints the tables for docs/algorithms.md when asked', () => {
    expect(tables.simple).toHaveLength(3)
    expect(tables.shares).toHaveLength(3)
    if (process.env.MESHLIMIT_PRINT_ACCURACY === '1') {
      const head = `| algorithm | ${NODES.map(n => `${n} node${n > 1 ? 's' : ''}`).join(' | ')} |\n|---|${NODES.map(() => '---').join('|')}|`
      console.log(['simple rule: even 2x / sync 10x (worst 1 s)', head, ...tables.simple, '', 'local shares: even 2x / sync 10x (worst 1 s)', head, ...tables.shares, '', 'local shares, client under its limit: denied at 80% / 95% load', head, ...tables.under].join('\n'))
    }
  })
})
