import type { LimitInfo } from '../algorithms.js'
import type { Decision } from '../decision.js'
import { ErrorCode, invalid } from '../errors.js'
import type { PolicySet } from '../policy/types.js'
import { systemClock, type Clock } from '../../membership/clock.js'
import { seededRandom, type Random } from '../../membership/random.js'
import type { JsonOut } from './json-out.js'
import { sfInteger, sfIntegerValue, sfItem, sfString } from './sf.js'

/** How X-RateLimit-Reset is written. */
export type ResetFormat = 'delta-seconds' | 'epoch-seconds'

export interface RateLimitHeadersInit {
  /**
   * Send X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (the deciding limit).
   * @default true
   */
  legacy?: boolean
  /**
   * Send RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers-10), one
   * member per enforced limit the request matched.
   * @default true
   */
  ietf?: boolean
  /**
   * X-RateLimit-Reset as seconds from now, or as Unix time in seconds.
   * @default "delta-seconds"
   */
  resetFormat?: ResetFormat
  /**
   * Adds a random delay of up to this many ms to Retry-After, so that clients denied
   * together do not all come back in the same second. Never makes it earlier.
   * @default 0
   */
  retryAfterJitterMs?: number
  /**
   * Random source of the jitter.
   * @default a seeded source, seeded from the clock at creation
   */
  random?: Random
  /**
   * Time source of epoch-seconds resets.
   * @default systemClock
   */
  clock?: Clock
  /**
   * The policies in force (e.g. the limiter): a policy with a single limit is then
   * named by its id alone in the IETF headers instead of "policy/limit".
   * @default every quota named "policy/limit"
   */
  policies?: { readonly policies: PolicySet }
}

/** Header name -> value, names in their canonical case. */
export type HeaderMap = Record<string, string>

export interface RateLimitHeaders {
  /**
   * The headers for a decision (Retry-After included when denied); empty when no limit
   * matched. Pass the `retryAfterSeconds` already computed for the same decision so that
   * header and body agree when jitter is on.
   */
  of(decision: Decision, retryAfterSeconds?: number): HeaderMap
  /**
   * Writes the JSON text of `of(decision, retryAfterSeconds)`, the same characters as
   * JSON.stringify would, without building the map (the decision API writes it into its
   * answer). A builder without it gets `JSON.stringify(of(...))`.
   */
  writeJson?(out: JsonOut, decision: Decision, retryAfterSeconds?: number): void
  /**
   * Seconds a denied client should wait: the true wait rounded up, plus jitter; never
   * earlier than when the request could pass. Undefined when it never can (cost above the limit).
   */
  retryAfterSeconds(decision: Decision): number | undefined
  /** Name of a limit's quota in the IETF headers and problem bodies. */
  quotaName(info: LimitInfo): string
}

const seconds = (ms: number): number => Math.ceil(ms / 1000)

/** JSON text with every character outside ASCII escaped: the same value, and its length is its size in bytes. */
export function toAscii (json: string): string {
  return json.replace(/[\u0080-\uffff]/g, c => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
}

/** Builds rate-limit response headers from decisions. */
export function createRateLimitHeaders (init: RateLimitHeadersInit = {}): RateLimitHeaders {
  const legacy = init.legacy ?? true
  const ietf = init.ietf ?? true
  const resetFormat = init.resetFormat ?? 'delta-seconds'
  if (resetFormat !== 'delta-seconds' && resetFormat !== 'epoch-seconds') {
    throw invalid(ErrorCode.OPTION_INVALID, 'resetFormat', resetFormat, 'must be "delta-seconds" or "epoch-seconds"', 'pick one of the two, or leave it out for delta seconds')
  }
  const jitterMs = init.retryAfterJitterMs ?? 0
  if (typeof jitterMs !== 'number' || !(jitterMs >= 0) || !Number.isFinite(jitterMs)) {
    throw invalid(ErrorCode.OPTION_INVALID, 'retryAfterJitterMs', jitterMs, 'must be a finite number >= 0', 'pass a delay in ms, or 0 for none')
  }
  const clock = init.clock ?? systemClock
  const random = init.random ?? seededRandom(Math.floor(clock.now()))
  const policies = init.policies

  // Names and RateLimit-Policy members are static per limit: computed once per LimitInfo (new on each policy install).
  const names = new WeakMap<LimitInfo, string>()
  const policyItems = new WeakMap<LimitInfo, string>()
  const quoted = new WeakMap<LimitInfo, string>()
  // The same two inside a JSON string (their quotes escaped), for json().
  const policyItemsJson = new WeakMap<LimitInfo, string>()
  const quotedJson = new WeakMap<LimitInfo, string>()
  let countsOf: PolicySet | undefined
  let counts = new Map<string, number>()

  const quotaName = (info: LimitInfo): string => {
    let name = names.get(info)
    if (name !== undefined) return name
    let single = false
    if (policies !== undefined) {
      const set = policies.policies
      if (set !== countsOf) {
        counts = new Map(set.policies.map(p => [p.id, p.limits.length]))
        countsOf = set
      }
      single = counts.get(info.policy) === 1
    }
    name = single ? info.policy : `${info.policy}/${info.id}`
    names.set(info, name)
    return name
  }

  const policyItem = (info: LimitInfo): string => {
    let item = policyItems.get(info)
    if (item !== undefined) return item
    // A concurrency limit has no time window: its quota is leases in flight.
    item = info.algorithm === 'concurrency'
      ? sfItem(quotaName(info), [['q', info.limit]])
      : sfItem(quotaName(info), [['q', info.limit], ['w', seconds(info.windowMs)]])
    policyItems.set(info, item)
    return item
  }

  // The RateLimit member per request: the quoted name is static, only r and t change (sfItem's output, without its per-call garbage).
  const currentItem = (info: LimitInfo, remaining: number, resetMs: number): string => {
    let q = quoted.get(info)
    if (q === undefined) quoted.set(info, q = sfString(quotaName(info)))
    return q + ';r=' + sfInteger(remaining) + ';t=' + sfInteger(seconds(resetMs))
  }

  // The two static parts inside a JSON string (quotes escaped), for writeJson().
  const jsonInner = (s: string): string => JSON.stringify(s).slice(1, -1)
  const policyItemJson = (info: LimitInfo): string => {
    let item = policyItemsJson.get(info)
    if (item === undefined) policyItemsJson.set(info, item = jsonInner(policyItem(info)))
    return item
  }
  const quotedNameJson = (info: LimitInfo): string => {
    let q = quotedJson.get(info)
    if (q === undefined) quotedJson.set(info, q = jsonInner(sfString(quotaName(info))))
    return q
  }

  const retryAfterSeconds = (d: Decision): number | undefined => {
    if (d.allowed) return undefined
    const ms = d.retryAfterMs
    if (!Number.isFinite(ms)) return undefined
    const s = seconds(ms + (jitterMs > 0 ? random() * jitterMs : 0))
    return s < 1 ? 1 : s
  }

  return {
    quotaName,
    retryAfterSeconds,
    of (d, retry) {
      const info = d.info
      if (info === undefined) return {}
      // Members joined as sfList joins them, without the arrays.
      let pol = ''
      let cur = ''
      if (ietf) {
        const limits = d.limits
        for (let i = 0; i < limits.length; i++) {
          const s = limits[i]
          if (s.info.shadow) continue
          if (pol !== '') { pol += ', '; cur += ', ' }
          pol += policyItem(s.info)
          cur += currentItem(s.info, s.remaining, s.resetMs)
        }
      }
      // One literal for the usual set (its properties fit the object: no store grown per call).
      let out: HeaderMap
      if (legacy) {
        const limit = String(info.limit)
        const remaining = String(d.remaining)
        const reset = String(resetFormat === 'delta-seconds' ? seconds(d.resetMs) : seconds(clock.now() + d.resetMs))
        out = pol !== ''
          ? { 'X-RateLimit-Limit': limit, 'X-RateLimit-Remaining': remaining, 'X-RateLimit-Reset': reset, 'RateLimit-Policy': pol, RateLimit: cur }
          : { 'X-RateLimit-Limit': limit, 'X-RateLimit-Remaining': remaining, 'X-RateLimit-Reset': reset }
      } else out = pol !== '' ? { 'RateLimit-Policy': pol, RateLimit: cur } : {}
      if (!d.allowed) {
        const r = retry ?? retryAfterSeconds(d)
        if (r !== undefined) out['Retry-After'] = String(r)
      }
      return out
    },
    // Mirrors of() field by field; a property test holds it to JSON.stringify(of(...)).
    // Everything written is printable ASCII (sf-strings are, by construction).
    writeJson (out, d, retry) {
      const info = d.info
      if (info === undefined) { out.ascii('{}'); return }
      let first = true
      out.ascii('{')
      if (legacy) {
        out.ascii('"X-RateLimit-Limit":"')
        out.number(info.limit)
        out.ascii('","X-RateLimit-Remaining":"')
        out.number(d.remaining)
        out.ascii('","X-RateLimit-Reset":"')
        out.number(resetFormat === 'delta-seconds' ? seconds(d.resetMs) : seconds(clock.now() + d.resetMs))
        out.ascii('"')
        first = false
      }
      if (ietf) {
        const limits = d.limits
        let n = 0
        for (let i = 0; i < limits.length; i++) {
          const s = limits[i]
          if (s.info.shadow) continue
          out.ascii(n++ > 0 ? ', ' : first ? '"RateLimit-Policy":"' : ',"RateLimit-Policy":"')
          out.ascii(policyItemJson(s.info))
        }
        if (n > 0) {
          out.ascii('","RateLimit":"')
          n = 0
          for (let i = 0; i < limits.length; i++) {
            const s = limits[i]
            if (s.info.shadow) continue
            if (n++ > 0) out.ascii(', ')
            out.ascii(quotedNameJson(s.info))
            out.ascii(';r=')
            out.number(sfIntegerValue(s.remaining))
            out.ascii(';t=')
            out.number(sfIntegerValue(seconds(s.resetMs)))
          }
          out.ascii('"')
          first = false
        }
      }
      if (!d.allowed) {
        const r = retry ?? retryAfterSeconds(d)
        if (r !== undefined) {
          out.ascii(first ? '"Retry-After":"' : ',"Retry-After":"')
          out.number(r)
          out.ascii('"')
        }
      }
      out.ascii('}')
    }
  }
}
