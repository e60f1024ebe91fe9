import { performance } from 'node:perf_hooks'
import type { BlockEntry, Blocklist } from './abuse/blocklist.js'
import type { Escalation } from './abuse/escalation.js'
import type { Decision, Lease } from './decision.js'
import { createRateLimitHeaders, toAscii, type HeaderMap, type RateLimitHeaders } from './http/headers.js'
import type { JsonOut } from './http/json-out.js'
import { PROBLEM_TYPES, rateLimitedProblem, type Problem } from './http/problem.js'
import type { Limiter } from './limiter.js'
import type { Descriptor } from './policy/types.js'
import { systemClock, type Clock } from '../membership/clock.js'

/** Who watches decisions: metrics and logs. Called after the decision, off check() itself. */
export interface GateObserver {
  decision(api: string, clientKey: string | undefined, d: Decision, latencyMs: number): void
  blocked(api: string, clientKey: string, entry: BlockEntry): void
}

/** The client identity blocks and escalations apply to. */
export type ClientKeyOf = (d: Descriptor) => string | undefined

/** "field:value" of the first of apiKey, user, ip present: the most specific identity a request carries. */
export const defaultClientKey: ClientKeyOf = d => {
  if (d.apiKey !== undefined) return 'apiKey:' + d.apiKey
  if (d.user !== undefined) return 'user:' + d.user
  if (d.ip !== undefined) return 'ip:' + d.ip
  return undefined
}

export interface GateInit {
  limiter: Limiter
  /** Checked before the limiter: a blocked client is refused without counting. */
  blocklist?: Blocklist
  /** Told about every denial, to block clients denied on many policies or endpoints. */
  escalation?: Escalation
  /**
   * Header builder.
   * @default createRateLimitHeaders({ policies: limiter })
   */
  headers?: RateLimitHeaders
  /**
   * The client identity of a descriptor, for blocks and escalation.
   * @default defaultClientKey (apiKey, then user, then ip)
   */
  clientKey?: ClientKeyOf
  /** Metrics and logs. */
  observers?: GateObserver[]
  /**
   * Time source of block expiry.
   * @default systemClock
   */
  clock?: Clock
}

/** The outcome of one admission through the gate, without its headers (see Gate.decide). */
export interface GateVerdict {
  allowed: boolean
  /** The HTTP status the gateway should answer with when not allowed (429), else 200. */
  status: 200 | 429
  /** The limiter's decision (undefined when the block list refused the request). */
  decision: Decision | undefined
  /** The block that refused the request. */
  block: BlockEntry | undefined
  /** Seconds to wait, when refused and a wait can help. */
  retryAfterSeconds: number | undefined
  clientKey: string | undefined
}

/** The outcome of one admission through the gate. */
export interface GateResult extends GateVerdict {
  /** Response headers to set. */
  headers: HeaderMap
}

export interface Gate {
  /** Block list, then limiter.check(); counts the request when allowed. */
  check(descriptor: Descriptor, cost: number, api: string): GateResult
  /**
   * check() without the header map, for a caller that writes the headers as JSON
   * (writeHeadersJson): the decision API, where the map was garbage of every request.
   */
  decide(descriptor: Descriptor, cost: number, api: string): GateVerdict
  /**
   * Writes the JSON text of the headers check() would have returned with this verdict:
   * JSON.stringify's characters, in ASCII (a custom header builder's other characters are escaped).
   */
  writeHeadersJson(out: JsonOut, v: GateVerdict): void
  /** Block list, then limiter.acquire(); release the lease when the work ends. */
  acquire(descriptor: Descriptor, cost: number, api: string): GateResult & { lease: Lease | undefined }
  /**
   * Several descriptors of one request (Envoy sends several): all are counted or, when
   * any is refused, none is (peeked first). Atomic unless two descriptors share a counter.
   * A cost of 0 only reports, counting nothing.
   */
  checkAll(descriptors: Descriptor[], costs: number[], api: string): GateResult[]
  /** The problem+json body of a refused result. */
  problem(r: GateVerdict, instance?: string): Problem
  readonly headers: RateLimitHeaders
  readonly limiter: Limiter
}

/**
 * Admission as the HTTP API, the gRPC service and the middleware share it: the block
 * list first, then the limiter, then headers, escalation, metrics and logs.
 */
export function createGate (init: GateInit): Gate {
  const { limiter, blocklist, escalation } = init
  const headers = init.headers ?? createRateLimitHeaders({ policies: limiter })
  const clientKey = init.clientKey ?? defaultClientKey
  const observers = init.observers ?? []
  const clock = init.clock ?? systemClock

  const observe = (d: Decision, key: string | undefined, descriptor: Descriptor, api: string, t0: number): void => {
    const latencyMs = performance.now() - t0
    for (let i = 0; i < observers.length; i++) observers[i].decision(api, key, d, latencyMs)
    if (!d.allowed && escalation !== undefined && key !== undefined) {
      escalation.denied(key, `${d.policy ?? ''} ${descriptor.route ?? ''}`)
    }
  }

  const after = (d: Decision, key: string | undefined, descriptor: Descriptor, api: string, t0: number): GateResult => {
    observe(d, key, descriptor, api, t0)
    const retry = headers.retryAfterSeconds(d)
    return { allowed: d.allowed, status: d.allowed ? 200 : 429, decision: d, block: undefined, headers: headers.of(d, retry), retryAfterSeconds: retry, clientKey: key }
  }

  const blockedVerdict = (key: string, entry: BlockEntry, api: string): GateVerdict => {
    for (const o of observers) o.blocked(api, key, entry)
    const wait = Math.max(1, Math.ceil((entry.expiresAt - clock.now()) / 1000))
    return { allowed: false, status: 429, decision: undefined, block: entry, retryAfterSeconds: wait, clientKey: key }
  }

  const refused = (key: string, entry: BlockEntry, api: string): GateResult => {
    const v = blockedVerdict(key, entry, api)
    return { ...v, headers: { 'Retry-After': String(v.retryAfterSeconds) } }
  }

  /** The block list's entry for a client, if it is blocked. */
  const blockOf = (key: string | undefined): BlockEntry | undefined => blocklist === undefined || key === undefined ? undefined : blocklist.blocked(key)

  const check = (descriptor: Descriptor, cost: number, api: string): GateResult => {
    const key = clientKey(descriptor)
    const b = blockOf(key)
    if (b !== undefined) return refused(key as string, b, api)
    const t0 = performance.now()
    return after(limiter.check(descriptor, cost), key, descriptor, api, t0)
  }

  return {
    headers,
    limiter,
    check,
    decide (descriptor, cost, api) {
      const key = clientKey(descriptor)
      const b = blockOf(key)
      if (b !== undefined) return blockedVerdict(key as string, b, api)
      const t0 = performance.now()
      const d = limiter.check(descriptor, cost)
      observe(d, key, descriptor, api, t0)
      return { allowed: d.allowed, status: d.allowed ? 200 : 429, decision: d, block: undefined, retryAfterSeconds: headers.retryAfterSeconds(d), clientKey: key }
    },
    writeHeadersJson (out, v) {
      const d = v.decision
      if (d === undefined) {
        if (v.block === undefined) { out.ascii('{}'); return }
        out.ascii('{"Retry-After":"')
        out.number(v.retryAfterSeconds as number)
        out.ascii('"}')
      } else if (headers.writeJson !== undefined) headers.writeJson(out, d, v.retryAfterSeconds)
      else out.ascii(toAscii(JSON.stringify(headers.of(d, v.retryAfterSeconds))))
    },
    acquire (descriptor, cost, api) {
      const key = clientKey(descriptor)
      const b = blockOf(key)
      if (b !== undefined) return { ...refused(key as string, b, api), lease: undefined }
      const t0 = performance.now()
      const lease = limiter.acquire(descriptor, cost)
      return { ...after(lease, key, descriptor, api, t0), lease }
    },
    checkAll (descriptors, costs, api) {
      const n = descriptors.length
      // One descriptor that counts (Envoy's usual request) is check(): no key or peek arrays.
      if (n === 1 && costs[0] > 0) return [check(descriptors[0], costs[0], api)]
      const out = new Array<GateResult>(n)
      const keys = descriptors.map(clientKey)
      let refusedAny = false
      for (let i = 0; i < n; i++) {
        const b = blockOf(keys[i])
        if (b !== undefined) { out[i] = refused(keys[i] as string, b, api); refusedAny = true }
      }
      const t0 = performance.now()
      const peeked = new Array<Decision>(n)
      for (let i = 0; i < n; i++) {
        if (out[i] !== undefined) continue
        peeked[i] = limiter.peek(descriptors[i], costs[i] > 0 ? costs[i] : 1)
        if (!peeked[i].allowed) refusedAny = true
      }
      for (let i = 0; i < n; i++) {
        if (out[i] !== undefined) continue
        // Counted only when every descriptor passes; a cost of 0 never counts.
        const d = !refusedAny && costs[i] > 0 ? limiter.check(descriptors[i], costs[i]) : peeked[i]
        out[i] = after(d, keys[i], descriptors[i], api, t0)
      }
      return out
    },
    problem (r, instance) {
      if (r.decision !== undefined) return rateLimitedProblem(r.decision, headers.quotaName, r.retryAfterSeconds, instance)
      const b = r.block as BlockEntry
      const p: Problem = {
        type: PROBLEM_TYPES.blocked,
        title: 'Too Many Requests',
        status: 429,
        detail: `The client is blocked until ${new Date(b.expiresAt).toISOString()}: ${b.reason || 'no reason given'}.`,
        blockedUntil: new Date(b.expiresAt).toISOString(),
        retryAfterSeconds: r.retryAfterSeconds
      }
      if (instance !== undefined) p.instance = instance
      return p
    }
  }
}
