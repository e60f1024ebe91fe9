/**
 * What local shares' gossiped demand costs: heap and wire bytes per key that other
 * replicas write and that this node denies (the keys with a `#den` record), against the
 * simple rule (localShares false) measured the same way in the same run.
 *
 *   npm run bench:shares -- [--json] [--keys N]
 *
 * Per mode, two limiters on a loopback network: b checks every key once and flushes (so a
 * sees each key written by another replica), then a checks every key three times (limit 2
 * per second: b's and one admitted, two denied). Heap is a's growth over the checks (after full
 * GCs; b's column is part of both modes); wire bytes are a's next flush, encoded. The
 * last stdout line is one JSON object.
 */
import { encodeDelta } from '../gossip/codec.js'
import { createLimiter, createLoopbackNetwork, type Clock } from '../src/index.js'
import { benchArgs } from './args.js'

type Args = { json: boolean, keys: number }

function parseArgs (argv: string[]): Args {
  const a = benchArgs('bench:shares', argv, { json: false, keys: 100_000 })
  if (!Number.isInteger(a.keys) || a.keys < 1000) throw new Error(`--keys must be an integer >= 1000, got ${a.keys}`)
  return a
}

class ManualClock implements Clock {
  t = 1_800_000_000_000
  now (): number { return this.t }
  setTimer (): () => void { return () => {} }
}

const POLICY = { policies: [{ id: 'per-user', key: 'user', limits: [{ id: 'sec', algorithm: 'sliding-window' as const, limit: 2, windowMs: 1000 }] }] }

function used (): number {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('run with node --expose-gc (npm run bench:shares does)')
  gc()
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

function measure (keys: number, localShares: boolean): { heapBytesPerKey: number, wireBytesPerKey: number, entriesPerKey: number, groups: string[] } {
  const clock = new ManualClock()
  const net = createLoopbackNetwork()
  const init = { clock, policies: POLICY, maxKeys: keys * 2, flushIntervalMs: 3_600_000, localShares }
  const ks = Array.from({ length: keys }, (_, k) => `user-${k}`)
  const b = createLimiter({ ...init, transport: net.connect('b'), incarnation: 2 })
  for (const k of ks) b.check({ user: k })
  const before = used()
  const a = createLimiter({ ...init, transport: net.connect('a'), incarnation: 1 })
  b.flush()
  clock.t += 1
  for (const k of ks) {
    a.check({ user: k })
    a.check({ user: k })
    a.check({ user: k })
  }
  const after = used()
  const groups = a.collectDelta()
  const bytes = encodeDelta({ incarnation: 1, sentAtMs: clock.t, groups }).reduce((n, m) => n + m.length, 0)
  const entries = groups.reduce((n, g) => n + g.entries.length / 3, 0)
  a.close()
  b.close()
  return {
    heapBytesPerKey: Math.round((after - before) / keys),
    wireBytesPerKey: Number((bytes / keys).toFixed(1)),
    entriesPerKey: Number((entries / keys).toFixed(2)),
    groups: groups.map(g => g.limit)
  }
}

function main (): void {
  const args = parseArgs(process.argv.slice(2))
  const simple = measure(args.keys, false)
  const shares = measure(args.keys, true)
  const report = {
    keys: args.keys,
    simpleRule: simple,
    localShares: shares,
    heapRatio: Number((shares.heapBytesPerKey / simple.heapBytesPerKey).toFixed(2)),
    wireRatio: Number((shares.wireBytesPerKey / simple.wireBytesPerKey).toFixed(2))
  }
  if (!args.json) {
    console.log(`simple rule: ${simple.heapBytesPerKey} heap B/key, ${simple.wireBytesPerKey} wire B/key (${simple.groups.join(', ')})`)
    console.log(`local shares: ${shares.heapBytesPerKey} heap B/key, ${shares.wireBytesPerKey} wire B/key (${shares.groups.join(', ')})`)
  }
  console.log(JSON.stringify(report))
}

main()
