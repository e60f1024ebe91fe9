import { existsSync, readFileSync } from 'node:fs'
import { basename, dirname, extname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { CliCommand, CliIO } from '../src/cli/types.js'
import { MeshlimitError } from '../src/errors.js'
import { parseDuration } from '../src/policy/duration.js'
import { writeReport } from './report/report.js'
import { parse as parseYaml } from 'yaml'
import { parseScenario, validateScenario, type Scenario } from './scenario.js'
import { runParallel } from './sim/parallel.js'
import { runScenario, type RunResult } from './sim/run.js'
import type { Summary } from './summary.js'

const USAGE = `usage: npm run chaos -- <scenario> [--seed N] [--json] [--report DIR] [--duration D] [--threads N] [--set P=V]...

  <scenario>     a scenario file (YAML or JSON), or the name of one in chaos/scenarios/
  --seed N       seed of the run (default: the scenario's); same scenario + seed, same result
  --json         print the summary as one JSON object, the last line of stdout
  --report DIR   write DIR/<scenario>-seed<N>.md and .svg (chart of admissions vs limit)
  --duration D   override the traffic duration ("10s", "500ms", or ms)
  --threads N    run each region as its own unit, on N worker threads (1: all in this
                 thread); the result is the same for every N (but not the same as
                 without --threads: each region draws from its own random streams).
                 Scenarios that cannot run so (docs/chaos.md) run single-threaded, saying why
  --set P=V      override one field of the scenario before it is validated (repeatable):
                 P a dotted path (list items by index), V YAML; e.g. --set limiter.localShares=false
                 (the simple rule), --set policies.policies.0.onPartition=closed

Runs the scenario in the deterministic simulator (chaos/sim/). Exit code 0 when every
invariant holds or fails only for want of anti-entropy, 1 when one fails otherwise,
2 on a usage or scenario error. The real multi-process mode (chaos:real) comes later.`

interface Args { scenario: string, seed?: number, json: boolean, report?: string, durationMs?: number, threads?: number, sets: Array<[string[], unknown]> }

function parseArgs (argv: string[]): Args {
  const a: Partial<Args> = { json: false, sets: [] }
  const value = (i: number, flag: string): string => {
    const v = argv[i]
    if (v === undefined) throw new UsageError(`${flag} needs a value`)
    return v
  }
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i]
    if (v === '--json') a.json = true
    else if (v === '--set') {
      const raw = value(++i, '--set')
      const eq = raw.indexOf('=')
      if (eq <= 0) throw new UsageError(`--set takes PATH=VALUE (e.g. limiter.localShares=false), got ${raw}`)
      const path = raw.slice(0, eq).split('.')
      if (path.some(k => k === '' || k === '__proto__' || k === 'constructor' || k === 'prototype')) throw new UsageError(`--set: ${raw.slice(0, eq)} is not a field path`)
      a.sets?.push([path, parseYaml(raw.slice(eq + 1))])
    }
    else if (v === '--seed') {
      const n = Number(value(++i, '--seed'))
      if (!Number.isInteger(n) || n < 0 || n > 2 ** 32 - 1) throw new UsageError(`--seed must be an integer from 0 to 4294967295, got ${argv[i]}`)
      a.seed = n
    } else if (v === '--report') a.report = value(++i, '--report')
    else if (v === '--threads') {
      const n = Number(value(++i, '--threads'))
      if (!Number.isInteger(n) || n < 1 || n > 64) throw new UsageError(`--threads must be an integer from 1 to 64, got ${argv[i]}`)
      a.threads = n
    }
    else if (v === '--duration') {
      const raw = value(++i, '--duration')
      const ms = /^\d+$/.test(raw) ? Number(raw) : parseDuration(raw)
      if (ms === undefined || !(ms >= 100)) throw new UsageError(`--duration must be at least 100 ms ("10s", "500ms" or ms), got ${raw}`)
      a.durationMs = ms
    } else if (v.startsWith('--')) throw new UsageError(`unknown option ${v}`)
    else if (a.scenario === undefined) a.scenario = v
    else throw new UsageError(`unexpected argument ${v}`)
  }
  if (a.scenario === undefined) throw new UsageError('name a scenario')
  return a as Args
}

class UsageError extends Error {}

/** The folder holding chaos/scenarios/, from the source tree or from dist/. */
function scenariosDir (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let up = 0; up < 4; up++) {
    const candidate = join(dir, 'chaos', 'scenarios')
    if (existsSync(candidate)) return candidate
    dir = dirname(dir)
  }
  return join(process.cwd(), 'chaos', 'scenarios')
}

/** Loads a scenario from a path or a name in chaos/scenarios/, with `sets` (path, value) applied before validation. */
export function loadScenario (ref: string, sets: Array<[string[], unknown]> = []): Scenario {
  const candidates = [resolve(ref), ...['.yaml', '.yml', '.json'].map(ext => join(scenariosDir(), ref + ext))]
  const file = candidates.find(f => existsSync(f) && extname(f) !== '')
  if (file === undefined) throw new UsageError(`no scenario ${ref}: not a file, and not one of chaos/scenarios/*.yaml`)
  const text = readFileSync(file, 'utf8')
  const name = basename(file, extname(file))
  if (sets.length === 0) return parseScenario(text, name)
  let raw: unknown
  try {
    raw = parseYaml(text)
  } catch {
    return parseScenario(text, name)
  }
  for (const [path, v] of sets) setPath(raw, path, v)
  return validateScenario(raw, name)
}

/** Sets `path` in a parsed document, creating objects on the way (the validator judges the result). */
function setPath (doc: unknown, path: string[], v: unknown): void {
  let at = doc as Record<string, unknown>
  for (let j = 0; j < path.length - 1; j++) {
    const next = at[path[j]]
    if (next === null || typeof next !== 'object') {
      if (next !== undefined) throw new UsageError(`--set ${path.join('.')}: ${path.slice(0, j + 1).join('.')} is not an object or a list`)
      at[path[j]] = {}
    }
    at = at[path[j]] as Record<string, unknown>
  }
  at[path[path.length - 1]] = v
}

/** The human summary, a few lines. */
export function humanSummary (s: Summary): string[] {
  const lines = [
    `${s.scenario} seed ${s.seed}: ${s.nodes} nodes in ${s.regions} regions, ${s.simulatedSeconds} simulated s, ${s.requests} requests (${s.admitted} admitted)`,
    `over-admission max ${s.overAdmissionMaxPct}% (bound ${s.boundPct}%), mean ${s.overAdmissionMeanPct}% over contended windows; false denials ${s.falseDenialPct}%`,
    `steady state: over-admission max ${s.overAdmissionSteadyMaxPct ?? '-'}%, mean ${s.overAdmissionSteadyMeanPct ?? '-'}%; false denials of clients under their limit ${s.underLimitFalseDenialPct ?? '-'}%`,
    `convergence p50 ${s.convergenceP50Ms ?? 'never'} ms, p99 ${s.convergenceP99Ms ?? 'never'} ms (${s.unconvergedPct}% never)` +
      (s.convergenceAfterHealMs.length > 0 ? `; after heal ${s.convergenceAfterHealMs.map(x => x === null ? 'never' : `${x} ms`).join(', ')}` : '') +
      `; after traffic ${s.convergenceAfterTrafficMs === null ? 'not within the quiet period' : `${s.convergenceAfterTrafficMs} ms`}`,
    `upload ${s.bytesPerNodePerSec} B/s per node; counts lost ${s.countsLost} (and ${s.countsLostAtCrash} with crashed processes)`
  ]
  if (s.violations.length === 0) lines.push('invariants: all hold')
  for (const v of s.violations) lines.push(`VIOLATION ${v.invariant} x${v.count}${v.needs !== undefined ? ` (needs ${v.needs})` : ''}: ${v.detail}`)
  return lines
}

/** A progress bar on stderr for runs longer than a second: redrawn in place on a TTY, every 10% otherwise. */
function progress (io: CliIO, tty: boolean): (done: number, total: number) => void {
  const start = Date.now()
  let lastDraw = 0
  let lastTenth = -1
  return (done, total) => {
    const wall = Date.now() - start
    if (wall < 1000) return
    const frac = total === 0 ? 1 : Math.min(1, done / total)
    const line = `[${'#'.repeat(Math.round(frac * 30)).padEnd(30, '.')}] ${(frac * 100).toFixed(0).padStart(3)}% ${(done / 1000).toFixed(1)}/${(total / 1000).toFixed(1)} s simulated, ${(wall / 1000).toFixed(1)} s wall`
    if (tty) {
      if (wall - lastDraw < 200 && frac < 1) return
      lastDraw = wall
      process.stderr.write(`\r${line}${frac >= 1 ? '\n' : ''}`)
    } else if (Math.floor(frac * 10) > lastTenth) {
      lastTenth = Math.floor(frac * 10)
      io.err(line)
    }
  }
}

export const chaosCommand: CliCommand = {
  summary: 'run a chaos scenario in the deterministic simulator',
  usage: USAGE,
  async run (argv, io) {
    let args: Args
    let scenario: Scenario
    try {
      if (argv.includes('--help') || argv.includes('-h')) {
        io.out(USAGE)
        return 0
      }
      args = parseArgs(argv)
      scenario = loadScenario(args.scenario, args.sets)
    } catch (err) {
      if (err instanceof UsageError || err instanceof MeshlimitError) {
        io.err(`chaos: ${err.message}`)
        if (err instanceof UsageError) io.err(USAGE)
        return 2
      }
      throw err
    }
    const tty = io.env.CHAOS_PROGRESS !== '0' && process.stderr.isTTY === true
    const runOpts = {
      seed: args.seed,
      durationMs: args.durationMs,
      onProgress: io.env.CHAOS_PROGRESS === '0' ? undefined : progress(io, tty)
    }
    let run: RunResult
    if (args.threads === undefined) run = await runScenario(scenario, runOpts)
    else {
      const p = await runParallel(scenario, { ...runOpts, threads: args.threads })
      if (p.fallback !== undefined) io.err(`chaos: running single-threaded: ${p.fallback}`)
      run = p
    }
    const { summary, series, markers } = run
    const human = humanSummary(summary)
    for (const line of human) (args.json ? io.err : io.out)(line)
    if (args.report !== undefined) {
      const cmd = `npm run chaos -- ${args.scenario} --seed ${summary.seed}${args.durationMs !== undefined ? ` --duration ${args.durationMs}` : ''}${args.threads !== undefined ? ` --threads ${args.threads}` : ''} --report ${args.report}`
      const md = await writeReport(args.report, scenario, summary, series, markers, cmd)
      ;(args.json ? io.err : io.out)(`report: ${md}`)
    }
    if (args.json) io.out(JSON.stringify(summary))
    return summary.violations.some(v => v.needs === undefined) ? 1 : 0
  }
}

// Run as a program (node dist/chaos/cli.js ...), not when imported by tests.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const io: CliIO = { out: line => { process.stdout.write(line + '\n') }, err: line => { process.stderr.write(line + '\n') }, env: process.env }
  chaosCommand.run(process.argv.slice(2), io).then(code => { process.exitCode = code }, (err: unknown) => {
    process.stderr.write(`chaos: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exitCode = 1
  })
}
