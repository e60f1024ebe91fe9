/**
 * Monte Carlo of the sliding window's share rule with nothing but arrivals left to
 * chance: one key, n nodes with Poisson arrivals, exact per-node settled demand, views
 * stale by one flush (plus a fixed latency) or not at all, no loss, no gossip encoding.
 * It re-states the rule of SlidingWindow.shareAllows (engage factor, cap slack, coin or
 * coordinated rounding of the cap's fraction) in a few lines, so the worst windows it
 * finds are what Poisson arrivals impose on that rule, not what the code adds
 * (docs/accuracy.md, "Worst steady-state window").
 *
 *   node dist/chaos/caps-mc.js --nodes 100 --limit 100 --offered 2 --engage 1.1 --slack 1 --rounding coin
 *
 * Last stdout line: one JSON object (per-run worst steady window over `keys` keys, its
 * distribution over `runs` runs, and the mean excess and use of the limit).
 */
import { seededRandom, type Random } from '../membership/random.js'

interface Options {
  nodes: number
  limit: number
  /** Offered rate in multiples of the limit (per window). */
  offered: number
  engage: number
  slack: number
  rounding: 'coin' | 'coordinated'
  /** Slots per window (window 1 s). */
  slots: number
  flushMs: number
  latencyMs: number
  /** Views hold every count at once (the cap rule alone) instead of one flush late. */
  fresh: boolean
  /**
   * Headroom of the simple rule, in multiples of the admissions this node expects it has
   * not seen yet (peers' settled admission rate x (flush / 2 + latency)); 0: the rule as shipped.
   */
  margin: number
  /** Newest slots left out of the settled demand (ceil(share horizon / slot)). */
  unsettled: number
  seconds: number
  warmupS: number
  /** Keys per run (the simulator's runs have 12 hot key-domains, 6 near-limit). */
  keys: number
  runs: number
  seed: number
  /**
   * Instead of the rule: the frontier of fixed local caps (each node admits at most c or
   * c + 1 per window, its arrivals Poisson and independent), for every mix of caps the
   * mean use of the limit and the 99.9th percentile of a window's total.
   */
  static: boolean
}

const DEFAULTS: Options = { nodes: 100, limit: 100, offered: 2, engage: 1.1, slack: 1, rounding: 'coin', slots: 10, flushMs: 100, latencyMs: 3, fresh: false, margin: 0, unsettled: 2, seconds: 10, warmupS: 2, keys: 12, runs: 100, seed: 1, static: false }

interface KeyFigures { maxExcess: number, excessSum: number, contended: number, admitted: number, windows: number, requests: number, falseDenied: number }

/** One key over the run: returns its steady-state window figures. */
function runKey (o: Options, rnd: Random): KeyFigures {
  const n = o.nodes
  const L = o.limit
  const k = o.slots
  const slotMs = 1000 / k
  const span = k - o.unsettled
  const rate = o.offered * L / 1000 / n // per node per ms
  const totalMs = o.seconds * 1000
  const slotsTotal = Math.ceil(totalMs / slotMs) + 1
  // Per node and slot: admitted and denied units; admissions also as (time, node) for visibility.
  const adm = Array.from({ length: n }, () => new Float64Array(slotsTotal))
  const den = Array.from({ length: n }, () => new Float64Array(slotsTotal))
  const phase = Float64Array.from({ length: n }, () => rnd() * o.flushMs)
  const rank = Float64Array.from({ length: n }, () => rnd())
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => rank[a] - rank[b])
  const coinSalt = Float64Array.from({ length: n }, () => rnd() * 1e9)
  const keySalt = rnd() * 1e6
  const log: Array<{ t: number, node: number }> = []
  // Arrivals: merged Poisson stream of all nodes.
  const arrivals: Array<{ t: number, node: number }> = []
  for (let t = -Math.log(1 - rnd()) / (rate * n); t < totalMs; t += -Math.log(1 - rnd()) / (rate * n)) arrivals.push({ t, node: Math.floor(rnd() * n) })
  const caps = new Float64Array(n)
  const rounded = new Uint8Array(n)
  let capsSlot = -1
  let engaged = false
  /** Peers' settled admissions per ms (all nodes; a node subtracts its own). */
  const settledRate = new Float64Array(n)
  let settledAll = 0
  const coin = (node: number, win: number): number => {
    const x = Math.sin(coinSalt[node] + win * 12.9898) * 43758.5453
    return x - Math.floor(x)
  }
  const sharedOffset = (win: number): number => {
    const x = Math.sin(win * 78.233 + keySalt) * 43758.5453
    return x - Math.floor(x)
  }
  const computeCaps = (h: number): void => {
    capsSlot = h
    let all = 0
    const own = new Float64Array(n)
    settledAll = 0
    for (let i = 0; i < n; i++) {
      settledRate[i] = 0
      for (let e = h - k + 1; e <= h - o.unsettled; e++) {
        if (e < 0) continue
        own[i] += adm[i][e] + den[i][e]
        settledRate[i] += adm[i][e]
      }
      settledRate[i] /= span * slotMs
      settledAll += settledRate[i]
      all += own[i]
    }
    const demand = all * k / span
    engaged = demand > L * o.engage
    if (!engaged) return
    let before = 0
    const u = sharedOffset(Math.floor(h / k))
    for (const i of order) {
      const exact = L * (own[i] * k / span + o.slack) / demand
      if (o.rounding === 'coordinated' && own[i] > 0) {
        const f = exact - Math.floor(exact)
        caps[i] = Math.floor(exact) + Math.floor(u + before + f) - Math.floor(u + before)
        rounded[i] = 1
        before += f
      } else {
        caps[i] = exact
        rounded[i] = 0
      }
    }
  }
  let lo = 0
  let falseDenied = 0
  let requests = 0
  for (const a of arrivals) {
    if (a.t >= o.warmupS * 1000) requests++
    const t = a.t
    const i = a.node
    const h = Math.floor(t / slotMs)
    if (h !== capsSlot) computeCaps(h)
    const frac = (t - h * slotMs) / slotMs
    // The simple rule on this node's view: own counts at once, others' after their next flush.
    while (lo < log.length && log[lo].t < (h - k) * slotMs) lo++
    let view = 0
    let truth = 0
    let ownUsage = 0
    for (let x = lo; x < log.length; x++) {
      const r = log[x]
      const e = Math.floor(r.t / slotMs)
      const w = e === h - k ? 1 - frac : 1
      truth += w
      if (r.node === i) {
        ownUsage += w
        view += w
        continue
      }
      const visibleAt = o.fresh ? r.t : phase[r.node] + Math.ceil((r.t - phase[r.node]) / o.flushMs) * o.flushMs + o.latencyMs
      if (visibleAt <= t) view += w
    }
    const unseen = o.fresh ? 0 : o.margin * (settledAll - settledRate[i]) * (o.flushMs / 2 + o.latencyMs)
    let ok = view + unseen + 1 <= L + 1e-9
    if (ok && engaged) {
      const room = caps[i] - ownUsage
      ok = 1 <= room + 1e-9 || (!rounded[i] && room > 0 && coin(i, Math.floor(h / k)) < room)
    }
    if (ok) {
      adm[i][h]++
      log.push({ t, node: i })
    } else {
      den[i][h]++
      if (truth + 1 <= L + 1e-9 && t >= o.warmupS * 1000) falseDenied++
    }
  }
  // Slot-aligned windows after the warm-up.
  const perSlot = new Float64Array(slotsTotal)
  for (let i = 0; i < n; i++) for (let e = 0; e < slotsTotal; e++) perSlot[e] += adm[i][e]
  const fig: KeyFigures = { maxExcess: 0, excessSum: 0, contended: 0, admitted: 0, windows: 0, requests, falseDenied }
  const first = Math.ceil(o.warmupS * 1000 / slotMs)
  const last = Math.floor(totalMs / slotMs) - 1
  for (let end = first + k - 1; end <= last; end++) {
    let sum = 0
    for (let e = end - k + 1; e <= end; e++) sum += perSlot[e]
    const over = Math.max(0, sum - L)
    fig.windows++
    if (over > fig.maxExcess) fig.maxExcess = over
    if (o.offered >= 1) {
      fig.contended++
      fig.excessSum += over / L
    }
  }
  for (let e = first; e <= last; e++) fig.admitted += perSlot[e]
  return fig
}

function parse (argv: string[]): Options {
  const o: Record<string, unknown> = { ...DEFAULTS }
  for (let a = 0; a < argv.length; a++) {
    const name = argv[a].replace(/^--/, '')
    if (!(name in DEFAULTS)) throw new Error(`unknown option --${name}; options: ${Object.keys(DEFAULTS).join(', ')}`)
    const d = (DEFAULTS as unknown as Record<string, unknown>)[name]
    if (typeof d === 'boolean') {
      o[name] = true
      continue
    }
    const v = argv[++a]
    o[name] = typeof d === 'number' ? Number(v) : v
    if (typeof d === 'number' && !Number.isFinite(o[name])) throw new Error(`--${name} takes a number, got ${v}`)
  }
  if (o.rounding !== 'coin' && o.rounding !== 'coordinated') throw new Error('--rounding is coin or coordinated')
  return o as unknown as Options
}

/** Poisson draw (Knuth; small means only). */
function poisson (rnd: Random, mean: number): number {
  const l = Math.exp(-mean)
  let p = 1
  let x = -1
  do {
    x++
    p *= rnd()
  } while (p > l)
  return x
}

/** For fixed caps: the best mean use of the limit whose 99.9th-percentile window stays within the limit plus 1, 3, 5 and 10%. */
function staticFrontier (o: Options, rnd: Random): Record<string, { usedPct: number, capsSum: number }> {
  const n = o.nodes
  const mean = o.offered * o.limit / n
  const trials = 20_000
  const points: Array<{ used: number, p999: number, capsSum: number }> = []
  const totals = new Float64Array(trials)
  for (let c = 0; c <= 3; c++) {
    for (let m = 0; m < n; m++) {
      for (let t = 0; t < trials; t++) {
        let sum = 0
        for (let i = 0; i < n; i++) sum += Math.min(i < m ? c + 1 : c, poisson(rnd, mean))
        totals[t] = sum
      }
      const sorted = Float64Array.from(totals).sort()
      points.push({ used: sorted.reduce((a, b) => a + b, 0) / trials, p999: sorted[Math.floor(0.999 * trials)], capsSum: c * n + m })
    }
  }
  const out: Record<string, { usedPct: number, capsSum: number }> = {}
  for (const pct of [1, 3, 5, 10]) {
    let best = { used: 0, capsSum: 0 }
    for (const pt of points) if (pt.p999 <= o.limit * (1 + pct / 100) && pt.used > best.used) best = pt
    out[`p999Within${pct}Pct`] = { usedPct: Math.round(best.used / o.limit * 1000) / 10, capsSum: best.capsSum }
  }
  return out
}

const o = parse(process.argv.slice(2))
const rnd = seededRandom(o.seed)
if (o.static) {
  console.log(JSON.stringify({ options: o, staticCaps: staticFrontier(o, rnd) }))
  process.exit(0)
}
const worst: number[] = []
let excessSum = 0
let contended = 0
let admitted = 0
let windowsSeen = 0
let requests = 0
let falseDenied = 0
for (let r = 0; r < o.runs; r++) {
  let w = 0
  for (let key = 0; key < o.keys; key++) {
    const f = runKey(o, rnd)
    w = Math.max(w, f.maxExcess)
    excessSum += f.excessSum
    contended += f.contended
    admitted += f.admitted
    windowsSeen += f.windows
    requests += f.requests
    falseDenied += f.falseDenied
  }
  worst.push(w)
}
worst.sort((a, b) => a - b)
const q = (p: number): number => worst[Math.min(worst.length - 1, Math.floor(p * worst.length))]
const steadyS = o.seconds - o.warmupS
const pct = (x: number): number => Math.round(x / o.limit * 10000) / 100
console.log(JSON.stringify({
  options: o,
  worstPerRunPct: { min: pct(worst[0]), p50: pct(q(0.5)), p90: pct(q(0.9)), max: pct(worst[worst.length - 1]) },
  meanExcessPct: contended === 0 ? 0 : Math.round(excessSum / contended * 10000) / 100,
  falseDenialPct: Math.round(falseDenied / requests * 100000) / 1000,
  usedPctOfLimit: Math.round(admitted / (o.runs * o.keys * o.limit * steadyS) * 10000) / 100,
  windowsPerKey: windowsSeen / (o.runs * o.keys)
}))
