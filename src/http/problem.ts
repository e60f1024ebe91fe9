import type { ServerResponse } from 'node:http'
import type { Decision } from '../decision.js'
import type { HeaderMap } from './headers.js'

/** An RFC 9457 problem details object (application/problem+json). */
export interface Problem {
  /** A URI naming the kind of problem. */
  type: string
  title: string
  status: number
  detail: string
  instance?: string
  [extension: string]: unknown
}

/** One limit a denied request ran into, as listed in a 429 body. */
export interface Violation {
  /** Quota name, as in the RateLimit headers. */
  quota: string
  policy: string
  limit: string
  /** The ceiling. */
  quotaUnits: number
  windowSeconds: number
  /** Seconds until this limit alone would let the request through (null: never, the cost is above the ceiling). */
  retryAfterSeconds: number | null
}

export const PROBLEM_TYPES = {
  rateLimited: 'urn:meshlimit:problem:rate-limited',
  blocked: 'urn:meshlimit:problem:blocked',
  badRequest: 'urn:meshlimit:problem:bad-request',
  unauthorized: 'urn:meshlimit:problem:unauthorized',
  notFound: 'urn:meshlimit:problem:not-found',
  methodNotAllowed: 'urn:meshlimit:problem:method-not-allowed',
  tooLarge: 'urn:meshlimit:problem:payload-too-large',
  unsupportedMediaType: 'urn:meshlimit:problem:unsupported-media-type',
  internal: 'urn:meshlimit:problem:internal'
} as const

/** The 429 body of a denied decision: names every enforced limit that denied it. */
export function rateLimitedProblem (d: Decision, quotaName: (info: Decision['limits'][number]['info']) => string, retryAfterSeconds: number | undefined, instance?: string): Problem {
  const violated: Violation[] = []
  for (const s of d.limits) {
    if (s.allowed || s.info.shadow) continue
    violated.push({
      quota: quotaName(s.info),
      policy: s.policy,
      limit: s.id,
      quotaUnits: s.limit,
      windowSeconds: Math.ceil(s.windowMs / 1000),
      retryAfterSeconds: Number.isFinite(s.retryAfterMs) ? Math.max(1, Math.ceil(s.retryAfterMs / 1000)) : null
    })
  }
  const policies = [...new Set(violated.map(v => v.policy))]
  const when = retryAfterSeconds === undefined
    ? 'The request costs more than the limit allows and can never pass.'
    : `Retry after ${retryAfterSeconds} s.`
  const p: Problem = {
    type: PROBLEM_TYPES.rateLimited,
    title: 'Too Many Requests',
    status: 429,
    detail: `Rate limit exceeded: ${policies.map(x => JSON.stringify(x)).join(', ')}. ${when}`,
    violatedPolicies: policies,
    violations: violated
  }
  if (retryAfterSeconds !== undefined) p.retryAfterSeconds = retryAfterSeconds
  if (instance !== undefined) p.instance = instance
  return p
}

/** A problem for a request that was wrong (4xx) or failed (5xx). */
export function problem (status: number, type: string, title: string, detail: string, extra?: Record<string, unknown>): Problem {
  return { type, title, status, detail, ...extra }
}

/** Writes a problem+json response (and extra headers) unless the response already started. */
export function sendProblem (res: ServerResponse, p: Problem, headers?: HeaderMap): void {
  if (res.headersSent) {
    res.end()
    return
  }
  const body = JSON.stringify(p)
  if (headers !== undefined) for (const name in headers) res.setHeader(name, headers[name])
  res.statusCode = p.status
  res.setHeader('Content-Type', 'application/problem+json')
  res.setHeader('Content-Length', Buffer.byteLength(body))
  res.end(body)
}
