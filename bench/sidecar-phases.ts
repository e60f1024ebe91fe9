/**
 * bench:sidecar's phases against one server (the sidecar or the floor): warm-up,
 * saturation and fixed rate per API with autocannon, our gRPC client loop or h2load, and
 * what the server reports of itself (CPU per request from /proc, event-loop delay and
 * stalls from its /metrics). bench/sidecar.ts starts the servers and writes the result.
 */
import { readFileSync } from 'node:fs'
import autocannon from 'autocannon'
import { seededRandom } from '../src/index.js'
import { grpcRun, type GrpcRun } from './sidecar-grpc.js'
import { latencies, round3, type Latencies } from './stats.js'
import { h2loadGrpcRun, h2loadHttpRun, type H2loadOptions, type H2loadRun } from './sidecar-h2load.js'
import type { Args } from './sidecar-args.js'
import { pacedHttpRun } from './sidecar-http.js'

const log = (s: string): void => { process.stderr.write(s + '\n') }

export function bodies (users: number): string[] {
  const rnd = seededRandom(11)
  return Array.from({ length: 1 << 16 }, () => JSON.stringify({ descriptor: { user: `u${Math.floor(rnd() * users)}` } }))
}

interface HttpRun { reqPerSec: number, p50Ms: number, p99Ms: number, p999Ms: number, maxMs: number, autocannonP99Ms: number, non2xx: number, errors: number, timeouts: number, offered: number | null }

/** A fixed-rate HTTP phase (paced generator): latencies from the send and from the schedule. */
export interface FixedHttpRun extends Latencies { reqPerSec: number, autocannonP99Ms: number | null, scheduledP99Ms: number | null, clientLoopMaxMs: number | null, non2xx: number, errors: number }

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
export const h2loadRuns: Record<string, H2loadRun> = {}

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
export async function httpPhase (phase: string, url: string, a: Args, h2: H2loadOptions | undefined, rate: number | undefined, durationS: number, sidecar: boolean): Promise<FixedHttpRun> {
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

/** Stalls of a server between two scrapes (NaN without --stall-watch). */
function stallsBetween (before: ServerLoop, after: ServerLoop): Record<string, number> {
  const d = (k: keyof ServerLoop): number => round3(after[k] - before[k])
  return { gcStalls: d('gcStalls'), gcStallMs: d('gcStallMs'), taskStalls: d('taskStalls'), taskStallMs: d('taskStallMs'), waitStalls: d('waitStalls'), waitStallMs: d('waitStallMs') }
}

/** Seconds of warm-up before each server's phases. */
export const warmS = (a: Args): number => Math.max(1, Math.min(3, a.durationS / 3))

/** A server under test: the sidecar, or the floor (bench/floor-server.ts: no limiter behind the same servers). */
export interface Target { name: '' | 'floor', http: string, grpc: string, pid: number | undefined, sidecar: boolean }

/** What one server's phases measured: saturation and fixed rate per API, the server's CPU per request and (sidecar only) its event loop. */
export interface ApiRuns {
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
export async function apiPhases (t: Target, a: Args, h2: H2loadOptions | undefined, want: (phase: string) => boolean): Promise<ApiRuns> {
  const warm = warmS(a)
  const label = t.sidecar ? '' : `${t.name}: `
  const none: FixedHttpRun = { reqPerSec: NaN, p50Ms: NaN, p99Ms: NaN, p999Ms: NaN, maxMs: NaN, autocannonP99Ms: NaN, scheduledP99Ms: null, clientLoopMaxMs: null, non2xx: 0, errors: 0 }
  const noGrpc: GrpcRun = { reqPerSec: NaN, p50Ms: NaN, p99Ms: NaN, p999Ms: NaN, maxMs: NaN, scheduledP99Ms: NaN, clientLoopP99Ms: NaN, clientLoopMaxMs: NaN, slowCalls: 0, slowWindows: 0, errors: 0, offered: null }
  const r: ApiRuns = {
    grpcSat: noGrpc,
    grpcFixed: noGrpc,
    httpSat: none,
    httpFixed: none,
    grpcServerCpuUs: NaN,
    httpServerCpuUs: NaN,
    grpcServerLoop: NO_LOOP,
    httpServerLoop: NO_LOOP,
    grpcStalls: stallsBetween(NO_LOOP, NO_LOOP),
    httpStalls: stallsBetween(NO_LOOP, NO_LOOP)
  }
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
