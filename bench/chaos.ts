/**
 * Simulator benchmark: the bench-300 scenario (300 nodes in 3 regions of 100, 60
 * simulated seconds, 10,000 Zipf keys) run once, timed on the wall clock.
 *
 *   npm run bench:chaos -- [--json] [--duration D] [--seed N] [--threads N]
 *
 * The baseline is real time: simulated seconds per wall second says how much faster
 * than life the simulator runs the real limiter code of 300 nodes; the target is the
 * whole run (60 simulated seconds) within 120 wall seconds on a 2-core machine. It runs
 * the regions in parallel (chaos/sim/parallel.ts: one unit per region, min(regions,
 * cores) worker threads unless --threads says otherwise; --threads 0 runs the
 * single-threaded runner instead). The last stdout line is one JSON object, with the
 * wall time and the CPU time of every thread of the process.
 */
import { performance } from 'node:perf_hooks'
import { loadScenario } from '../chaos/cli.js'
import { availableParallelism } from 'node:os'
import { runParallel } from '../chaos/sim/parallel.js'
import { runScenario } from '../chaos/sim/run.js'
import { parseDuration } from '../src/policy/duration.js'
import { benchArgs } from './args.js'

const TARGET_WALL_SECONDS = 120

interface Args { json: boolean, durationMs: number | undefined, seed: number | undefined, threads: number | undefined }

function parseArgs (argv: string[]): Args {
  const f = benchArgs('bench:chaos', argv, { json: false, duration: undefined as string | undefined, seed: undefined as number | undefined, threads: undefined as number | undefined }, { duration: 'string', seed: 'number', threads: 'number' })
  if (f.threads !== undefined && (!Number.isInteger(f.threads) || f.threads < 0)) throw new Error(`--threads must be an integer >= 0, got ${f.threads}`)
  return { json: f.json, durationMs: f.duration === undefined ? undefined : parseDuration(f.duration) ?? Number(f.duration), seed: f.seed, threads: f.threads }
}

async function main (): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const scenario = loadScenario('bench-300')
  const log = (s: string): void => { if (!args.json) console.log(s) }
  let peakRss = 0
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  const runOpts = {
    seed: args.seed,
    durationMs: args.durationMs,
    onProgress: (done: number, total: number) => {
      peakRss = Math.max(peakRss, process.memoryUsage.rss())
      if (!args.json && process.stderr.isTTY) process.stderr.write(`\r${(done / 1000).toFixed(1)}/${(total / 1000).toFixed(1)} s simulated, ${((performance.now() - t0) / 1000).toFixed(1)} s wall`)
    }
  }
  const requested = args.threads ?? Math.min(scenario.regions.length, availableParallelism())
  let threads = 1
  let fallback: string | null = null
  let summary
  if (requested === 0) summary = (await runScenario(scenario, runOpts)).summary
  else {
    const run = await runParallel(scenario, { ...runOpts, threads: requested })
    summary = run.summary
    threads = run.threads
    fallback = run.fallback ?? null
  }
  const wallSeconds = (performance.now() - t0) / 1000
  // Every thread of the process (process.cpuUsage is getrusage(RUSAGE_SELF)).
  const cpu = process.cpuUsage(cpu0)
  const cpuSeconds = (cpu.user + cpu.system) / 1e6
  if (!args.json && process.stderr.isTTY) process.stderr.write('\n')
  const durationMs = args.durationMs ?? scenario.durationMs
  const out = {
    bench: 'chaos',
    node: process.version,
    scenario: summary.scenario,
    seed: summary.seed,
    nodes: summary.nodes,
    regions: summary.regions,
    keys: scenario.workload.keys,
    requestsPerSec: scenario.workload.clients.reduce((n, c) => n + c.ratePerSec, 0),
    simulatedSeconds: summary.simulatedSeconds,
    mode: requested === 0 ? 'single' : 'parallel',
    threads,
    fallback,
    wallSeconds: Number(wallSeconds.toFixed(1)),
    cpuSeconds: Number(cpuSeconds.toFixed(1)),
    simulatedPerWallSecond: Number((summary.simulatedSeconds / wallSeconds).toFixed(3)),
    deliveries: summary.messages.delivered,
    deliveriesPerWallSecond: Math.round(summary.messages.delivered / wallSeconds),
    requests: summary.requests,
    peakRssMB: Math.round(peakRss / 2 ** 20),
    targetWallSeconds: durationMs === 60_000 ? TARGET_WALL_SECONDS : Math.round(TARGET_WALL_SECONDS * durationMs / 60_000),
    withinTarget: wallSeconds <= TARGET_WALL_SECONDS * durationMs / 60_000,
    overAdmissionMaxPct: summary.overAdmissionMaxPct,
    boundPct: summary.boundPct,
    convergenceP99Ms: summary.convergenceP99Ms,
    bytesPerNodePerSec: summary.bytesPerNodePerSec,
    violations: summary.violations.length
  }
  log(`${out.scenario}: ${out.nodes} nodes x ${out.regions} regions, ${out.keys} keys, ${out.simulatedSeconds} simulated s in ${out.wallSeconds} wall s, ${out.cpuSeconds} CPU s on ${threads} thread(s) (${out.simulatedPerWallSecond}x real time; target <= ${out.targetWallSeconds} s: ${out.withinTarget ? 'met' : 'missed'})`)
  if (fallback !== null) log(`  ran single-threaded: ${fallback}`)
  log(`  ${out.deliveries} deliveries (${out.deliveriesPerWallSecond}/wall s), ${out.requests} requests, peak RSS ${out.peakRssMB} MB`)
  console.log(JSON.stringify(out))
}

main().catch(err => {
  console.error(err)
  process.exit(1)
})
