import type { LimitInfo } from './algorithms.js'
import type { Algorithm, Scope } from './policy/types.js'

/** The outcome of one limit for one request. */
export class LimitStatus {
  constructor (
    /** Static data of the limit: policy, id, algorithm, scope, ceiling, window, shadow. */
    readonly info: LimitInfo,
    /** Units left after this request (floored, never negative). */
    readonly remaining: number,
    /** Milliseconds until the current usage has drained with no new traffic. */
    readonly resetMs: number,
    /** Milliseconds to wait before this cost could fit; 0 when it fits, Infinity when it never can. */
    readonly retryAfterMs: number,
    /** Whether this limit let the request through (a shadow limit may say false while the request is allowed). */
    readonly allowed: boolean
  ) {}

  /** Id of the policy the limit belongs to. */
  get policy (): string {
    return this.info.policy
  }

  /** The ceiling: requests per window, bucket capacity, or leases in flight. */
  get limit (): number {
    return this.info.limit
  }

  /** Id of the limit within its policy. */
  get id (): string {
    return this.info.id
  }

  get algorithm (): Algorithm {
    return this.info.algorithm
  }

  get scope (): Scope {
    return this.info.scope
  }

  /** Window, refill horizon or lease TTL, in ms. */
  get windowMs (): number {
    return this.info.windowMs
  }

  /** Whether the limit is in shadow mode (evaluated and reported, never enforced). */
  get shadow (): boolean {
    return this.info.shadow
  }

  toJSON (): Record<string, unknown> {
    return {
      policy: this.policy,
      id: this.id,
      algorithm: this.algorithm,
      scope: this.scope,
      limit: this.limit,
      windowMs: this.windowMs,
      remaining: this.remaining,
      resetMs: this.resetMs,
      retryAfterMs: this.retryAfterMs,
      allowed: this.allowed,
      shadow: this.shadow
    }
  }
}

/**
 * The answer of check(): whether to admit, and why. The deciding limit is, when
 * denied, the enforced limit with the longest retry; when allowed, the enforced limit
 * with the fewest units remaining; its figures are the decision's. With no enforced
 * limit matched, `policy` is undefined and limit/remaining are Infinity.
 *
 * Six fields, so that the object a check allocates stays small: everything static
 * about the deciding limit is read through `info`.
 */
export class Decision {
  constructor (
    readonly allowed: boolean,
    /** Static data of the deciding limit (undefined when none decided). */
    readonly info: LimitInfo | undefined,
    /** Units left after this request (floored, never negative; Infinity with no limit). */
    readonly remaining: number,
    /** Milliseconds until the deciding limit's current usage has drained. */
    readonly resetMs: number,
    /** 0 when allowed; otherwise ms until the request could pass (Infinity if its cost exceeds the limit). */
    readonly retryAfterMs: number,
    /** Every matched limit; undefined (built on first read) when the deciding limit was the only one. */
    private statuses: readonly LimitStatus[] | undefined
  ) {}

  /** Id of the deciding policy. */
  get policy (): string | undefined {
    return this.info?.policy
  }

  /** Id of the deciding limit within its policy. */
  get limitId (): string | undefined {
    return this.info?.id
  }

  get algorithm (): Algorithm | undefined {
    return this.info?.algorithm
  }

  get scope (): Scope | undefined {
    return this.info?.scope
  }

  /** The deciding limit's ceiling (Infinity when none decided). */
  get limit (): number {
    return this.info?.limit ?? Infinity
  }

  /** Window, refill horizon or lease TTL of the deciding limit, in ms (0 when none decided). */
  get windowMs (): number {
    return this.info?.windowMs ?? 0
  }

  /** True when a shadow limit would have denied this request. */
  get shadowDenied (): boolean {
    const s = this.statuses
    if (s === undefined) return false
    for (let i = 0; i < s.length; i++) if (s[i].info.shadow && !s[i].allowed) return true
    return false
  }

  /** Every matched limit, in group order. */
  get limits (): readonly LimitStatus[] {
    if (this.statuses === undefined) {
      const f = this.info
      this.statuses = f === undefined ? [] : [new LimitStatus(f, this.remaining, this.resetMs, this.retryAfterMs, this.allowed)]
    }
    return this.statuses
  }

  toJSON (): Record<string, unknown> {
    return {
      allowed: this.allowed,
      policy: this.policy,
      limitId: this.limitId,
      algorithm: this.algorithm,
      scope: this.scope,
      limit: this.limit,
      windowMs: this.windowMs,
      remaining: this.remaining,
      resetMs: this.resetMs,
      retryAfterMs: this.retryAfterMs,
      shadowDenied: this.shadowDenied,
      limits: this.limits
    }
  }
}

/** A concurrency admission: release it exactly once when the work is done (extra calls are no-ops). */
export interface Lease extends Decision {
  release(): void
}
