/**
 * Sidecar benchmark: the decision API over HTTP and the Envoy rate limit service over
 * gRPC, each at saturation and at a fixed offered rate, against the same decision API
 * backed by a Redis token bucket (a Lua script per decision, as central-store limiters
 * do it) on a real redis-server on loopback.
 *
 *   npm run bench:sidecar -- [--json] [--no-saturation] [--duration S] [--http-rate N] [--grpc-rate N]
 *                            [--connections N] [--rate-connections N] [--users N] [--no-redis] [--no-floor]
 *                            [--only grpc|http|redis] [--pin] [--http-paced] [--sidecar-cli PATH]
 *                            [--sidecar-node-args "ARGS"] [--stall-watch MS] [--grpc-max-streams N]
 *                            [--generator node|h2load] [--h2load-keys K] [--h2load-processes P]
 *                            [--h2load-pacing rps|script]
 *                            [--h2load-grpc-clients N] [--h2load-streams N] [--h2load-http-clients N]
 *
 * `--generator h2load` drives every phase with h2load (nghttp2-client, native: it does
 * not stall like our node generators) instead of autocannon and the gRPC client loop;
 * see bench/sidecar-h2load.ts. It posts one body per process, so it spreads its load
 * over `--h2load-keys` users (default 1) where the node generators use `--users`.
 *
 * The floor (`baselines.floor*`, skip with `--no-floor`): after the sidecar, the same
 * phases against bench/floor-server.ts, node's HTTP server and grpc-js serving the same
 * requests with the sidecar's answer and no limiter behind them. Its latency is what the
 * sidecar's would be if meshlimit cost nothing on this machine, so `ratios.*VsFloor`
 * say what meshlimit adds, and a floor above a target says the target is the
 * platform's (node, grpc-js, two shared cores), not ours.
 *
 * `--sidecar-cli` runs another build's CLI (main's dist) under the same load generators,
 * for back-to-back comparisons; `--sidecar-node-args` passes node/V8 flags to the sidecar
 * (`--trace-gc`, `--cpu-prof`...; its extra stdout lines are copied to stderr).
 *
 * Stalls are located, not guessed: every fixed-rate phase reports the sidecar's
 * event-loop delay (p99, max, from its /metrics, which reset at each scrape) and this
 * process's own (the generator's lateness would otherwise look like server latency),
 * and for gRPC how many calls took over 5 ms and in how many 50 ms windows they fell.
 * `--stall-watch MS` runs the sidecar (and the floor) with MESHLIMIT_STALL_WATCH_MS=MS: its stalls of MS
 * or more are then split into collection pauses, long tasks and waits for a CPU.
 * `--grpc-max-streams N` runs it with MESHLIMIT_GRPC_MAX_STREAMS=N (calls in flight per
 * connection; the generator's session then queues the rest).
 *
 * Saturation phases keep `connections` requests in flight (HTTP connections, gRPC
 * calls); fixed-rate phases offer `--http-rate` / `--grpc-rate` requests per second
 * over `rate-connections` connections (calls in flight are then whatever the rate needs).
 *
 * The sidecar and the Redis baseline run in child processes; the load generators
 * (autocannon for HTTP, or with --http-paced our paced client for the fixed rate,
 * since autocannon's rate is a per-second budget sent in bursts; a gRPC client loop)
 * run in this one (`--pin`: servers on CPU 0,
 * this process on CPU 1). Installs redis-server with
 * apt-get when it is missing. The last stdout line is one JSON object.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { seededRandom } from '../src/index.js'
import { grpcRun, type GrpcRun } from './sidecar-grpc.js'
import { latencies, round3, type Latencies } from './stats.js'
import { h2loadGrpcRun, h2loadHttpRun, requireH2load, type H2loadOptions, type H2loadRun } from './sidecar-h2load.js'
import { parseArgs, type Args } from './sidecar-args.js'
import { pacedHttpRun } from './sidecar-http.js'

const log = (s: string): void => { process.stderr.write(s + '\n') }
const dist = (rel: string): string => fileURLToPath(new URL(rel, import.meta.url))

/** Same limit on both sides: a token bucket of 100 per second, burst 100, per user. */
const POLICIES = `policies:
  - id: per-user
    key: user
    limits: [ { algorithm: token-bucket, ratePerSecond: 100, burst: 100 } ]
`

/**
 * With --pin, servers (sidecar, Redis and its front end) run on CPU 0 and this process
 * (the load generators) on CPU 1, so a server's latency is not the generator's queueing
 * (needs taskset, util-linux).
 */
let pinned = false
const onServerCpu = (cmd: string, args: string[]): [string, string[]] => pinned ? ['taskset', ['-c', '0', cmd, ...args]] : [cmd, args]

/** Spawns a child and resolves with the first JSON line it prints on stdout. */
async function startChild (args: string[], env?: Record<string, string>): Promise<{ child: ChildProcess, ready: Record<string, string> }> {
  const [cmd, argv] = onServerCpu(process.execPath, args)
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  const ready = await new Promise<Record<string, string>>((resolve, reject) => {
    const t = setTimeout(() => { reject(new Error(`${args.join(' ')} did not start within 20 s`)) }, 20_000)
    child.once('exit', code => { clearTimeout(t); reject(new Error(`${args.join(' ')} exited with ${String(code)}`)) })
    let started = false
    // Lines other than the ready line (--trace-gc output through --sidecar-node-args) go to stderr.
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', line => {
      if (started || !line.startsWith('{')) { log(`[child] ${line}`); return }
      started = true
      clearTimeout(t)
      resolve(JSON.parse(line) as Record<string, string>)
    })
  })
  return { child, ready }
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  await new Promise<void>(resolve => {
    child.once('exit', () => { resolve() })
    child.kill('SIGTERM')
    setTimeout(() => { child.kill('SIGKILL') }, 5000).unref()
  })
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => { resolve(port) })
    })
  })
}

function bodies (users: number): string[] {
  const rnd = seededRandom(11)
  return Array.from({ length: 1 << 16 }, () => JSON.stringify({ descriptor: { user: `u${Math.floor(rnd() * users)}` } }))
}

interface HttpRun { reqPerSec: number, p50Ms: number, p99Ms: number, p999Ms: number, maxMs: number, autocannonP99Ms: number, non2xx: number, errors: number, timeouts: number, offered: number | null }

/** A fixed-rate HTTP phase (paced generator): latencies from the send and from the schedule. */
interface FixedHttpRun extends Latencies { reqPerSec: number, autocannonP99Ms: number | null, scheduledP99Ms: number | null, clientLoopMaxMs: number | null, non2xx: number, errors: number }

/**
 * The fixed-rate phase over `rateConnections` connections: autocannon (default), whose
 * rate is a per-second budget each connection sends back to back, or with --http-paced
 * our paced client (a request every 1 / rate, latency also from the schedule).
 */
async function fixedHttpRun (url: string, a: Args): Promise<FixedHttpRun> {
  if (a.httpPaced) return { ...await pacedHttpRun(url, '/v1/check', bodies(a.users), a.httpRate, a.durationS, a.rateConnections), autocannonP99Ms: null }
  return { ...await httpRun(url, a, a.httpRate, a.durationS), scheduledP99Ms: null, clientLoopMaxMs: null }
}

/** One autocannon run against POST /v1/check; latencies of every response are kept at full resolution. */
async function httpRun (url: string, a: Args, rate: number | undefined, durationS: number): Promise<HttpRun> {
  const bs = bodies(a.users)
  let i = 0
  const times: number[] = []
  let finish!: (r: autocannon.Result) => void
  let fail!: (e: unknown) => void
  const done = new Promise<autocannon.Result>((resolve, reject) => { finish = resolve; fail = reject })
  const instance = autocannon({
    url: `${url}/v1/check`,
    connections: rate === undefined ? a.connections : a.rateConnections,
    duration: durationS,
    overallRate: rate,
    requests: [{
      method: 'POST',
      path: '/v1/check',
      headers: { 'content-type': 'application/json' },
      setupRequest: req => ({ ...req, body: bs[i++ & 0xffff] })
    }]
  }, (err, result) => { if (err !== null && err !== undefined) fail(err); else finish(result) })
  instance.on('response', (_client: unknown, _status: number, _bytes: number, responseTime: number) => { times.push(responseTime) })
  const r = await done
  const sorted = Float64Array.from(times).sort()
  return {
    reqPerSec: Math.round(r.requests.average),
    ...latencies(sorted),
    autocannonP99Ms: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    offered: rate ?? null
  }
}

/** h2load's runs of this bench by phase (grpcSaturation, grpcFixed, httpFixed...), for the JSON line and the exact request counts (a script-paced run can outlast its duration). */
const h2loadRuns: Record<string, H2loadRun> = {}

function logH2load (phase: string, r: H2loadRun): void {
  log(`h2load ${phase}: ${r.connections} connections${r.pacing === null ? '' : `, ${r.pacing} pacing`}, ${r.succeeded} requests checked against ${Number.isNaN(r.serverDecisions) ? 'their 2xx answers' : `${r.serverDecisions} sidecar decisions`}; achieved ${r.achievedPerSec}/s (h2load: ${r.h2loadReqPerSec}/s), p50 ${r.p50Ms} / p99 ${r.p99Ms} / p99.9 ${r.p999Ms} / max ${r.maxMs} ms; at most ${r.maxInFlight} in flight (${r.streamsPerConnection} streams per connection${r.clientIntervalMs === null ? '' : `, a request every ${r.clientIntervalMs} ms per connection`}), starts at most ${r.startLagMaxMs} ms behind an even schedule and at most ${r.maxStartsPerMs} in one ms, p99 from it ${r.scheduledP99Ms} ms`)
}

/** gRPC phase: the node client loop, or h2load. */
async function grpcPhase (phase: string, grpcAddress: string, counters: string | undefined, a: Args, h2: H2loadOptions | undefined, rate: number | undefined, durationS: number): Promise<GrpcRun> {
  if (h2 === undefined) return await grpcRun(grpcAddress, a, rate, durationS)
  const r = await h2loadGrpcRun(grpcAddress, counters, h2, rate, durationS)
  h2loadRuns[phase] = r
  logH2load(phase, r)
  return { reqPerSec: r.achievedPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, p999Ms: r.p999Ms, maxMs: r.maxMs, scheduledP99Ms: r.scheduledP99Ms, clientLoopP99Ms: NaN, clientLoopMaxMs: NaN, slowCalls: r.slowCalls, slowWindows: r.slowWindows, errors: 0, offered: r.offered }
}

/** HTTP phase at saturation (rate undefined) or at a fixed rate: autocannon or our paced client, or h2load; `sidecar`: the sidecar, not the Redis front end. */
async function httpPhase (phase: string, url: string, a: Args, h2: H2loadOptions | undefined, rate: number | undefined, durationS: number, sidecar: boolean): Promise<FixedHttpRun> {
  if (h2 === undefined) {
    if (rate === undefined) return { ...await httpRun(url, a, undefined, durationS), scheduledP99Ms: null, clientLoopMaxMs: null }
    return await fixedHttpRun(url, a)
  }
  const r = await h2loadHttpRun(url, h2, rate, durationS, sidecar)
  h2loadRuns[phase] = r
  logH2load(phase, r)
  return { reqPerSec: r.achievedPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, p999Ms: r.p999Ms, maxMs: r.maxMs, autocannonP99Ms: null, scheduledP99Ms: r.scheduledP99Ms, clientLoopMaxMs: null, non2xx: 0, errors: 0 }
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux; NaN elsewhere). */
function cpuSeconds (pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // utime and stime are fields 14 and 15 of stat, in clock ticks (100 per second on Linux).
    return (Number(f[11]) + Number(f[12])) / 100
  } catch {
    return NaN
  }
}

/**
 * The sidecar's event-loop delay since the previous call (p99, max in ms), read from
 * its /metrics: prom-client resets the delay histogram at every scrape.
 */
async function serverLoop (httpUrl: string): Promise<ServerLoop> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text()
  const read = (name: string): number => {
    const m = new RegExp(`^meshlimit_process_nodejs_eventloop_lag_${name}_seconds (\\S+)$`, 'm').exec(text)
    return m === null ? NaN : round3(Number(m[1]) * 1000)
  }
  const counter = (series: string): number => {
    const i = text.indexOf('\n' + series + ' ')
    return i < 0 ? NaN : Number(text.slice(i + series.length + 2, text.indexOf('\n', i + 1)))
  }
  return {
    p99Ms: read('p99'),
    maxMs: read('max'),
    gcStalls: counter('meshlimit_event_loop_stalls_total{cause="gc"}'),
    taskStalls: counter('meshlimit_event_loop_stalls_total{cause="task"}'),
    waitStalls: counter('meshlimit_event_loop_stalls_total{cause="wait"}'),
    gcStallMs: counter('meshlimit_event_loop_stall_seconds_total{cause="gc"}') * 1000,
    taskStallMs: counter('meshlimit_event_loop_stall_seconds_total{cause="task"}') * 1000,
    waitStallMs: counter('meshlimit_event_loop_stall_seconds_total{cause="wait"}') * 1000
  }
}

interface ServerLoop { p99Ms: number, maxMs: number, gcStalls: number, taskStalls: number, waitStalls: number, gcStallMs: number, taskStallMs: number, waitStallMs: number }

/** Stalls of the sidecar between two scrapes (NaN without --stall-watch). */
function stallsBetween (before: ServerLoop, after: ServerLoop): Record<string, number> {
  const d = (k: keyof ServerLoop): number => round3(after[k] - before[k])
  return { gcStalls: d('gcStalls'), gcStallMs: d('gcStallMs'), taskStalls: d('taskStalls'), taskStallMs: d('taskStallMs'), waitStalls: d('waitStalls'), waitStallMs: d('waitStallMs') }
}

function ensureRedis (): string {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim()
  if (found !== '') return found
  log('redis-server is missing: apt-get install -y redis-server')
  const r = spawnSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server'], { stdio: 'inherit' })
  if (r.status !== 0) throw new Error('could not install redis-server; install it or pass --no-redis')
  return spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim()
}

/** Seconds of warm-up before each server's phases. */
const warmS = (a: Args): number => Math.max(1, Math.min(3, a.durationS / 3))

/** A server under test: the sidecar, or the floor (bench/floor-server.ts: no limiter behind the same servers). */
interface Target { name: '' | 'floor', http: string, grpc: string, pid: number | undefined, sidecar: boolean }

/** What one server's phases measured: saturation and fixed rate per API, the server's CPU per request and (sidecar only) its event loop. */
interface ApiRuns {
  grpcSat: GrpcRun
  grpcFixed: GrpcRun
  httpSat: FixedHttpRun
  httpFixed: FixedHttpRun
  /** The server's CPU time per request at the fixed rate: what the load on the machine changes least. */
  grpcServerCpuUs: number
  httpServerCpuUs: number
  grpcServerLoop: ServerLoop
  httpServerLoop: ServerLoop
  grpcStalls: Record<string, number>
  httpStalls: Record<string, number>
}

const NO_LOOP: ServerLoop = { p99Ms: NaN, maxMs: NaN, gcStalls: NaN, taskStalls: NaN, waitStalls: NaN, gcStallMs: NaN, taskStallMs: NaN, waitStallMs: NaN }

/** The prefix of a target's phase names (h2load's runs are keyed by them). */
const phaseName = (t: Target, phase: string): string => t.name === '' ? phase : t.name + phase[0].toUpperCase() + phase.slice(1)

/** Runs the wanted APIs' phases against one server: warm-up, saturation (unless --no-saturation), fixed rate. */
async function apiPhases (t: Target, a: Args, h2: H2loadOptions | undefined, want: (phase: string) => boolean): Promise<ApiRuns> {
  const warm = warmS(a)
  const label = t.sidecar ? '' : `${t.name}: `
  const none: FixedHttpRun = { reqPerSec: NaN, p50Ms: NaN, p99Ms: NaN, p999Ms: NaN, maxMs: NaN, autocannonP99Ms: NaN, scheduledP99Ms: null, clientLoopMaxMs: null, non2xx: 0, errors: 0 }
  const r: ApiRuns = {
    grpcSat: { reqPerSec: NaN, p50Ms: NaN, p99Ms: NaN, p999Ms: NaN, maxMs: NaN, scheduledP99Ms: NaN, clientLoopP99Ms: NaN, clientLoopMaxMs: NaN, slowCalls: 0, slowWindows: 0, errors: 0, offered: null },
    grpcFixed: undefined as unknown as GrpcRun,
    httpSat: none,
    httpFixed: none,
    grpcServerCpuUs: NaN,
    httpServerCpuUs: NaN,
    grpcServerLoop: NO_LOOP,
    httpServerLoop: NO_LOOP,
    grpcStalls: stallsBetween(NO_LOOP, NO_LOOP),
    httpStalls: stallsBetween(NO_LOOP, NO_LOOP)
  }
  r.grpcFixed = r.grpcSat
  // Both servers answer the sidecar's event-loop series on /metrics (the floor's own, see bench/floor-server.ts).
  const loop = async (): Promise<ServerLoop> => await serverLoop(t.http)
  // The sidecar's decision counters check h2load's runs; the floor has none.
  const counters = t.sidecar ? t.http : undefined
  // gRPC first: its client loop in this process runs before autocannon has loaded it.
  if (want('grpc')) {
    // --no-saturation: warm up at the fixed rate and skip saturation, whose burst leaves the
    // server's heap (and young generation) sized differently for the fixed-rate phase.
    await grpcPhase(phaseName(t, 'grpcWarmUp'), t.grpc, counters, a, h2, a.saturation ? undefined : a.grpcRate, warm)
    if (a.saturation) {
      r.grpcSat = await grpcPhase(phaseName(t, 'grpcSaturation'), t.grpc, counters, a, h2, undefined, a.durationS)
      log(`${label}gRPC saturation: ${r.grpcSat.reqPerSec} req/s, p99 ${r.grpcSat.p99Ms} ms`)
    }
    const before = await loop()
    const cpu = cpuSeconds(t.pid)
    const phase = phaseName(t, 'grpcFixed')
    r.grpcFixed = await grpcPhase(phase, t.grpc, counters, a, h2, a.grpcRate, a.durationS)
    r.grpcServerCpuUs = round3((cpuSeconds(t.pid) - cpu) * 1e6 / (h2loadRuns[phase]?.succeeded ?? r.grpcFixed.reqPerSec * a.durationS))
    // Stalls end up classified 50 ms after they end.
    await new Promise(resolve => setTimeout(resolve, 100))
    r.grpcServerLoop = await loop()
    r.grpcStalls = stallsBetween(before, r.grpcServerLoop)
    if (a.stallWatchMs > 0) log(`${label}gRPC at ${a.grpcRate}/s: server stalls of ${a.stallWatchMs} ms or more: ${r.grpcStalls.gcStalls} collections (${r.grpcStalls.gcStallMs} ms), ${r.grpcStalls.taskStalls} long tasks (${r.grpcStalls.taskStallMs} ms), ${r.grpcStalls.waitStalls} waits for a CPU (${r.grpcStalls.waitStallMs} ms)`)
    log(`${label}gRPC at ${a.grpcRate}/s: server event-loop delay p99 ${r.grpcServerLoop.p99Ms} ms, max ${r.grpcServerLoop.maxMs} ms; generator's p99 ${r.grpcFixed.clientLoopP99Ms} ms, max ${r.grpcFixed.clientLoopMaxMs} ms; ${r.grpcFixed.slowCalls} calls over 5 ms in ${r.grpcFixed.slowWindows} windows of 50 ms`)
    log(`${label}gRPC at ${a.grpcRate}/s offered: ${r.grpcFixed.reqPerSec} req/s, p50 ${r.grpcFixed.p50Ms} ms, p99 ${r.grpcFixed.p99Ms} ms (from the scheduled time: ${r.grpcFixed.scheduledP99Ms} ms), server CPU ${r.grpcServerCpuUs} us per call`)
  }
  if (want('http')) {
    await httpPhase(phaseName(t, 'httpWarmUp'), t.http, a, h2, a.saturation ? undefined : a.httpRate, warm, t.sidecar)
    if (a.saturation) r.httpSat = await httpPhase(phaseName(t, 'httpSaturation'), t.http, a, h2, undefined, a.durationS, t.sidecar)
    log(`${label}HTTP saturation: ${r.httpSat.reqPerSec} req/s, p99 ${r.httpSat.p99Ms} ms`)
    const before = await loop()
    const cpu = cpuSeconds(t.pid)
    const phase = phaseName(t, 'httpFixed')
    r.httpFixed = await httpPhase(phase, t.http, a, h2, a.httpRate, a.durationS, t.sidecar)
    r.httpServerCpuUs = round3((cpuSeconds(t.pid) - cpu) * 1e6 / (h2loadRuns[phase]?.succeeded ?? r.httpFixed.reqPerSec * a.durationS))
    await new Promise(resolve => setTimeout(resolve, 100))
    r.httpServerLoop = await loop()
    r.httpStalls = stallsBetween(before, r.httpServerLoop)
    if (a.stallWatchMs > 0) log(`${label}HTTP at ${a.httpRate}/s: server stalls of ${a.stallWatchMs} ms or more: ${r.httpStalls.gcStalls} collections (${r.httpStalls.gcStallMs} ms), ${r.httpStalls.taskStalls} long tasks (${r.httpStalls.taskStallMs} ms), ${r.httpStalls.waitStalls} waits for a CPU (${r.httpStalls.waitStallMs} ms)`)
    log(`${label}HTTP at ${a.httpRate}/s: server event-loop delay p99 ${r.httpServerLoop.p99Ms} ms, max ${r.httpServerLoop.maxMs} ms`)
    log(`${label}HTTP at ${a.httpRate}/s offered: ${r.httpFixed.reqPerSec} req/s, p50 ${r.httpFixed.p50Ms} ms, p99 ${r.httpFixed.p99Ms} ms (autocannon, CO-corrected, 1 ms resolution: ${r.httpFixed.autocannonP99Ms ?? '-'} ms; paced, from the scheduled time: ${r.httpFixed.scheduledP99Ms ?? '-'} ms), server CPU ${r.httpServerCpuUs} us per request`)
  }
  return r
}

async function main (): Promise<void> {
  const a = parseArgs(process.argv.slice(2))
  if (a.generator === 'h2load') requireH2load()
  if (a.pin) {
    // Every thread of this process (load generators) to CPU 1; servers go to CPU 0.
    const r = spawnSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`--pin needs taskset and 2 CPUs: ${r.stderr ?? r.error?.message ?? ''}`)
    pinned = true
  }
  const dir = mkdtempSync(join(tmpdir(), 'meshlimit-bench-'))
  const policyFile = join(dir, 'policies.yaml')
  writeFileSync(policyFile, POLICIES)
  const h2: H2loadOptions | undefined = a.generator === 'h2load'
    ? { dir, keys: a.h2loadKeys, processes: a.h2loadProcesses, grpcClients: a.h2loadGrpcClients, grpcPacing: a.h2loadPacing, streams: a.h2loadStreams, httpClients: a.h2loadHttpClients, connections: a.connections }
    : undefined
  const children: ChildProcess[] = []
  const cleanup = async (): Promise<void> => { await Promise.all(children.map(stopChild)) }
  // Whatever ends this process (an uncaught error included), no server outlives it.
  process.on('exit', () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL') })
  try {
    log(`sidecar bench: ${a.durationS} s per phase, ${a.connections} connections, ${h2 === undefined ? `${a.users} users` : `h2load, ${h2.keys} user(s)`}; offered rates HTTP ${a.httpRate}/s, gRPC ${a.grpcRate}/s`)
    const side = await startChild([...a.sidecarNodeArgs, a.sidecarCli ?? dist('../src/cli/index.js'), 'start', '--port', '0', '--grpc-port', '0', '--no-admin', '--no-escalation', '--log-level', 'silent', '--policies', policyFile], {
      ...(a.stallWatchMs > 0 ? { MESHLIMIT_STALL_WATCH_MS: String(a.stallWatchMs) } : {}),
      ...(a.grpcMaxStreams > 0 ? { MESHLIMIT_GRPC_MAX_STREAMS: String(a.grpcMaxStreams) } : {})
    })
    children.push(side.child)
    const want = (phase: string): boolean => a.only === undefined || a.only === phase
    const ours = await apiPhases({ name: '', http: side.ready.http, grpc: side.ready.grpc, pid: side.child.pid, sidecar: true }, a, h2, want)
    const answerFile = join(dir, 'answer.json')
    writeFileSync(answerFile, JSON.stringify({ http: await (await fetch(`${side.ready.http}/v1/check`, { method: 'POST', body: bodies(1)[0] })).text() }))
    await stopChild(side.child)

    let floor: ApiRuns | undefined
    if (a.floor && (want('grpc') || want('http'))) {
      const f = await startChild([dist('./floor-server.js'), answerFile], a.stallWatchMs > 0 ? { MESHLIMIT_STALL_WATCH_MS: String(a.stallWatchMs) } : undefined)
      children.push(f.child)
      floor = await apiPhases({ name: 'floor', http: f.ready.http, grpc: f.ready.grpc, pid: f.child.pid, sidecar: false }, a, h2, want)
      await stopChild(f.child)
    }

    let redis: { sat: FixedHttpRun, fixed: FixedHttpRun } | undefined
    if (a.redis && want('redis')) {
      const bin = ensureRedis()
      const port = await freePort()
      const [rcmd, rargs] = onServerCpu(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'])
      const server = spawn(rcmd, rargs, { stdio: 'ignore' })
      children.push(server)
      await new Promise(resolve => setTimeout(resolve, 500))
      const base = await startChild([dist('./redis-baseline.js'), String(port)])
      children.push(base.child)
      await httpPhase('redisWarmUp', base.ready.http, a, h2, undefined, warmS(a), false)
      const sat = await httpPhase('redisSaturation', base.ready.http, a, h2, undefined, a.durationS, false)
      log(`Redis baseline saturation: ${sat.reqPerSec} req/s, p99 ${sat.p99Ms} ms`)
      const fixed = await httpPhase('redisFixed', base.ready.http, a, h2, a.httpRate, a.durationS, false)
      log(`Redis baseline at ${a.httpRate}/s offered: ${fixed.reqPerSec} req/s, p50 ${fixed.p50Ms} ms, p99 ${fixed.p99Ms} ms (autocannon: ${fixed.autocannonP99Ms ?? '-'} ms; paced, from the scheduled time: ${fixed.scheduledP99Ms ?? '-'} ms)`)
      redis = { sat, fixed }
    }
    const result = {
      bench: 'sidecar',
      node: process.version,
      pinned,
      generator: a.generator,
      durationS: a.durationS,
      connections: a.connections,
      rateConnections: a.rateConnections,
      users: h2 === undefined ? a.users : h2.keys,
      httpReqPerSec: ours.httpSat.reqPerSec,
      httpP99Ms: ours.httpFixed.p99Ms,
      httpOfferedRate: a.httpRate,
      httpAchievedRate: ours.httpFixed.reqPerSec,
      httpP50Ms: ours.httpFixed.p50Ms,
      httpP999Ms: ours.httpFixed.p999Ms,
      httpMaxMs: ours.httpFixed.maxMs,
      httpPaced: a.httpPaced,
      httpAutocannonP99Ms: ours.httpFixed.autocannonP99Ms,
      httpScheduledP99Ms: ours.httpFixed.scheduledP99Ms,
      httpClientLoopMaxMs: ours.httpFixed.clientLoopMaxMs,
      httpSaturationP99Ms: ours.httpSat.p99Ms,
      grpcReqPerSec: ours.grpcSat.reqPerSec,
      grpcP99Ms: ours.grpcFixed.p99Ms,
      grpcOfferedRate: a.grpcRate,
      grpcAchievedRate: ours.grpcFixed.reqPerSec,
      grpcP50Ms: ours.grpcFixed.p50Ms,
      grpcP999Ms: ours.grpcFixed.p999Ms,
      grpcMaxMs: ours.grpcFixed.maxMs,
      grpcScheduledP99Ms: ours.grpcFixed.scheduledP99Ms,
      grpcSaturationP99Ms: ours.grpcSat.p99Ms,
      grpcServerCpuUsPerCall: ours.grpcServerCpuUs,
      grpcServerLoopP99Ms: ours.grpcServerLoop.p99Ms,
      grpcServerLoopMaxMs: ours.grpcServerLoop.maxMs,
      grpcClientLoopMaxMs: ours.grpcFixed.clientLoopMaxMs,
      grpcSlowCalls: ours.grpcFixed.slowCalls,
      grpcSlowWindows: ours.grpcFixed.slowWindows,
      httpServerCpuUsPerRequest: ours.httpServerCpuUs,
      httpServerLoopP99Ms: ours.httpServerLoop.p99Ms,
      httpServerLoopMaxMs: ours.httpServerLoop.maxMs,
      grpcStalls: a.stallWatchMs > 0 ? ours.grpcStalls : null,
      httpStalls: a.stallWatchMs > 0 ? ours.httpStalls : null,
      h2load: h2 === undefined ? null : h2loadRuns,
      errors: ours.httpSat.errors + ours.httpFixed.errors + ours.grpcSat.errors + ours.grpcFixed.errors,
      baselines: redis === undefined && floor === undefined
        ? null
        : {
            ...(redis === undefined
              ? {}
              : {
                  redisReqPerSec: redis.sat.reqPerSec,
                  redisP99Ms: redis.fixed.p99Ms,
                  redisP999Ms: redis.fixed.p999Ms,
                  redisMaxMs: redis.fixed.maxMs,
                  redisAchievedRate: redis.fixed.reqPerSec,
                  redisAutocannonP99Ms: redis.fixed.autocannonP99Ms,
                  redisScheduledP99Ms: redis.fixed.scheduledP99Ms,
                  redisSaturationP99Ms: redis.sat.p99Ms
                }),
            ...(floor === undefined
              ? {}
              : {
                  floorHttpReqPerSec: floor.httpSat.reqPerSec,
                  floorHttpAchievedRate: floor.httpFixed.reqPerSec,
                  floorHttpP50Ms: floor.httpFixed.p50Ms,
                  floorHttpP99Ms: floor.httpFixed.p99Ms,
                  floorHttpP999Ms: floor.httpFixed.p999Ms,
                  floorHttpMaxMs: floor.httpFixed.maxMs,
                  floorHttpServerCpuUsPerRequest: floor.httpServerCpuUs,
                  floorGrpcReqPerSec: floor.grpcSat.reqPerSec,
                  floorGrpcAchievedRate: floor.grpcFixed.reqPerSec,
                  floorGrpcP50Ms: floor.grpcFixed.p50Ms,
                  floorGrpcP99Ms: floor.grpcFixed.p99Ms,
                  floorGrpcP999Ms: floor.grpcFixed.p999Ms,
                  floorGrpcMaxMs: floor.grpcFixed.maxMs,
                  floorGrpcServerCpuUsPerCall: floor.grpcServerCpuUs,
                  floorHttpServerLoopP99Ms: floor.httpServerLoop.p99Ms,
                  floorGrpcServerLoopP99Ms: floor.grpcServerLoop.p99Ms,
                  floorHttpStalls: a.stallWatchMs > 0 ? floor.httpStalls : null,
                  floorGrpcStalls: a.stallWatchMs > 0 ? floor.grpcStalls : null
                })
          },
      ratios: redis === undefined && floor === undefined
        ? null
        : {
            ...(redis === undefined ? {} : { httpReqPerSecVsRedis: round3(ours.httpSat.reqPerSec / redis.sat.reqPerSec), httpP99VsRedis: round3(ours.httpFixed.p99Ms / redis.fixed.p99Ms) }),
            ...(floor === undefined
              ? {}
              : {
                  httpP99VsFloor: round3(ours.httpFixed.p99Ms / floor.httpFixed.p99Ms),
                  httpCpuVsFloor: round3(ours.httpServerCpuUs / floor.httpServerCpuUs),
                  httpReqPerSecVsFloor: round3(ours.httpSat.reqPerSec / floor.httpSat.reqPerSec),
                  grpcP99VsFloor: round3(ours.grpcFixed.p99Ms / floor.grpcFixed.p99Ms),
                  grpcCpuVsFloor: round3(ours.grpcServerCpuUs / floor.grpcServerCpuUs),
                  grpcReqPerSecVsFloor: round3(ours.grpcSat.reqPerSec / floor.grpcSat.reqPerSec)
                })
          }
    }
    if (!a.json) log(JSON.stringify(result, null, 2))
    process.stdout.write(JSON.stringify(result) + '\n')
  } finally {
    await cleanup()
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:sidecar failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
