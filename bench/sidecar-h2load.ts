/**
 * bench:sidecar's `--generator h2load`: the gRPC and HTTP phases driven by h2load
 * (nghttp2-client) in child processes instead of our node generators, with the same
 * requests. h2load only counts HTTP statuses (a gRPC error is HTTP 200 with a
 * grpc-status trailer), so every run is checked another way: before it, one call with
 * a real client (grpc-js from the proto; fetch) must answer with the expected fields,
 * and the sidecar's decision counters must rise by exactly the requests h2load
 * completed. Any failure, error or non-2xx fails the bench.
 */
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { loadRls } from '../src/sidecar/grpc.js'
import { decodeRlsRequest, type RlsRequest } from '../src/sidecar/rls-codec.js'
import { RLS_PATH, checkRequestBody, decisionsOf, h2loadArgs, latencyOf, pacedPlan, parseH2loadLog, parseH2loadSummary, rlsRequestBody, timingScript, type H2loadLatency, type H2loadPlan, type H2loadSummary } from './h2load.js'

/** The generator's settings (bench:sidecar's --h2load-* flags). */
export interface H2loadOptions {
  /** Where body and log files go. */
  dir: string
  /** Users the load is spread over: h2load posts one fixed body per process, so process i posts user `u<i mod keys>`. */
  keys: number
  /**
   * h2load processes side by side in rps-paced fixed-rate phases (at least `keys`): each
   * process's connections' 10 ms ticks fall into step when it runs late, so several
   * processes keep the bursts smaller. Saturation and script-paced phases run one per key.
   */
  processes: number
  /** Connections per process in the fixed-rate gRPC phase (rps pacing); undefined: one per 100/s (see pacedPlan). */
  grpcClients: number | undefined
  /**
   * How the fixed-rate gRPC phase is paced: `rps`, h2load's --rps over many connections
   * (the rate is kept, catching up after any delay; arrivals bunch in h2load's 10 ms
   * ticks once its connections' ticks fall into step); `script`, one connection per
   * process sending at the times of a timing script, a group every 0.5 ms (even
   * arrivals, but h2load re-arms each wait from when it woke, so its own lateness
   * lowers the rate achieved).
   */
  grpcPacing: 'rps' | 'script'
  /** Streams in flight allowed per gRPC connection at the fixed rate. */
  streams: number
  /** Connections per process in the fixed-rate HTTP phase (HTTP/1.1 with a body: one request in flight each); undefined: one per 100/s. */
  httpClients: number | undefined
  /** Calls or connections in flight at saturation (the node generators' `--connections`). */
  connections: number
}

/** One h2load run of one phase: latency from its logs, h2load's own figures, and how it was checked. */
export interface H2loadRun extends H2loadLatency {
  offered: number | null
  /** Connections (over all processes) and how the fixed rate was paced. */
  connections: number
  pacing: 'rps' | 'script' | null
  /** Requests per second h2load reports (completed requests over its run time, summed over processes). */
  h2loadReqPerSec: number
  succeeded: number
  /** Streams allowed per connection: `maxInFlight` below it means no request waited for a stream. */
  streamsPerConnection: number
  /** Time between two requests of one connection at the fixed rate (ms): an HTTP/1.1 answer slower than this delays the next request of its connection. */
  clientIntervalMs: number | null
  /** Decisions the sidecar counted during the run (NaN when not checked: the Redis baseline). */
  serverDecisions: number
}

const log = (s: string): void => { process.stderr.write(s + '\n') }

/** The path of h2load, or an error saying how to install it. */
export function requireH2load (): string {
  const found = spawnSync('sh', ['-c', 'command -v h2load'], { encoding: 'utf8' }).stdout.trim()
  if (found === '') throw new Error('--generator h2load needs h2load (nghttp2\'s load generator), which is not installed. Install it with: apt-get install nghttp2-client (Debian, Ubuntu) or brew install nghttp2 (macOS)')
  return found
}

/** Runs one h2load process to its end and returns its stdout; throws with its output when it fails. */
async function h2loadProcess (args: string[], precise: boolean): Promise<string> {
  // Precise waits (timing scripts): libev's select backend sleeps in us (its default epoll
  // backend at least 1 ms), and a timer slack of 1 ns (Linux's default, 50 us, would be
  // added to every wait; a process may set its own, and exec keeps it).
  const child = precise
    ? spawn('sh', ['-c', '{ echo 1 > /proc/self/timerslack_ns; } 2>/dev/null; exec h2load "$@"', 'h2load', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LIBEV_FLAGS: '1' } })
    : spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  // 'close', not 'exit': only then has all of its output been read (the summary is its last lines).
  const code = await new Promise<number | null>((resolve, reject) => { child.once('error', reject); child.once('close', resolve) })
  if (code !== 0) throw new Error(`h2load ${args.join(' ')} exited with ${String(code)}:\n${err.slice(-2000)}${out.slice(-2000)}`)
  return out
}

let runs = 0

/**
 * Runs `bodies.length` h2load processes side by side (process i posts bodies[i]),
 * each as `plan` says, and fails loudly unless every request succeeded with a 2xx.
 */
async function runH2load (o: H2loadOptions, plan: H2loadPlan, bodies: Buffer[], offered: number | undefined, scripts?: string[]): Promise<{ summary: H2loadSummary, latency: H2loadLatency }> {
  const id = runs++
  const files = bodies.map((b, i) => {
    const body = join(o.dir, `h2load-${id}-${i}.body`)
    writeFileSync(body, b)
    const script = scripts === undefined ? undefined : join(o.dir, `h2load-${id}-${i}.script`)
    if (script !== undefined) writeFileSync(script, scripts?.[i] ?? '')
    return { body, script, log: join(o.dir, `h2load-${id}-${i}.log`) }
  })
  try {
    const outs = await Promise.all(files.map(async f => await h2loadProcess(h2loadArgs({ ...plan, timingScript: f.script }, f.body, f.log), scripts !== undefined)))
    const sums = outs.map(parseH2loadSummary)
    const summary = sums.reduce((s, x) => {
      for (const k of Object.keys(s) as Array<keyof H2loadSummary>) s[k] = k === 'finishedS' ? Math.max(s[k], x[k]) : s[k] + x[k]
      return s
    })
    const bad = summary.failed + summary.errored + summary.timeout + summary.status3xx + summary.status4xx + summary.status5xx
    // A timed run may count answers that came in after its end in the statuses, not in "succeeded".
    if (bad > 0 || summary.status2xx < summary.succeeded || (plan.requests !== undefined && summary.status2xx !== summary.succeeded)) throw new Error(`h2load reported failures: ${JSON.stringify(summary)}`)
    if (plan.requests !== undefined && summary.succeeded !== plan.requests * bodies.length) throw new Error(`h2load completed ${summary.succeeded} of ${plan.requests * bodies.length} requests: ${JSON.stringify(summary)}`)
    const rows = parseH2loadLog(files.map(f => readFileSync(f.log, 'utf8')))
    if (rows.non2xx > 0 || rows.startUs.length < summary.succeeded || rows.startUs.length > summary.status2xx) throw new Error(`h2load's logs hold ${rows.startUs.length} rows, ${rows.non2xx} not 2xx, for ${summary.succeeded} successes`)
    return { summary, latency: latencyOf(rows, offered) }
  } finally {
    for (const f of files) for (const path of [f.body, f.log, f.script]) if (path !== undefined) rmSync(path, { force: true })
  }
}

async function decisions (httpUrl: string, api: string): Promise<number> {
  return decisionsOf(await (await fetch(`${httpUrl}/metrics`)).text(), api)
}

/**
 * Checks that a run's decisions match h2load's count: exactly, for a run of a set number
 * of requests; for a timed run, h2load may stop with up to `cut` requests in flight,
 * which the sidecar may have decided.
 */
function checkDecisions (api: string, counted: number, succeeded: number, cut: number): void {
  if (counted < succeeded || counted > succeeded + cut) {
    throw new Error(`the sidecar counted ${counted} ${api} decisions for ${succeeded} requests h2load reported as 2xx${cut > 0 ? ` (up to ${cut} more were allowed: in flight when h2load stopped)` : ''}: some answers were not decisions (gRPC errors travel as HTTP 200 with a grpc-status trailer)`)
  }
}

/** The users of `n` processes, one body each. */
const users = (o: H2loadOptions, n: number): string[] => Array.from({ length: n }, (_, i) => `u${i % o.keys}`)

/** One ShouldRateLimit with grpc-js, the request decoded from the bytes h2load will send: it must answer with the bench policy's limit. */
async function checkGrpcOnce (address: string, body: Buffer): Promise<void> {
  const req = decodeRlsRequest(body.subarray(5))
  if ('malformed' in req) throw new Error(`the h2load gRPC body does not decode: ${req.malformed}`)
  const pkg = loadRls() as unknown as { envoy: { service: { ratelimit: { v3: { RateLimitService: grpc.ServiceClientConstructor } } } } }
  const client = new pkg.envoy.service.ratelimit.v3.RateLimitService(address, grpc.credentials.createInsecure())
  try {
    const res = await new Promise<any>((resolve, reject) => {
      client.ShouldRateLimit(req satisfies RlsRequest, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, r: unknown) => { if (err !== null) reject(err); else resolve(r) })
    })
    const s = res.statuses?.[0]
    if (res.statuses?.length !== 1 || s.current_limit?.requests_per_unit !== 100 || s.current_limit?.unit !== 'SECOND' || s.code !== res.overall_code || !['OK', 'OVER_LIMIT'].includes(s.code as string)) {
      throw new Error(`unexpected ShouldRateLimit answer to the h2load body: ${JSON.stringify(res)}`)
    }
  } finally {
    client.close()
  }
}

/** One POST /v1/check with fetch and the body h2load will send: a decision of the bench policy. */
async function checkHttpOnce (url: string, body: Buffer, sidecar: boolean): Promise<void> {
  const r = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
  const j = await r.json() as { allowed?: unknown, decision?: { limit?: unknown, policy?: unknown } }
  const ok = r.status === 200 && typeof j.allowed === 'boolean' && (!sidecar || (j.decision?.limit === 100 && j.decision.policy === 'per-user'))
  if (!ok) throw new Error(`unexpected answer to the h2load body from ${url}: ${r.status} ${JSON.stringify(j)}`)
}

function result (run: { summary: H2loadSummary, latency: H2loadLatency }, plan: H2loadPlan, processes: number, offered: number | undefined, script: boolean, serverDecisions: number): H2loadRun {
  const clientIntervalMs = plan.rpsPerClient === undefined || script ? null : Math.round(1e6 / plan.rpsPerClient) / 1000
  const pacing = offered === undefined ? null : script ? 'script' : 'rps'
  return { ...run.latency, offered: offered ?? null, connections: plan.clients * processes, pacing, h2loadReqPerSec: Math.round(run.summary.reqPerSec), succeeded: run.summary.succeeded, streamsPerConnection: plan.streams, clientIntervalMs, serverDecisions }
}

/**
 * ShouldRateLimit over h2c: at `rate` calls per second in all (a set number of calls,
 * rate x duration, over processes x grpcClients connections), or without a rate at
 * saturation (`connections` streams on one connection per key, for `durationS`). With
 * `httpUrl` (the sidecar's), checked against its decision counters.
 */
export async function h2loadGrpcRun (grpcAddress: string, httpUrl: string | undefined, o: H2loadOptions, rate: number | undefined, durationS: number): Promise<H2loadRun> {
  const script = rate !== undefined && o.grpcPacing === 'script'
  const n = rate === undefined || script ? o.keys : Math.max(o.keys, o.processes)
  const bodies = users(o, n).map(rlsRequestBody)
  await checkGrpcOnce(grpcAddress, bodies[0])
  const url = `http://${grpcAddress}${RLS_PATH}`
  const streams = rate === undefined ? o.connections : o.streams
  const requests = rate === undefined ? 0 : Math.round(rate * durationS / n)
  const pacing = rate === undefined ? { clients: 1 } : script ? { clients: 1 } : pacedPlan(rate / n, o.grpcClients)
  const plan: H2loadPlan = { url, h1: false, streams, headers: ['content-type: application/grpc', 'te: trailers'], ...pacing, ...(rate === undefined ? { durationS } : { requests }) }
  // Groups of one 0.5 ms's calls (5 at 10,000/s: half the node generator's 1 ms ticks);
  // process i's script starts i / rate after process 0's.
  const perGroup = Math.max(1, Math.round((rate ?? 0) / n / 2000))
  const scripts = script ? bodies.map((_, i) => timingScript(url, (rate ?? 0) / n, requests, i * 1000 / (rate ?? 1), perGroup)) : undefined
  const before = httpUrl === undefined ? NaN : await decisions(httpUrl, 'grpc')
  const run = await runH2load(o, plan, bodies, rate, scripts)
  let counted = NaN
  if (httpUrl !== undefined) {
    counted = await decisions(httpUrl, 'grpc') - before
    checkDecisions('gRPC', counted, run.summary.succeeded, rate === undefined ? n * streams : 0)
  }
  if (rate !== undefined && run.latency.maxInFlight >= streams) log(`h2load gRPC: ${run.latency.maxInFlight} calls in flight at once, not fewer than one connection's ${streams} streams: some calls may have waited for a stream (--h2load-streams raises it)`)
  return result(run, plan, bodies.length, rate, script, counted)
}

/**
 * POST /v1/check over HTTP/1.1 (one request in flight per connection, h2load's rule for
 * posted bodies): at `rate` over processes x httpClients connections, or at saturation over
 * `connections`. With `sidecar`, checked against its decision counters.
 */
export async function h2loadHttpRun (httpUrl: string, o: H2loadOptions, rate: number | undefined, durationS: number, sidecar: boolean): Promise<H2loadRun> {
  const n = rate === undefined ? o.keys : Math.max(o.keys, o.processes)
  const bodies = users(o, n).map(checkRequestBody)
  await checkHttpOnce(`${httpUrl}/v1/check`, bodies[0], sidecar)
  const pacing = rate === undefined ? { clients: Math.max(1, Math.round(o.connections / n)) } : pacedPlan(rate / n, o.httpClients)
  const plan: H2loadPlan = {
    url: `${httpUrl}/v1/check`,
    h1: true,
    streams: 1,
    headers: ['content-type: application/json'],
    ...pacing,
    ...(rate === undefined ? { durationS } : { requests: Math.round(rate * durationS / n) })
  }
  const before = sidecar ? await decisions(httpUrl, 'http') : NaN
  const run = await runH2load(o, plan, bodies, rate)
  let counted = NaN
  if (sidecar) {
    counted = await decisions(httpUrl, 'http') - before
    checkDecisions('HTTP', counted, run.summary.succeeded, rate === undefined ? n * plan.clients : 0)
  }
  return result(run, plan, bodies.length, rate, false, counted)
}
