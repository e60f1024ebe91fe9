/**
 * The pure parts of bench:sidecar's `--generator h2load`: the request bodies h2load
 * posts, its command line, and reading what it wrote (the summary on stdout, the
 * per-request `--log-file`), plus the sidecar's decision counters from /metrics.
 * Running it is bench/sidecar-h2load.ts.
 *
 * h2load (nghttp2) is a native HTTP/2 and HTTP/1.1 load generator: unlike our node
 * generators it does not stop its own event loop for tens of ms, so its latencies are
 * the server's. It posts one fixed body per process (`-d FILE`), so a process carries
 * one descriptor key; several processes (one key each) spread the load over keys.
 */
import type * as grpc from '@grpc/grpc-js'
import { loadRls } from '../src/sidecar/grpc.js'
import { latencies, percentile, round3, type Latencies } from './stats.js'

/** The Envoy rate limit service's one method, as h2load's URI path. */
export const RLS_PATH = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit'

/** The descriptor domain of the bench's gRPC requests (the node generator's too). */
export const BENCH_DOMAIN = 'bench'

/** A protobuf message in gRPC's length-prefixed frame: 1 byte "not compressed", 4 bytes big-endian length. */
export function grpcFrame (message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + message.length)
  frame[0] = 0
  frame.writeUInt32BE(message.length, 1)
  frame.set(message, 5)
  return frame
}

/**
 * The body of one ShouldRateLimit call for `user`: the RateLimitRequest the node
 * generator sends (domain "bench", one descriptor {user}), encoded by proto-loader
 * from the proto (not by our codec, which the tests check it against), framed.
 */
export function rlsRequestBody (user: string): Buffer {
  if (rlsMethod === undefined) {
    const pkg = loadRls() as unknown as { envoy: { service: { ratelimit: { v3: { RateLimitService: grpc.ServiceClientConstructor } } } } }
    rlsMethod = pkg.envoy.service.ratelimit.v3.RateLimitService.service.ShouldRateLimit
  }
  return grpcFrame(rlsMethod.requestSerialize({ domain: BENCH_DOMAIN, descriptors: [{ entries: [{ key: 'user', value: user }] }] }))
}

// Loading the proto takes ms: once per process.
let rlsMethod: grpc.MethodDefinition<unknown, unknown> | undefined

/** The body of one POST /v1/check for `user` (the node generators' JSON). */
export function checkRequestBody (user: string): Buffer {
  return Buffer.from(JSON.stringify({ descriptor: { user } }))
}

/** What one h2load process is asked to do. */
export interface H2loadPlan {
  /** Full URL, e.g. http://127.0.0.1:8080/v1/check. */
  url: string
  /** HTTP/1.1 (`--h1`); else h2c. */
  h1: boolean
  /** Connections (`-c`). */
  clients: number
  /** Streams in flight per connection (`-m`); HTTP/1.1 with a body is 1 whatever this says. */
  streams: number
  /**
   * Requests per second per connection (`--rps`); undefined: as fast as the streams
   * allow. h2load's rps timer fires at most every 10 ms (sending the requests due since),
   * so above 100/s a connection sends bursts: see `pacedPlan`.
   */
  rpsPerClient?: number
  /** Open this many connections per ms (`-r N --rate-period 1ms`), so that their rps timers do not all fire at once. */
  connectPerMs?: number
  /** Send at the times of this file (`--timing-script-file`: "offset ms<TAB>URI" lines, replayed by every connection) instead of `--rps`. */
  timingScript?: string
  /** Exactly this many requests over all connections (`-n`); else `durationS`. */
  requests?: number
  /** Run for this long (`-D`) when `requests` is not set. */
  durationS?: number
  /** Extra request headers, "name: value". */
  headers: string[]
}

/** The h2load command line of a plan, posting `bodyFile`, logging every request to `logFile` (if given). */
export function h2loadArgs (plan: H2loadPlan, bodyFile: string, logFile?: string): string[] {
  const args = ['-c', String(plan.clients), '-m', String(plan.streams), '-t', '1', '-d', bodyFile]
  if (plan.h1) args.push('--h1')
  if (plan.timingScript !== undefined) args.push('--timing-script-file', plan.timingScript)
  else if (plan.rpsPerClient !== undefined) args.push('--rps', String(plan.rpsPerClient))
  if (plan.connectPerMs !== undefined) args.push('-r', String(plan.connectPerMs), '--rate-period', '1ms')
  if (plan.requests !== undefined) args.push('-n', String(plan.requests))
  else if (plan.durationS !== undefined) args.push('-D', `${Math.max(1, Math.round(plan.durationS * 1000))}ms`)
  else throw new Error('an h2load plan needs requests or durationS')
  for (const h of plan.headers) args.push('-H', h)
  if (logFile !== undefined) args.push('--log-file', logFile)
  // With a timing script the URIs are the script's.
  if (plan.timingScript === undefined) args.push(plan.url)
  return args
}

/** h2load's rps timer fires at most every 10 ms: at most 100 requests per second per connection go out one at a time. */
export const H2LOAD_MAX_EVEN_RPS = 100

/**
 * Connections and pacing for `rate` requests per second from one h2load process:
 * `clients` connections if given, else as many as keep each at 100/s or less (one
 * request per timer tick), opened over one 10 ms tick so that their ticks interleave.
 */
export function pacedPlan (rate: number, clients: number | undefined): { clients: number, rpsPerClient: number, connectPerMs: number } {
  const c = clients ?? Math.max(1, Math.ceil(rate / H2LOAD_MAX_EVEN_RPS))
  return { clients: c, rpsPerClient: rate / c, connectPerMs: Math.max(1, Math.ceil(c / 10)) }
}

/**
 * A timing script of `requests` sends to `url` at `rate` per second from `offsetMs`, in
 * groups of `perGroup` at the same time (h2load sends a group in one wake-up: it re-arms
 * each wait from when it woke, so every wake-up adds its lateness and fewer of them slip
 * the rate less).
 */
export function timingScript (url: string, rate: number, requests: number, offsetMs = 0, perGroup = 1): string {
  const lines: string[] = []
  for (let i = 0; i < requests; i++) lines.push(`${(offsetMs + Math.floor(i / perGroup) * perGroup * 1000 / rate).toFixed(3)}\t${url}`)
  return lines.join('\n') + '\n'
}

/** h2load's end-of-run summary (stdout). */
export interface H2loadSummary {
  finishedS: number
  reqPerSec: number
  total: number
  started: number
  done: number
  succeeded: number
  failed: number
  errored: number
  timeout: number
  status2xx: number
  status3xx: number
  status4xx: number
  status5xx: number
}

/** Reads the summary h2load prints; throws when a line is missing (h2load failed before its end). */
export function parseH2loadSummary (stdout: string): H2loadSummary {
  const fin = /^finished in ([\d.]+)(ms|s), ([\d.]+) req\/s/m.exec(stdout)
  const req = /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m.exec(stdout)
  const st = /^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m.exec(stdout)
  if (fin === null || req === null || st === null) throw new Error(`h2load printed no complete summary:\n${stdout.slice(-2000)}`)
  const n = (m: RegExpExecArray, i: number): number => Number(m[i])
  return {
    finishedS: n(fin, 1) / (fin[2] === 'ms' ? 1000 : 1),
    reqPerSec: n(fin, 3),
    total: n(req, 1),
    started: n(req, 2),
    done: n(req, 3),
    succeeded: n(req, 4),
    failed: n(req, 5),
    errored: n(req, 6),
    timeout: n(req, 7),
    status2xx: n(st, 1),
    status3xx: n(st, 2),
    status4xx: n(st, 3),
    status5xx: n(st, 4)
  }
}

/** The rows of h2load's --log-file: start (us since the epoch), status (-1: failed stream), us until the end of the response. */
export interface H2loadLog {
  startUs: Float64Array
  latencyUs: Float64Array
  /** Rows whose status is not 2xx (failed streams included). */
  non2xx: number
}

/** Parses one or more log files' text (rows tab-separated; extra columns of later h2load versions ignored). */
export function parseH2loadLog (texts: string[]): H2loadLog {
  let rows = 0
  for (const t of texts) for (let i = t.indexOf('\n'); i >= 0; i = t.indexOf('\n', i + 1)) rows++
  const startUs = new Float64Array(rows + texts.length)
  const latencyUs = new Float64Array(rows + texts.length)
  let n = 0
  let non2xx = 0
  for (const t of texts) {
    for (const line of t.split('\n')) {
      if (line === '') continue
      const f = line.split('\t')
      const start = Number(f[0])
      const status = Number(f[1])
      const lat = Number(f[2])
      if (f.length < 3 || !Number.isFinite(start) || !Number.isInteger(status) || !Number.isFinite(lat)) throw new Error(`h2load log: unreadable row ${JSON.stringify(line.slice(0, 80))}`)
      if (status < 200 || status > 299) non2xx++
      startUs[n] = start
      latencyUs[n++] = lat
    }
  }
  return { startUs: startUs.subarray(0, n), latencyUs: latencyUs.subarray(0, n), non2xx }
}

/** What a log says about a run's latency and pacing. */
export interface H2loadLatency extends Latencies {
  count: number
  /** Requests over the span from the first start to the last end. */
  achievedPerSec: number
  /**
   * Most requests in flight at once (over all connections and processes). Below the
   * streams per connection, no connection ever had all its streams busy, so h2load
   * never held a due request back for a free stream.
   */
  maxInFlight: number
  /**
   * How far behind an even schedule at `offeredPerSec` the k-th start fell, at worst
   * (ms; starts sorted, the schedule from the first one). h2load paces each connection
   * on its own timer, so a few intervals of jitter are normal; more means requests
   * were held back (no free stream or connection, or h2load itself late).
   */
  startLagMaxMs: number
  /** p99 of latency plus the start's lag behind that schedule (when positive): the tail charged with any holding back. */
  scheduledP99Ms: number
  /** Requests over 5 ms and in how many distinct 50 ms windows (by start) they fell: few windows mean stalls. */
  slowCalls: number
  slowWindows: number
  /** Most starts in one millisecond (counted from the first start): against rate / 1000, how bursty the offered load was. */
  maxStartsPerMs: number
}

/** Latency percentiles (nearest rank), in-flight peak and pacing of a run from its log. */
export function latencyOf (log: H2loadLog, offeredPerSec?: number): H2loadLatency {
  const n = log.startUs.length
  if (n === 0) throw new Error('h2load log has no rows')
  const order = Uint32Array.from({ length: n }, (_, i) => i).sort((x, y) => log.startUs[x] - log.startUs[y])
  const t0 = log.startUs[order[0]]
  let lastEnd = -Infinity
  const ends = new Float64Array(n)
  const lat = new Float64Array(n)
  const sched = new Float64Array(n)
  const windows = new Set<number>()
  const perMs = new Map<number, number>()
  let slowCalls = 0
  let lagMax = 0
  for (let k = 0; k < n; k++) {
    const i = order[k]
    const s = log.startUs[i]
    const l = log.latencyUs[i]
    ends[k] = s + l
    if (ends[k] > lastEnd) lastEnd = ends[k]
    lat[k] = l / 1000
    const lag = offeredPerSec === undefined ? 0 : (s - t0) / 1000 - k * 1000 / offeredPerSec
    if (lag > lagMax) lagMax = lag
    sched[k] = lat[k] + Math.max(0, lag)
    if (l > 5000) { slowCalls++; windows.add(Math.floor((s - t0) / 50_000)) }
    const ms = Math.floor((s - t0) / 1000)
    perMs.set(ms, (perMs.get(ms) ?? 0) + 1)
  }
  let maxStartsPerMs = 0
  for (const c of perMs.values()) if (c > maxStartsPerMs) maxStartsPerMs = c
  ends.sort()
  // Sweep starts against ends (both sorted): the peak of starts not yet ended.
  let inFlight = 0
  let maxInFlight = 0
  for (let k = 0, e = 0; k < n; k++) {
    while (e < n && ends[e] <= log.startUs[order[k]]) { e++; inFlight-- }
    inFlight++
    if (inFlight > maxInFlight) maxInFlight = inFlight
  }
  lat.sort()
  sched.sort()
  const spanS = (lastEnd - t0) / 1e6
  return {
    count: n,
    achievedPerSec: Math.round(spanS > 0 ? n / spanS : NaN),
    ...latencies(lat),
    maxInFlight,
    startLagMaxMs: round3(lagMax),
    scheduledP99Ms: round3(percentile(sched, 0.99)),
    slowCalls,
    slowWindows: windows.size,
    maxStartsPerMs
  }
}

/** Sum of the sidecar's `meshlimit_decisions_total` series of one API (allowed, denied, blocked) in a /metrics text. */
export function decisionsOf (metrics: string, api: string): number {
  const re = new RegExp(`^meshlimit_decisions_total\\{api="${api}",result="[a-z]+"\\} (\\d+)$`, 'gm')
  let sum = 0
  let found = false
  for (const m of metrics.matchAll(re)) { sum += Number(m[1]); found = true }
  if (!found) throw new Error(`no meshlimit_decisions_total series for api="${api}" in /metrics`)
  return sum
}
