/**
 * Growth stalls of check(): one limiter, `--keys` distinct new keys checked one after
 * another, each check timed. Stores grow by doubling, so a check that crosses a power
 * of two pays for copying and re-indexing every key so far; this bench reports the
 * slowest checks and where they fell, for a limiter alone and for one whose limit is
 * gossiped (its store also indexes keys by wire hash), beside a JS Map's own inserts of
 * the same keys (the baseline, measured in the same run).
 *
 *   npm run bench:growth -- [--json] [--keys N] [--threshold-ms MS]
 *
 * The last stdout line is one JSON object.
 */
import '../src/polyfill.js'
import { createLimiter } from '../src/index.js'
import { benchArgs } from './args.js'
import { stubTransport } from './stub.js'

const args = benchArgs('bench:growth', process.argv.slice(2), { json: false, keys: 1_200_000, thresholdMs: 2 })
const log = (s: string): void => { if (!args.json) console.log(s) }

interface Stall { at: number, ms: number }

/** Runs `insert(i)` for every key index, timing each; returns the calls over the threshold. */
function timed (insert: (i: number) => void): { stalls: Stall[], totalMs: number } {
  const stalls: Stall[] = []
  const t0 = performance.now()
  for (let i = 0; i < args.keys; i++) {
    const s = performance.now()
    insert(i)
    const ms = performance.now() - s
    if (ms > args.thresholdMs) stalls.push({ at: i, ms: Number(ms.toFixed(2)) })
  }
  return { stalls, totalMs: performance.now() - t0 }
}

const names = Array.from({ length: args.keys }, (_, i) => `u${i}`)
const policies = { policies: [{ id: 'hot', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window' as const, limit: 1_000_000_000, window: '1h' }] }] }
/** A limiter alone, or on a (silent) transport: its gossiped stores also index keys by wire hash. */
function checks (replicated: boolean): { stalls: Stall[], totalMs: number } {
  const limiter = createLimiter({ policies, maxKeys: 2 * args.keys, ...(replicated ? { transport: stubTransport('growth'), flushIntervalMs: 3_600_000 } : {}) })
  const r = timed(i => { limiter.check({ user: names[i] }) })
  limiter.close()
  return r
}
const check = checks(false)
const gossiped = checks(true)
const map = new Map<string, number>()
const baseline = timed(i => { map.set(names[i], i) })

const worst = (xs: Stall[]): Stall[] => [...xs].sort((a, b) => b.ms - a.ms).slice(0, 8)
const out = {
  bench: 'growth',
  node: process.version,
  keys: args.keys,
  thresholdMs: args.thresholdMs,
  checkMaxMs: Math.max(0, ...check.stalls.map(s => s.ms)),
  checkStallsOverThreshold: check.stalls.length,
  checkWorst: worst(check.stalls),
  checkNsPerKey: Math.round(check.totalMs * 1e6 / args.keys),
  gossipedCheckMaxMs: Math.max(0, ...gossiped.stalls.map(s => s.ms)),
  gossipedCheckStallsOverThreshold: gossiped.stalls.length,
  gossipedCheckWorst: worst(gossiped.stalls),
  gossipedCheckNsPerKey: Math.round(gossiped.totalMs * 1e6 / args.keys),
  baselines: {
    mapMaxMs: Math.max(0, ...baseline.stalls.map(s => s.ms)),
    mapStallsOverThreshold: baseline.stalls.length,
    mapWorst: worst(baseline.stalls),
    mapNsPerKey: Math.round(baseline.totalMs * 1e6 / args.keys)
  }
}
log(`check(): slowest ${out.checkMaxMs} ms; over ${args.thresholdMs} ms: ${out.checkWorst.map(s => `${s.ms} ms at key ${s.at}`).join(', ')}`)
log(`check() of a gossiped limit: slowest ${out.gossipedCheckMaxMs} ms; ${out.gossipedCheckWorst.map(s => `${s.ms} ms at key ${s.at}`).join(', ')}`)
log(`Map.set(): slowest ${out.baselines.mapMaxMs} ms; ${out.baselines.mapWorst.map(s => `${s.ms} ms at key ${s.at}`).join(', ')}`)
console.log(JSON.stringify(out))
