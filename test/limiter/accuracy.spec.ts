import { describe, expect, it } from 'vitest'
import { createLimiter, createLoopbackNetwork, VirtualClock, type LimitSpec } from '../../src/index.js'

/**
 * Accuracy when several nodes share one hot key, with the simple admission rule of the
 * foundation (admit while this node's view has room). These runs produce the figures
 * in docs/algorithms.md; set MESHLIMIT_PRINT_ACCURACY=1 to print the table.
 *
 * Setup: limit 100/s, gossip every 50 ms over a 5 ms link (staleness S = 55 ms),
 * 30 simulated seconds, the first 2 s excluded as warm-up.
 */
const T0 = 1_800_000_000_000
const FLUSH_MS = 50
const LATENCY_MS = 5
const STALENESS_MS = FLUSH_MS + LATENCY_MS
const SECONDS = 30
const WARM_MS = 2000

const ALGORITHMS: Array<[string, LimitSpec]> = [
  ['sliding-window', { limit: 100, windowMs: 1000 }],
  ['fixed-window', { algorithm: 'fixed-window', limit: 100, windowMs: 1000 }],
  ['token-bucket', { algorithm: 'token-bucket', ratePerSecond: 100, burst: 100 }]
]

interface Run {
  /** Admitted over the measured period vs limit x seconds, in %. */
  excessPct: number
  /** Most admitted in any aligned 1 s window (the fixed window's own unit). */
  worstWindow: number
}

/**
 * `perTickPerNode` requests hit every node every 5 ms ("synchronized"), or one request
 * hits one node every 5 ms round-robin ("even", perTickPerNode = 0).
 */
function run (spec: LimitSpec, n: number, perTickPerNode: number): Run {
  const clock = new VirtualClock(T0)
  const net = createLoopbackNetwork({ clock, latencyMs: LATENCY_MS })
  const nodes = Array.from({ length: n }, (_, i) => createLimiter({
    clock,
    policies: { policies: [{ id: 'p', key: 'user', limits: [spec] }] },
    transport: net.connect(`n${i}`),
    flushIntervalMs: FLUSH_MS,
    incarnation: 1
  }))
  const perWindow = new Map<number, number>()
  let admitted = 0
  for (let t = 0, r = 0; t < SECONDS * 1000; t += 5, r++) {
    clock.advance(5)
    const targets = perTickPerNode === 0 ? [nodes[r % n]] : nodes
    for (const node of targets) {
      for (let j = 0; j < Math.max(1, perTickPerNode); j++) {
        if (!node.check({ user: 'hot' }).allowed || t < WARM_MS) continue
        admitted++
        const w = Math.floor(clock.now() / 1000)
        perWindow.set(w, (perWindow.get(w) ?? 0) + 1)
      }
    }
  }
  const expected = 100 * (SECONDS - WARM_MS / 1000)
  return { excessPct: ((admitted - expected) / expected) * 100, worstWindow: Math.max(...perWindow.values()) }
}

describe('accuracy of the simple rule when nodes share a key', () => {
  const table: string[] = []

  for (const [name, spec] of ALGORITHMS) {
    it(`${name}: exact on one node, bounded by staleness on several`, () => {
      const cells: string[] = []
      for (const n of [1, 3, 10]) {
        const even = run(spec, n, 0)
        // Synchronized 10x overload: every node sees every release of capacity at once.
        const perTick = Math.max(1, Math.round((100 * 10 * 0.005) / n))
        const sync = run(spec, n, perTick)
        cells.push(`n=${n}: even ${even.excessPct.toFixed(1)}% / sync ${sync.excessPct.toFixed(1)}% (worst 1 s: ${sync.worstWindow})`)
        if (n === 1 && name !== 'sliding-window') {
          expect(even.excessPct).toBeLessThanOrEqual(0)
          expect(sync.excessPct).toBeLessThanOrEqual(0)
        }
        // Even 2x load: staleness costs at most a few percent.
        expect(even.excessPct).toBeLessThanOrEqual(2)
        if (name === 'fixed-window') {
          // One release of capacity per window: the others admit at most their offered
          // rate for one staleness period before they see the first admissions.
          const perNodePerMs = (perTick * n) / 5 / n
          const bound = 100 + (n - 1) * perNodePerMs * STALENESS_MS
          expect(sync.worstWindow).toBeLessThanOrEqual(bound)
        }
        if (name === 'token-bucket') {
          // Overshoot lifts the level above the burst, which then holds admissions back:
          // over a long run the rate stays the refill rate.
          expect(Math.abs(sync.excessPct)).toBeLessThanOrEqual(1)
        }
      }
      table.push(`| ${name} | ${cells.join(' | ')} |`)
    })
  }

  it('prints the table for docs/algorithms.md when asked', () => {
    expect(table).toHaveLength(3)
    if (process.env.MESHLIMIT_PRINT_ACCURACY === '1') console.log(['| algorithm | 1 node | 3 nodes | 10 nodes |', '|---|---|---|---|', ...table].join('\n'))
  })
})
