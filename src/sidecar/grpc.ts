import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import type { Gate, GateResult } from '../gate.js'
import { MAX_COST } from '../limiter.js'
import type { Descriptor } from '../policy/types.js'
import type { Logger } from '../log.js'
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
const UNITS: ReadonlyArray<readonly [number, RlsUnit]> = [[1000, 'SECOND'], [60_000, 'MINUTE'], [3_600_000, 'HOUR'], [86_400_000, 'DAY']]
const UINT32_MAX = 0xffffffff

/** The meshlimit descriptors and costs of a request, or why it is refused. */
export function parseRlsRequest (req: WireRequest, aliases: Record<string, string>): { descriptors: Descriptor[], costs: number[] } | string {
  if (typeof req.domain !== 'string' || req.domain.length === 0 || req.domain.length > 256) return 'domain must be a non-empty string of at most 256 characters'
  const ds = req.descriptors
  if (!Array.isArray(ds) || ds.length === 0) return 'descriptors must hold at least one descriptor'
  if (ds.length > MAX_DESCRIPTORS) return `at most ${MAX_DESCRIPTORS} descriptors are accepted, got ${ds.length}`
  const base = req.hits_addend > 0 ? req.hits_addend : 1
  const descriptors: Descriptor[] = []
  const costs: number[] = []
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
    descriptors.push(d)
    costs.push(cost)
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

/** The ShouldRateLimit implementation over a gate. */
export function createRateLimitService (init: RateLimitServiceInit): grpc.UntypedServiceImplementation {
  const aliases = init.aliases ?? { remote_address: 'ip' }
  const { gate } = init
  return {
    ShouldRateLimit (call: grpc.ServerUnaryCall<WireRequest | MalformedRlsRequest, RlsResponse>, callback: grpc.sendUnaryData<RlsResponse>) {
      const req = call.request
      if ('malformed' in req) {
        callback({ code: grpc.status.INVALID_ARGUMENT, details: req.malformed })
        return
      }
      const parsed = parseRlsRequest(req, aliases)
      if (typeof parsed === 'string') {
        callback({ code: grpc.status.INVALID_ARGUMENT, details: parsed })
        return
      }
      let results: GateResult[]
      try {
        results = gate.checkAll(parsed.descriptors, parsed.costs, 'grpc')
      } catch (err) {
        init.logger?.error({ err }, 'ShouldRateLimit failed')
        callback({ code: grpc.status.INTERNAL, details: (err as Error).message })
        return
      }
      let over = false
      const statuses = results.map(r => {
        if (!r.allowed) over = true
        const d = r.decision
        const status: RlsStatus = { code: r.allowed ? 'OK' : 'OVER_LIMIT' }
        if (d?.info !== undefined) {
          const unit = UNITS.find(u => u[0] === d.windowMs)
          status.current_limit = {
            name: gate.headers.quotaName(d.info),
            requests_per_unit: Math.min(d.limit, UINT32_MAX),
            unit: d.algorithm === 'concurrency' || unit === undefined ? 'UNKNOWN' : unit[1]
          }
          status.limit_remaining = Math.min(d.remaining, UINT32_MAX)
          status.duration_until_reset = { seconds: Math.floor(d.resetMs / 1000), nanos: Math.round((d.resetMs % 1000) * 1e6) }
        } else if (r.block !== undefined) {
          status.duration_until_reset = { seconds: r.retryAfterSeconds ?? 0, nanos: 0 }
        }
        return status
      })
      const headers = worst(results).headers
      const response_headers_to_add: RlsResponse['response_headers_to_add'] = []
      for (const k in headers) response_headers_to_add.push({ key: k, value: headers[k] })
      callback(null, { overall_code: over ? 'OVER_LIMIT' : 'OK', statuses, response_headers_to_add })
    }
  }
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
}

/** Serves the rate limit service on host:port. */
export async function startGrpcServer (init: GrpcServerInit): Promise<GrpcServerHandle> {
  const max = init.maxConcurrentStreams ?? 0
  const server = new grpc.Server({
    // Channelz tracks every call (timestamps, counters, closures): garbage per call for a debugging service nobody queries here.
    'grpc.enable_channelz': 0,
    ...(max > 0 ? { 'grpc.max_concurrent_streams': max } : {})
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
    }
  }
}
