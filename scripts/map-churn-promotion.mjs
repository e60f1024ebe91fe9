// The mechanism behind the gRPC sidecar's promotion, without node's HTTP/2 or grpc-js:
// a long-lived Map gets one entry added and one deleted per "call" (as an HTTP/2
// session's table of open streams does), 256 live at a time, each entry reaching about
// 10 KB. V8 rebuilds the Map's backing table as deleted entries pile up; a discarded
// table keeps its entries, and once the live table is in the old generation (after
// any full collection) so is every later one, so finished entries outlive scavenges.
// The same churn in a fixed array (slots overwritten, no rebuilt tables) is the control.
//
//   node --trace-gc-nvp scripts/map-churn-promotion.mjs map   | node scripts/map-churn-promotion.mjs --sum
//   node --trace-gc-nvp scripts/map-churn-promotion.mjs array | node scripts/map-churn-promotion.mjs --sum
import { createInterface } from 'node:readline'

const mode = process.argv[2] ?? 'map'
if (mode === '--sum') {
  // Sums the scavenges of a --trace-gc-nvp trace read from standard input.
  let n = 0
  let pause = 0
  let promoted = 0
  let full = 0
  createInterface({ input: process.stdin }).on('line', line => {
    const f = k => new RegExp(`(?:^|\\s)${k}=(\\S+)`).exec(line)?.[1]
    if (f('gc') === 's') { n++; pause += Number(f('pause')); promoted += Number(f('promoted')) } else if (f('gc') !== undefined) full++
  }).on('close', () => {
    console.log(JSON.stringify({ scavenges: n, scavengePauseMeanMs: Math.round(pause / n * 100) / 100, promotedPerScavengeKB: Math.round(promoted / n / 1024), fullGcs: full }))
  })
} else {
  if (mode !== 'map' && mode !== 'array') throw new Error('usage: map-churn-promotion.mjs map|array|--sum')
  const LIVE = 256
  const table = new Map()
  const slots = new Array(4096).fill(undefined)
  let id = 0
  // One entry: ~10 KB of young objects, like a finished stream and the call it reaches.
  const entry = () => { const o = { id, parts: [] }; for (let i = 0; i < 20; i++) o.parts.push(new Array(60).fill(i)); return o }
  const t0 = Date.now()
  const tick = () => {
    for (let k = 0; k < 50; k++) {
      if (mode === 'map') { table.set(id, entry()); table.delete(id - LIVE) } else { slots[id % 4096] = entry(); slots[(id - LIVE + 4096) % 4096] = undefined }
      id++
      const garbage = []
      for (let j = 0; j < 100; j++) garbage.push({ j }) // what else a call allocates and drops
    }
    if (Date.now() - t0 < 4000) setImmediate(tick)
  }
  tick()
}
