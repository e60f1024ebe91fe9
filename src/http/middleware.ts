import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Blocklist } from '../abuse/blocklist.js'
import type { Escalation } from '../abuse/escalation.js'
import { createGate, type ClientKeyOf, type Gate, type GateObserver, type GateResult } from '../gate.js'
import { ErrorCode, invalid } from '../errors.js'
import type { Limiter } from '../limiter.js'
import type { Descriptor } from '../policy/types.js'
import { createRateLimitHeaders, type RateLimitHeadersInit } from './headers.js'
import { clientIpFrom, pathOf, type RequestLike } from './keys.js'
import { sendProblem } from './problem.js'

/** What one route may change about how its requests are limited. */
export interface RouteOverride {
  /** Do not limit these requests at all (health checks...). */
  skip?: boolean
  /** Units each request costs. */
  cost?: number
  /** Fields added to (or replacing those of) the request's descriptor, e.g. { route: "/v1/users/:id" }. */
  descriptor?: Record<string, string>
}

export interface MiddlewareInit {
  limiter: Limiter
  /** Refuses blocked clients before the limiter. */
  blocklist?: Blocklist
  /** Blocks clients denied on many policies or endpoints (needs blocklist). */
  escalation?: Escalation
  /**
   * Builds a request's descriptor; combine the helpers of keys.ts (clientIpFrom,
   * apiKeyFrom, userFrom).
   * @default { ip: the client address (see trustedProxies), route: the path, method }
   */
  descriptor?: (req: RequestLike, path: string) => Descriptor
  /**
   * Proxies whose X-Forwarded-For is believed by the default descriptor.
   * @default [] (the socket address is the client)
   */
  trustedProxies?: string[]
  /**
   * Units a request costs.
   * @default 1
   */
  cost?: number | ((req: RequestLike) => number)
  /**
   * Per-route overrides, by "METHOD /path", "/path" or "/prefix*" (the most specific wins:
   * method and path, then path, then the longest prefix).
   * @default {}
   */
  routes?: Record<string, RouteOverride>
  /**
   * Rate-limit header options, or false to send none (Retry-After is still sent on 429).
   * @default legacy and IETF headers, delta-seconds reset
   */
  headers?: RateLimitHeadersInit | false
  /**
   * Called when a request is refused, before the 429 is written; return true when
   * you wrote the response yourself.
   */
  onDenied?: (req: IncomingMessage, res: ServerResponse, result: GateResult) => boolean | void
  /**
   * Take concurrency leases with limiter.acquire() and release them when the response
   * finishes or the connection closes. "auto": when a policy has a concurrency limit.
   * @default "auto"
   */
  concurrency?: boolean | 'auto'
  /** The client identity blocks apply to. @default apiKey, then user, then ip */
  clientKey?: ClientKeyOf
  /** Metrics and logs. */
  observers?: GateObserver[]
}

/** The framework-neutral core of every middleware. */
export interface HttpLimiter {
  /**
   * Admits or refuses a request. Sets the rate-limit headers; on refusal writes the 429
   * (unless onDenied did) and returns false. Leases are released when `res` ends.
   */
  handle(req: IncomingMessage, res: ServerResponse, path?: string): boolean
  readonly gate: Gate
}

interface CompiledRoutes {
  byMethodPath: Map<string, RouteOverride>
  byPath: Map<string, RouteOverride>
  prefixes: Array<[string, RouteOverride]>
}

function compileRoutes (routes: Record<string, RouteOverride>): CompiledRoutes {
  const out: CompiledRoutes = { byMethodPath: new Map(), byPath: new Map(), prefixes: [] }
  for (const [spec, o] of Object.entries(routes)) {
    if (o.cost !== undefined && (!Number.isInteger(o.cost) || o.cost < 1)) {
      throw invalid(ErrorCode.OPTION_INVALID, `routes[${JSON.stringify(spec)}].cost`, o.cost, 'must be an integer >= 1', 'use skip: true to not limit a route')
    }
    const sp = spec.indexOf(' ')
    if (sp > 0) out.byMethodPath.set(spec.slice(0, sp).toUpperCase() + ' ' + spec.slice(sp + 1).trim(), o)
    else if (spec.endsWith('*')) out.prefixes.push([spec.slice(0, -1), o])
    else out.byPath.set(spec, o)
  }
  out.prefixes.sort((a, b) => b[0].length - a[0].length)
  return out
}

function hasConcurrency (limiter: Limiter): boolean {
  return limiter.policies.policies.some(p => p.limits.some(l => l.algorithm === 'concurrency'))
}

/** Builds the core shared by meshlimitNode, meshlimitExpress and meshlimitFastify. */
export function createHttpLimiter (init: MiddlewareInit): HttpLimiter {
  const { limiter } = init
  const headerInit = init.headers === false ? { legacy: false, ietf: false } : init.headers ?? {}
  const gate = createGate({
    limiter,
    blocklist: init.blocklist,
    escalation: init.escalation,
    headers: createRateLimitHeaders({ ...headerInit, policies: limiter }),
    clientKey: init.clientKey,
    observers: init.observers
  })
  const ip = clientIpFrom({ trustedProxies: init.trustedProxies })
  const describe = init.descriptor ?? ((req: RequestLike, path: string): Descriptor => ({ ip: ip(req), route: path, method: req.method }))
  const cost = init.cost ?? 1
  const routes = compileRoutes(init.routes ?? {})
  const anyRoutes = routes.byMethodPath.size + routes.byPath.size + routes.prefixes.length > 0
  const mode = init.concurrency ?? 'auto'
  // Recomputed only when the policy set changes.
  let concurrencyOf = limiter.policies
  let concurrency = mode === 'auto' ? hasConcurrency(limiter) : mode

  const override = (method: string, path: string): RouteOverride | undefined => {
    const o = routes.byMethodPath.get(method + ' ' + path) ?? routes.byPath.get(path)
    if (o !== undefined) return o
    for (const [prefix, p] of routes.prefixes) if (path.startsWith(prefix)) return p
    return undefined
  }

  return {
    gate,
    handle (req, res, path = pathOf(req)) {
      const o = anyRoutes ? override(req.method ?? 'GET', path) : undefined
      if (o?.skip === true) return true
      let d = describe(req, path)
      if (o?.descriptor !== undefined) d = { ...d, ...o.descriptor }
      const c = o?.cost ?? (typeof cost === 'number' ? cost : cost(req))
      if (mode === 'auto' && limiter.policies !== concurrencyOf) {
        concurrencyOf = limiter.policies
        concurrency = hasConcurrency(limiter)
      }
      let r: GateResult
      if (concurrency) {
        const a = gate.acquire(d, c, 'middleware')
        r = a
        const lease = a.lease
        if (lease !== undefined && a.allowed) {
          const release = (): void => { lease.release() }
          res.once('finish', release)
          res.once('close', release)
        }
      } else r = gate.check(d, c, 'middleware')
      const h = r.headers
      for (const name in h) res.setHeader(name, h[name])
      if (r.allowed) return true
      if (init.onDenied?.(req, res, r) === true) return false
      sendProblem(res, gate.problem(r, path))
      return false
    }
  }
}
