import { EventEmitter } from 'node:events'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import type { Gate, GateResult } from '../gate.js'
import { MAX_COST } from '../limiter.js'
import type { Descriptor } from '../policy/types.js'
import type { Logger } from '../log.js'
import { createStreamTableRefresher, streamOfCall, type StreamTableRefresher } from './stream-table.js'
import { decodeRlsRequest, encodeRlsResponse, type MalformedRlsRequest, type RlsRequest, type RlsResponse, type RlsStatus, type RlsUnit } from './rls-codec.js'

/** Where the .proto files are, from the source tree (tests) or from dist/ (the package). */
export function protoDir (): string {
  for (const rel of ['../grpc/proto', '../../../src/grpc/proto']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url))
    if (existsSync(dir)) return dir
  }
  throw new Error('meshlimit: the gRPC .proto files are missing (src/grpc/proto); reinstall the package')
}

export const RLS_PROTO = 'envoy/service/ratelimit/v3/rls.proto'

/** Loads Envoy's rate limit service v3 definition (our own wire-compatible .proto files). */
export function loadRls (): grpc.GrpcObject {
  const def = protoLoader.loadSync(RLS_PROTO, { includeDirs: [protoDir()], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true })
  return grpc.loadPackageDefinition(def)
}

export interface RateLimitServiceInit {
  gate: Gate
  /**
   * Envoy descriptor entry keys renamed to meshlimit descriptor fields, so that policies
   * keyed on `ip` match Envoy's `remote_address` action.
   * @default { remote_address: "ip" }
   */
  aliases?: Record<string, string>
  logger?: Logger
}

type WireRequest = RlsRequest

const MAX_DESCRIPTORS = 64
const MAX_ENTRIES = 32
const MAX_VALUE_LENGTH = 4096
const UINT32_MAX = 0xffffffff

/** The meshlimit descriptors and costs of a request, or why it is refused. */
export function parseRlsRequest (req: WireRequest, aliases: Record<string, string>): { descriptors: Descriptor[], costs: number[] } | string {
  if (typeof req.domain !== 'string' || req.domain.length === 0 || req.domain.length > 256) return 'domain must be a non-empty string of at most 256 characters'
  const ds = req.descriptors
  if (!Array.isArray(ds) || ds.length === 0) return 'descriptors must hold at least one descriptor'
  if (ds.length > MAX_DESCRIPTORS) return `at most ${MAX_DESCRIPTORS} descriptors are accepted, got ${ds.length}`
  const base = req.hits_addend > 0 ? req.hits_addend : 1
  // Sized up front: a push onto [] allocates room for 17 elements.
  const descriptors = new Array<Descriptor>(ds.length)
  const costs = new Array<number>(ds.length)
  for (let i = 0; i < ds.length; i++) {
    const entries = ds[i].entries
    if (entries.length === 0) return `descriptors[${i}] has no entries`
    if (entries.length > MAX_ENTRIES) return `descriptors[${i}] has ${entries.length} entries; at most ${MAX_ENTRIES} are accepted`
    const d = Object.create(null) as Descriptor
    d.domain = req.domain
    for (let j = 0; j < entries.length; j++) {
      const { key, value } = entries[j]
      if (key.length === 0 || key.length > 64) return `descriptors[${i}].entries[${j}].key must be 1-64 characters`
      if (value.length > MAX_VALUE_LENGTH) return `descriptors[${i}].entries[${j}].value is longer than ${MAX_VALUE_LENGTH} characters`
      d[Object.hasOwn(aliases, key) ? aliases[key] : key] = value
    }
    const own = ds[i].hits_addend
    const cost = own !== null && own !== undefined ? own.value : base
    if (!Number.isSafeInteger(cost) || cost < 0 || cost > MAX_COST) return `descriptors[${i}].hits_addend must be from 0 to ${MAX_COST}, got ${cost}`
    descriptors[i] = d
    costs[i] = cost
  }
  return { descriptors, costs }
}

/** The worst of several results: refused with the longest wait, else the fewest remaining. */
function worst (rs: GateResult[]): GateResult {
  let w = rs[0]
  for (const r of rs) {
    if (r.allowed !== w.allowed) { if (!r.allowed) w = r; continue }
    if (!r.allowed) { if ((r.retryAfterSeconds ?? Infinity) > (w.retryAfterSeconds ?? Infinity)) w = r } else if ((r.decision?.remaining ?? Infinity) < (w.decision?.remaining ?? Infinity)) w = r
  }
  return w
}

/** Why a call is refused: the status the client gets instead of a response. */
export interface RlsFailure { code: grpc.status, details: string }

/** The unit of a window that is exactly one of Envoy's units. */
function unitOf (windowMs: number): RlsUnit {
  switch (windowMs) {
    case 1000: return 'SECOND'
    case 60_000: return 'MINUTE'
    case 3_600_000: return 'HOUR'
    case 86_400_000: return 'DAY'
    default: return 'UNKNOWN'
  }
}

/** Answers one decoded ShouldRateLimit request over a gate: the response, or why the call fails. */
export function createRlsAnswer (init: RateLimitServiceInit): (req: WireRequest | MalformedRlsRequest) => RlsResponse | RlsFailure {
  const aliases = init.aliases ?? { remote_address: 'ip' }
  const { gate } = init
  return req => {
    if ('malformed' in req) return { code: grpc.status.INVALID_ARGUMENT, details: req.malformed }
    const parsed = parseRlsRequest(req, aliases)
    if (typeof parsed === 'string') return { code: grpc.status.INVALID_ARGUMENT, details: parsed }
    let results: GateResult[]
    try {
      results = gate.checkAll(parsed.descriptors, parsed.costs, 'grpc')
    } catch (err) {
      init.logger?.error({ err }, 'ShouldRateLimit failed')
      return { code: grpc.status.INTERNAL, details: (err as Error).message }
    }
    let over = false
    const statuses = new Array<RlsStatus>(results.length)
    for (let i = 0; i < results.length; i++) {
      const r = results[i]
      if (!r.allowed) over = true
      const d = r.decision
      const code = r.allowed ? 'OK' : 'OVER_LIMIT'
      // Each status in one literal: adding fields one by one would grow its property storage.
      statuses[i] = d?.info !== undefined
        ? {
            code,
            current_limit: { name: gate.headers.quotaName(d.info), requests_per_unit: Math.min(d.limit, UINT32_MAX), unit: d.algorithm === 'concurrency' ? 'UNKNOWN' : unitOf(d.windowMs) },
            limit_remaining: Math.min(d.remaining, UINT32_MAX),
            duration_until_reset: { seconds: Math.floor(d.resetMs / 1000), nanos: Math.round((d.resetMs % 1000) * 1e6) }
          }
        : r.block !== undefined ? { code, duration_until_reset: { seconds: r.retryAfterSeconds ?? 0, nanos: 0 } } : { code }
    }
    const headers = worst(results).headers
    const response_headers_to_add: RlsResponse['response_headers_to_add'] = []
    for (const k in headers) response_headers_to_add.push({ key: k, value: headers[k] })
    return { overall_code: over ? 'OVER_LIMIT' : 'OK', statuses, response_headers_to_add }
  }
}

function isFailure (a: RlsResponse | RlsFailure): a is RlsFailure {
  return 'details' in a
}

/** The ShouldRateLimit implementation over a gate, as a grpc-js service handler. */
export function createRateLimitService (init: RateLimitServiceInit): grpc.UntypedServiceImplementation {
  const answer = createRlsAnswer(init)
  return {
    ShouldRateLimit (call: grpc.ServerUnaryCall<WireRequest | MalformedRlsRequest, RlsResponse>, callback: grpc.sendUnaryData<RlsResponse>) {
      const a = answer(call.request)
      if (isFailure(a)) callback(a)
      else callback(null, a)
    }
  }
}

export const SHOULD_RATE_LIMIT_PATH = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit'

type CallStatus = Parameters<grpc.ServerInterceptingCallInterface['sendStatus']>[0]

// Shared by every call: grpc-js only reads them (toHttp2Headers, clone).
const NO_METADATA = new grpc.Metadata()
const OK_STATUS: CallStatus = { code: grpc.status.OK, details: 'OK', metadata: null }

/**
 * Cuts a finished call's HTTP/2 stream loose from grpc-js's call objects by removing
 * the stream's 'data' and 'end' listeners (grpc-js's closures over its call). Node's
 * HTTP/2 session keeps its open streams in a Map (node 20: lib/internal/http2/core.js,
 * an entry set per stream and deleted when it closes), and V8 keeps every stream a
 * discarded backing table of that Map held; after a full collection those tables are
 * in the old generation, so each finished stream outlives the next scavenge with all
 * it reaches and is promoted (docs/benchmarks.md, "What the gRPC path promotes").
 * Only once the request side has ended: node itself may still be waiting on 'end'
 * otherwise. The stream is a private field of grpc-js's base call (1.14); when it is
 * not there (another grpc-js, another interceptor first), nothing is done.
 * @returns whether the listeners were removed
 */
export function detachCall (call: unknown): boolean {
  const stream = streamOfCall(call)
  if (!(stream instanceof EventEmitter) || (stream as { readableEnded?: unknown }).readableEnded !== true) return false
  stream.removeAllListeners('data')
  stream.removeAllListeners('end')
  return true
}

/**
 * One ShouldRateLimit call driven straight on grpc-js's base call: reads the one
 * request, answers, sends the response and the OK status. It stands in for grpc-js's
 * unary handler plumbing (a Writable stream, its state, a Metadata and closures per call),
 * which the sidecar never uses, so each call in flight holds less: what the calls in
 * flight hold at a scavenge is what gets copied and then promoted.
 */
class RlsUnaryCall implements grpc.ServerInterceptingCallInterface {
  private request: WireRequest | MalformedRlsRequest | undefined = undefined
  private received = false

  constructor (private readonly next: grpc.ServerInterceptingCallInterface, private readonly answer: (req: WireRequest | MalformedRlsRequest) => RlsResponse | RlsFailure, private readonly tables: StreamTableRefresher | undefined) {}

  // The listener grpc-js's unary handler passes is left unused: this call answers itself.
  start (): void {
    this.tables?.touch(this.next)
    this.next.start(this)
  }
  onReceiveMetadata (): void { this.next.startRead() }
  onReceiveMessage (message: WireRequest | MalformedRlsRequest): void {
    // Refused with the status grpc-js's own unary handler gives.
    if (this.received) {
      this.request = undefined // refused: nothing is decided, whatever comes after
      this.next.sendStatus({ code: grpc.status.UNIMPLEMENTED, details: 'ShouldRateLimit takes one request message; received a second', metadata: null })
      return
    }
    this.received = true
    this.request = message
    this.next.startRead()
  }

  onReceiveHalfClose (): void {
    const req = this.request
    if (req === undefined) {
      if (!this.received) this.next.sendStatus({ code: grpc.status.UNIMPLEMENTED, details: 'ShouldRateLimit takes one request message; received none', metadata: null })
      return
    }
    this.request = undefined
    let a: RlsResponse | RlsFailure
    try {
      a = this.answer(req)
    } catch {
      this.next.sendStatus({ code: grpc.status.UNKNOWN, details: 'Unknown error', metadata: null })
      return
    }
    if (isFailure(a)) {
      this.next.sendStatus({ code: a.code, details: a.details, metadata: null })
      return
    }
    this.next.sendMetadata(NO_METADATA)
    this.next.sendMessage(a, this.sent)
  }

  // grpc-js calls this when the call is over, answered or not.
  onCancel (): void {
    this.request = undefined
    detachCall(this.next)
  }

  // An arrow so that the write's callback needs no closure per call beyond this one.
  private readonly sent = (): void => { this.next.sendStatus(OK_STATUS) }

  sendMetadata (metadata: grpc.Metadata): void { this.next.sendMetadata(metadata) }
  sendMessage (message: unknown, callback: () => void): void { this.next.sendMessage(message, callback) }
  sendStatus (status: CallStatus): void { this.next.sendStatus(status) }
  startRead (): void { this.next.startRead() }
  getPeer (): string { return this.next.getPeer() }
  getDeadline (): grpc.Deadline { return this.next.getDeadline() }
  getHost (): string { return this.next.getHost() }
  getAuthContext (): ReturnType<grpc.ServerInterceptingCallInterface['getAuthContext']> { return this.next.getAuthContext() }
  getConnectionInfo (): ReturnType<grpc.ServerInterceptingCallInterface['getConnectionInfo']> { return this.next.getConnectionInfo() }
  getMetricsRecorder (): ReturnType<grpc.ServerInterceptingCallInterface['getMetricsRecorder']> { return this.next.getMetricsRecorder() }
}

/**
 * A grpc-js server interceptor that answers ShouldRateLimit calls itself (RlsUnaryCall)
 * and passes every other method through.
 */
export function rlsUnaryInterceptor (init: RateLimitServiceInit, tables?: StreamTableRefresher): grpc.ServerInterceptor {
  const answer = createRlsAnswer(init)
  return (method, call) => (method.path === SHOULD_RATE_LIMIT_PATH ? new RlsUnaryCall(call, answer, tables) : call) as grpc.ServerInterceptingCall
}

/**
 * The RateLimitService definition from the proto, with ShouldRateLimit's messages read
 * and written by our codec (src/sidecar/rls-codec.ts) instead of protobufjs objects.
 */
export function rlsServiceDefinition (): grpc.ServiceDefinition {
  const pkg = loadRls() as unknown as { envoy: { service: { ratelimit: { v3: { RateLimitService: grpc.ServiceClientConstructor } } } } }
  const def = pkg.envoy.service.ratelimit.v3.RateLimitService.service
  return {
    ...def,
    ShouldRateLimit: {
      ...def.ShouldRateLimit,
      requestDeserialize: decodeRlsRequest,
      responseSerialize: encodeRlsResponse as (value: unknown) => Buffer
    }
  }
}

export interface GrpcServerHandle {
  readonly port: number
  close(): Promise<void>
}

export interface GrpcServerInit extends RateLimitServiceInit {
  host: string
  /** 0 picks a free port. */
  port: number
  /**
   * Calls in flight per HTTP/2 connection, advertised in its settings: clients queue
   * the rest. Bounds what one connection makes the server read and hold at once.
   * @default 0 (unlimited)
   */
  maxConcurrentStreams?: number
  /**
   * Keep node's table of each connection's open streams young (createStreamTableRefresher):
   * without it, finished calls are promoted once the table has reached the old generation,
   * about 1.7 KB per call and ten times the scavenge work (docs/benchmarks.md).
   * @default true
   */
  youngStreamTables?: boolean
}

/** Serves the rate limit service on host:port. */
export async function startGrpcServer (init: GrpcServerInit): Promise<GrpcServerHandle> {
  const max = init.maxConcurrentStreams ?? 0
  const tables = init.youngStreamTables === false ? undefined : createStreamTableRefresher()
  const server = new grpc.Server({
    // Channelz tracks every call (timestamps, counters, closures): garbage per call for a debugging service nobody queries here.
    'grpc.enable_channelz': 0,
    ...(max > 0 ? { 'grpc.max_concurrent_streams': max } : {}),
    interceptors: [rlsUnaryInterceptor(init, tables)]
  })
  server.addService(rlsServiceDefinition(), createRateLimitService(init))
  const address = init.host.includes(':') ? `[${init.host}]:${init.port}` : `${init.host}:${init.port}`
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => { if (err !== null) reject(err); else resolve(p) })
  })
  return {
    port,
    async close () {
      await new Promise<void>(resolve => {
        const t = setTimeout(() => { server.forceShutdown(); resolve() }, 2000)
        server.tryShutdown(() => { clearTimeout(t); resolve() })
      })
      tables?.stop()
    }
  }
}
