// Heap per key that peers write, for the sizing formula of docs/deployment.md: a
// receiving limiter merges the counts of W writers for K keys it never checks itself
// (one slot each, as after one request per key on every writer), and the growth of its
// heap plus ArrayBuffers is divided by K (the arena grows by doubling: up to half spare). Run after `npm run build`:
//   node --expose-gc scripts/remote-memory.mjs [keys=20000] [writers=1,2,5,10,20]
// The last stdout line is one JSON object.
import { createLimiter, createLoopbackNetwork } from '../dist/src/index.js'

const keys = Number(process.argv[2] ?? 20_000)
const writerCounts = (process.argv[3] ?? '1,2,5,10,20').split(',').map(Number)
const gc = globalThis.gc
if (gc === undefined) throw new Error('run with node --expose-gc')
const T0 = 1_700_000_000_000
const clock = { now: () => T0, setTimer: () => () => {} }
// The limit bench:hotpath measures heapBytesPerKey with (a 1 s sliding window).
const policies = { policies: [{ id: 'per-user', key: 'user', limits: [{ id: 'sec', algorithm: 'sliding-window', limit: 100, windowMs: 1000 }] }] }
const used = () => { gc(); gc(); const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers }

const out = { bench: 'remote-memory', node: process.version, keys, bytesPerKeyByWriters: {} }
for (const w of writerCounts) {
  const net = createLoopbackNetwork()
  const writers = Array.from({ length: w }, (_, i) => createLimiter({ clock, policies, transport: net.connect(`w${i}`), maxKeys: keys * 2, flushIntervalMs: 3_600_000 }))
  // Deltas first, so only the receiver's growth is measured; merged key by key, every
  // writer in turn, as keys warm up on a live mesh (a growing key's freed smaller
  // blocks are reused by the next key).
  // One (hash, epoch, count) entry per writer and key, kept in typed arrays.
  const entries = writers.map(() => new Float64Array(keys * 3))
  let group
  for (let k = 0; k < keys; k++) {
    for (let i = 0; i < w; i++) {
      writers[i].check({ user: `user-${k}` })
      const [g] = writers[i].collectDelta()
      group ??= { limit: g.limit, slotMs: g.slotMs }
      entries[i].set(g.entries, k * 3)
    }
  }
  for (const x of writers) x.close()
  writers.length = 0
  const before = used()
  const receiver = createLimiter({ clock, policies, transport: net.connect('r'), maxKeys: keys * 2, flushIntervalMs: 3_600_000 })
  for (let k = 0; k < keys; k++) {
    for (let i = 0; i < w; i++) {
      const e = entries[i]
      const msg = { incarnation: 1, sentAtMs: T0, groups: [{ ...group, entries: [e[k * 3], e[k * 3 + 1], e[k * 3 + 2]] }] }
      if (receiver.applyDelta(`w${i}`, msg) === 'reject') throw new Error(`delta of w${i} rejected`)
    }
  }
  const after = used()
  if (receiver.stats().limits[0].keys !== keys) throw new Error(`the receiver tracks ${receiver.stats().limits[0].keys} keys, not ${keys}`)
  out.bytesPerKeyByWriters[w] = Math.round((after - before) / keys)
  receiver.close()
  console.error(`${w} writers: ${out.bytesPerKeyByWriters[w]} bytes per key`)
}
console.log(JSON.stringify(out))
