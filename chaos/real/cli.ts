import '../../src/polyfill.js'
import { existsSync, readFileSync } from 'node:fs'
import { basename, dirname, extname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import type { CliCommand, CliIO } from '../../src/cli/types.js'
import { MeshlimitError } from '../../src/errors.js'
import { parseDuration } from '../../src/policy/duration.js'
import type { PolicyDocument } from '../../src/policy/types.js'
import { humanSummary } from '../cli.js'
import { writeReport } from '../report/report.js'
import { parseScenario, type Scenario } from '../scenario.js'
import { runReal, type RealRunOptions, type RealSummary } from './run.js'

const USAGE = `usage: npm run chaos:real -- [scenario] [--nodes N] [--seed N] [--duration D] [--quiet D]
                             [--rate R] [--netns] [--seeds K] [--json] [--report DIR] [--keep DIR]
                             [--verbose] [--log-level L]

  [scenario]     a scenario file (YAML or JSON), or the name of one in chaos/real/scenarios/ or
                 chaos/scenarios/ (default: real-smoke)
  --nodes N      node processes at the start, spread over the scenario's regions (default: the scenario's)
  --seed N       seed of the traffic and fault draws (default: the scenario's); real runs are not replayable
  --duration D   traffic duration ("10s", "500ms", or ms)
  --quiet D      quiet period before the final audit (shorter than the shortest window)
  --rate R       mean total requests per second (every client scaled alike)
  --netns        every node in its own network namespace (root, Linux): partitions are routing rules
  --seeds K      every node bootstraps from the first K nodes of each region (default: from every node)
  --json         print the summary as one JSON object, the last line of stdout
  --report DIR   write DIR/<scenario>-real-seed<N>.md and .svg (chart of admissions vs limit)
  --keep DIR     keep the run's folder (node logs, identity files, the mesh key) in DIR
  --verbose      add each node's connections, gossipsub mesh and live members to the progress
  --log-level L  level of the nodes' logs in the kept folder (default info)

Spawns one OS process per node, each a real mesh node (libp2p over TCP, a fresh
pre-shared key), drives the scenario's traffic through their limiters, injects its
partitions, SIGKILLs and restarts, and audits every node's counters. Exit code 0 when
every invariant holds, 1 when one fails or a node process fails, 2 on a usage error.`

class UsageError extends Error {}

interface Args extends RealRunOptions {
  scenario: string
  json: boolean
  report?: string
}

function parseArgs (argv: string[]): Args {
  const a: Args = { scenario: 'real-smoke', json: false }
  const value = (i: number, flag: string): string => {
    const v = argv[i]
    if (v === undefined) throw new UsageError(`${flag} needs a value`)
    return v
  }
  const ms = (raw: string, flag: string, min: number): number => {
    const x = /^\d+$/.test(raw) ? Number(raw) : parseDuration(raw)
    if (x === undefined || !(x >= min)) throw new UsageError(`${flag} must be a duration of at least ${min} ms ("10s", "500ms" or ms), got ${raw}`)
    return x
  }
  const int = (raw: string, flag: string, min: number, max: number): number => {
    const n = Number(raw)
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag} must be an integer from ${min} to ${max}, got ${raw}`)
    return n
  }
  let named = false
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i]
    if (v === '--json') a.json = true
    else if (v === '--netns') a.netns = true
    else if (v === '--nodes') a.nodes = int(value(++i, v), v, 1, 64)
    else if (v === '--seed') a.seed = int(value(++i, v), v, 0, 2 ** 32 - 1)
    else if (v === '--duration') a.durationMs = ms(value(++i, v), v, 100)
    else if (v === '--quiet') a.quietMs = ms(value(++i, v), v, 0)
    else if (v === '--rate') {
      const r = Number(value(++i, v))
      if (!(r > 0) || !Number.isFinite(r)) throw new UsageError(`--rate must be a positive number of requests per second, got ${argv[i]}`)
      a.rate = r
    } else if (v === '--seeds') a.seedsPerRegion = int(value(++i, v), v, 1, 64)
    else if (v === '--report') a.report = value(++i, v)
    else if (v === '--keep') a.keepDir = resolve(value(++i, v))
    else if (v === '--log-level') a.logLevel = value(++i, v)
    else if (v === '--verbose') a.verbose = true
    else if (v.startsWith('--')) throw new UsageError(`unknown option ${v}`)
    else if (!named) {
      a.scenario = v
      named = true
    } else throw new UsageError(`unexpected argument ${v}`)
  }
  return a
}

/** The first `chaos/<sub>` folder found walking up from this module (the source tree, or above dist/). */
function findDir (sub: string): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let up = 0; up < 5; up++) {
    const candidate = join(dir, 'chaos', sub)
    if (existsSync(candidate)) return candidate
    dir = dirname(dir)
  }
  return join(process.cwd(), 'chaos', sub)
}

/** A scenario with the policy document as written (node processes get the document, not the validated set). */
export function loadRealScenario (ref: string): { scenario: Scenario, policies: PolicyDocument, file: string } {
  const candidates = [resolve(ref), ...['real/scenarios', 'scenarios'].flatMap(sub => ['.yaml', '.yml', '.json'].map(ext => join(findDir(sub), ref + ext)))]
  const file = candidates.find(f => existsSync(f) && extname(f) !== '')
  if (file === undefined) throw new UsageError(`no scenario ${ref}: not a file, and not one of chaos/real/scenarios/*.yaml or chaos/scenarios/*.yaml`)
  const text = readFileSync(file, 'utf8')
  const scenario = parseScenario(text, basename(file, extname(file)))
  return { scenario, policies: (parseYaml(text) as { policies: PolicyDocument }).policies, file }
}

/** The real-mode lines of the human summary. */
export function realLines (s: RealSummary): string[] {
  const r = s.real
  const lines = [
    `real mode (${r.mode}): ${r.processes} node processes, started in ${r.startMs} ms, mesh formed ${r.formedMs === null ? 'never' : `in ${r.formedMs} ms`}; staleness used by the bound ${r.stalenessMs} ms`,
    `traffic: ${s.requests} requests answered, ${s.unserved} unserved (${r.lostInFlight} lost in flight to killed nodes); counters payload ${r.countersPayloadBytesPerNodePerSec} B/s per node${r.wireBytesPerNodePerSec === null ? '' : `, ${r.wireBytesPerNodePerSec} B/s on the wire`}`
  ]
  for (const p of r.partitions) {
    lines.push(`partition at ${p.atMs} ms ${p.sides.map(g => `[${g.join(',')}]`).join(' | ')}: membership saw it ${p.detectedMs === null ? 'never' : `after ${p.detectedMs} ms`}${p.healAtMs === null ? ', never healed' : `, healed at ${p.healAtMs} ms, all alive again ${p.rejoinedMs === null ? 'never' : `${p.rejoinedMs} ms later`}`}`)
  }
  for (const x of r.restarts) {
    lines.push(`restart of node ${x.node}: ${x.before} -> ${x.after ?? 'never ready'}, ready in ${x.readyMs ?? '-'} ms (pulled ${x.startupSync?.merged ?? 0} entries from ${x.startupSync?.peers ?? 0} peers), caught up ${x.caughtUpMs === null ? 'never' : `${x.caughtUpMs} ms after ready`}`)
  }
  for (const f of r.nodeFailures) lines.push(`NODE FAILURE ${f}`)
  return lines
}

export const chaosRealCommand: CliCommand = {
  summary: 'run a chaos scenario on real node processes (libp2p on 127.0.0.1 or network namespaces)',
  usage: USAGE,
  async run (argv, io) {
    let args: Args
    let loaded: ReturnType<typeof loadRealScenario>
    try {
      if (argv.includes('--help') || argv.includes('-h')) {
        io.out(USAGE)
        return 0
      }
      args = parseArgs(argv)
      loaded = loadRealScenario(args.scenario)
    } catch (err) {
      if (err instanceof UsageError || err instanceof MeshlimitError) {
        io.err(`chaos:real: ${err.message}`)
        if (err instanceof UsageError) io.err(USAGE)
        return 2
      }
      throw err
    }
    let result
    try {
      result = await runReal(loaded.scenario, loaded.policies, { ...args, onProgress: io.env.CHAOS_PROGRESS === '0' ? undefined : line => { io.err(line) } })
    } catch (err) {
      if (err instanceof MeshlimitError) {
        io.err(`chaos:real: ${err.message}`)
        return 2
      }
      io.err(`chaos:real: ${err instanceof Error ? err.message : String(err)}`)
      return 1
    }
    const { summary, series, markers } = result
    for (const line of [...humanSummary(summary), ...realLines(summary)]) (args.json ? io.err : io.out)(line)
    if (args.report !== undefined) {
      const cmd = `npm run chaos:real -- ${argv.join(' ')}`
      const md = await writeReport(args.report, { ...loaded.scenario, name: `${loaded.scenario.name}-real` }, summary, series, markers, cmd)
      ;(args.json ? io.err : io.out)(`report: ${md}`)
    }
    if (args.json) io.out(JSON.stringify(summary))
    return summary.violations.length > 0 || summary.real.nodeFailures.length > 0 ? 1 : 0
  }
}

// Run as a program (node dist/chaos/real/cli.js ...), not when imported by tests.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const io: CliIO = { out: line => { process.stdout.write(line + '\n') }, err: line => { process.stderr.write(line + '\n') }, env: process.env }
  chaosRealCommand.run(process.argv.slice(2), io).then(code => { process.exitCode = code }, (err: unknown) => {
    process.stderr.write(`chaos:real: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exitCode = 1
  })
}
