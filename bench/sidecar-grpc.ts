/**
 * The gRPC load generator of bench:sidecar: ShouldRateLimit calls over one node:http2
 * session with pre-encoded requests, at saturation or at a fixed rate, with latency,
 * this process's own event-loop delay and the slow calls' windows.
 */
import * as http2 from 'node:http2'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type * as grpc from '@grpc/grpc-js'
import { seededRandom } from '../src/index.js'
import { loadRls } from '../src/sidecar/grpc.js'
import { latencies, percentile, round3, type Latencies } from './stats.js'

/** What the generator needs of the bench's arguments. */
export interface GrpcLoad {
  /** Distinct users the requests are spread over. */
  users: number
  /** Calls in flight at saturation (4 times as many at most at a fixed rate). */
  connections: number
}

const log = (s: string): void => { process.stderr.write(s + '\n') }

/** Latencies are from the moment each call was sent, like autocannon's response times. */
export interface GrpcRun extends Latencies {
  reqPerSec: number
  /** From each call's scheduled time (fixed rate only): also charges lateness of this process. */
  scheduledP99Ms: number
  /** This process's event-loop delay during the run (p99, max): how late the generator itself was. */
  clientLoopP99Ms: number
  clientLoopMaxMs: number
  /** Calls slower than 5 ms, and in how many distinct 50 ms windows (by send time) they fell: few windows mean stalls, not queueing. */
  slowCalls: number
  slowWindows: number
  errors: number
  offered: number | null
}

/**
 * gRPC load: with `rate`, requests are sent on a schedule (i / rate); latency is
 * reported from the send (as autocannon does) and from the scheduled time, which
 * charges a stall to every request it delayed (no coordinated omission) but also
 * charges this process's own timer lateness. Without `rate`, `connections` calls are
 * kept in flight.
 *
 * The client speaks gRPC over one node:http2 session directly (length-prefixed
 * protobuf, grpc-status from the trailers), with requests encoded up front, because a
 * grpc-js client costs more CPU per call than the server it measures and this machine
 * has two cores for both. One answer is decoded and checked. (The tests use a grpc-js
 * client built from the proto.)
 */
export async function grpcRun (address: string, a: GrpcLoad, rate: number | undefined, durationS: number): Promise<GrpcRun> {
  const pkg = loadRls() as unknown as { envoy: { service: { ratelimit: { v3: { RateLimitService: grpc.ServiceClientConstructor } } } } }
  const method = pkg.envoy.service.ratelimit.v3.RateLimitService.service.ShouldRateLimit
  // Every request pre-encoded and framed in one buffer: 65,536 separate Buffers would be
  // long-lived objects for this process's collector to mark again and again.
  const rnd = seededRandom(13)
  const encoded = Array.from({ length: 1 << 16 }, () => method.requestSerialize({ domain: 'bench', descriptors: [{ entries: [{ key: 'user', value: `u${Math.floor(rnd() * a.users)}` }] }] }))
  const offsets = new Uint32Array(encoded.length + 1)
  for (let i = 0; i < encoded.length; i++) offsets[i + 1] = offsets[i] + 5 + encoded[i].length
  const pool = Buffer.allocUnsafe(offsets[encoded.length])
  for (let i = 0; i < encoded.length; i++) {
    pool[offsets[i]] = 0
    pool.writeUInt32BE(encoded[i].length, offsets[i] + 1)
    encoded[i].copy(pool, offsets[i] + 5)
  }
  encoded.length = 0
  const session = http2.connect(`http://${address}`)
  // The server's settings first: calls opened past a stream limit it has not yet told would be refused.
  await new Promise<void>((resolve, reject) => { session.once('remoteSettings', () => { resolve() }); session.once('error', reject) })
  // A session lost mid-run is reported with its cause, and the calls after it count as errors.
  let lost: string | undefined
  session.on('goaway', (code: number) => { lost ??= `GOAWAY ${code}`; log(`gRPC session: ${lost}`) })
  session.on('error', (err: Error) => { lost ??= err.message; log(`gRPC session error: ${err.message}`) })
  let ending = false
  session.on('close', () => { if (lost === undefined && !ending) { lost = 'closed'; log('gRPC session closed by the peer') } })
  const headers = { ':method': 'POST', ':path': method.path, 'content-type': 'application/grpc', te: 'trailers' }
  let sample: Buffer | undefined
  const call = (i: number, cb: (err: Error | null) => void): void => {
    if (lost === undefined && session.destroyed) { lost = 'destroyed'; log(`gRPC session destroyed (socket closed) after ${n} calls`) }
    if (lost !== undefined) { setImmediate(cb, new Error(`session lost: ${lost}`)); return }
    const stream = session.request(headers)
    let status: string | undefined
    const chunks: Buffer[] | undefined = sample === undefined ? [] : undefined
    stream.on('trailers', (t: http2.IncomingHttpHeaders) => { status = t['grpc-status'] as string | undefined })
    if (chunks !== undefined) stream.on('data', (c: Buffer) => { chunks.push(c) })
    else stream.resume()
    stream.on('error', () => {})
    stream.on('close', () => {
      if (status !== '0') { cb(new Error(`grpc-status ${String(status)}`)); return }
      if (chunks !== undefined && sample === undefined) sample = Buffer.concat(chunks).subarray(5)
      cb(null)
    })
    const k = i & 0xffff
    stream.end(pool.subarray(offsets[k], offsets[k + 1]))
  }
  // Preallocated: growing arrays of 100,000+ numbers are old-generation garbage mid-run.
  let lat: Float64Array = new Float64Array(Math.ceil(durationS * (rate ?? 40_000) * 1.1) + 1024)
  let late: Float64Array = new Float64Array(lat.length)
  let count = 0
  const record = (latency: number, fromSchedule: number): void => {
    if (count === lat.length) {
      const grow = (x: Float64Array): Float64Array => { const y = new Float64Array(x.length * 2); y.set(x); return y }
      lat = grow(lat)
      late = grow(late)
    }
    lat[count] = latency
    late[count++] = fromSchedule
  }
  const slow = new Set<number>()
  let slowCalls = 0
  // A full collection now, so that garbage of the previous phase is not collected during this one.
  collectGarbage()
  const loop = monitorEventLoopDelay({ resolution: 1 })
  loop.enable()
  let errors = 0
  let n = 0
  const t0 = performance.now()
  const end = t0 + durationS * 1000
  await new Promise<void>(resolve => {
    let inFlight = 0
    const one = (scheduled: number, again: boolean): void => {
      const sentAt = performance.now()
      inFlight++
      call(n++, err => {
        inFlight--
        const now = performance.now()
        if (err !== null) errors++
        else {
          record(now - sentAt, now - scheduled)
          if (now - sentAt > 5) { slowCalls++; slow.add(Math.floor((sentAt - t0) / 50)) }
        }
        if (again && now < end && lost === undefined) one(performance.now(), true)
        else if (inFlight === 0 && (now >= end || (again && lost !== undefined))) resolve()
      })
    }
    if (rate === undefined) {
      for (let c = 0; c < a.connections; c++) one(performance.now(), true)
      return
    }
    let sent = 0
    const tick = (): void => {
      const now = performance.now()
      const due = Math.min(Math.floor((Math.min(now, end) - t0) * rate / 1000), Math.floor(durationS * rate))
      // Late requests wait here, not in the client library, and still count from their scheduled time.
      while (sent < due && inFlight < 4 * a.connections) one(t0 + (sent++ * 1000) / rate, false)
      // A 1 ms timer, not a spin: the loop must leave the CPU to the server.
      if (now < end) setTimeout(tick, 1)
      else if (inFlight === 0) resolve()
    }
    tick()
  })
  const elapsed = (performance.now() - t0) / 1000
  loop.disable()
  ending = true
  session.close()
  const answer = sample === undefined ? undefined : method.responseDeserialize(sample) as { overall_code: string, statuses: unknown[] }
  if (answer === undefined || answer.statuses.length !== 1) throw new Error(`unexpected ShouldRateLimit answer: ${JSON.stringify(answer)}`)
  const sorted = lat.subarray(0, count).sort()
  const sortedLate = late.subarray(0, count).sort()
  return { reqPerSec: Math.round(count / elapsed), ...latencies(sorted), scheduledP99Ms: round3(percentile(sortedLate, 0.99)), clientLoopP99Ms: round3(loop.percentile(99) / 1e6), clientLoopMaxMs: round3(loop.max / 1e6), slowCalls, slowWindows: slow.size, errors, offered: rate ?? null }
}

/** A full collection of this process (gc() without --expose-gc, for the bench only). */
function collectGarbage (): void {
  setFlagsFromString('--expose-gc')
  ;(runInNewContext('gc') as () => void)()
}

