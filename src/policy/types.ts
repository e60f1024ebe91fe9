/** Behaviour of a limit while part of its scope is unreachable. */
export type PartitionMode = 'share' | 'closed' | 'open'

/** Admission algorithms a limit can use. */
export type Algorithm = 'sliding-window' | 'fixed-window' | 'token-bucket' | 'concurrency'

/**
 * Where a limit's usage converges: `node` is never gossiped, `region` converges among
 * the nodes of one region, `global` across every region of the mesh.
 */
export type Scope = 'node' | 'region' | 'global'

/**
 * A request's attributes. Well-known fields are listed; any other string field can be
 * matched and keyed on too (Envoy-style descriptor entries).
 */
export interface Descriptor {
  user?: string
  client?: string
  apiKey?: string
  /** Client IP address; IPv6 addresses are grouped by prefix (/64 by default). */
  ip?: string
  route?: string
  method?: string
  plan?: string
  [field: string]: string | undefined
}

/** One limit of a policy, as written in a policy document. */
export interface LimitSpec {
  /** Identity of the counter within the policy; keep it to keep usage across policy changes. @default the limit's position, "0", "1", ... */
  id?: string
  /** @default "sliding-window" */
  algorithm?: Algorithm
  /** Most requests (or cost units) per window, or most in flight for `concurrency`. */
  limit?: number
  /** Window length in ms (sliding and fixed windows). */
  windowMs?: number
  /** Window length as a duration string: "500ms", "10s", "1m", "1h", "1d". */
  window?: string
  /** Slots per window (sliding window) or per refill horizon (token bucket). @default 10 */
  slots?: number
  /** Token bucket refill rate, tokens per second. */
  ratePerSecond?: number
  /** Token bucket capacity: the largest burst after idle. */
  burst?: number
  /** Concurrency: a lease not released after this long stops counting. @default 60000 */
  leaseTtlMs?: number
}

/**
 * A match condition on one descriptor field: a value, a pattern, or a list of them
 * (any may match). Patterns: `"*"` (field present), `"prefix*"`, and for `ip` a CIDR
 * such as `"10.0.0.0/8"` or `"2001:db8::/32"`.
 */
export type MatchSpec = string | string[]

/** A policy as written in a policy document. */
export interface PolicySpec {
  /** Unique id; names the policy in decisions, headers, logs and metrics. */
  id: string
  description?: string
  /** Conditions on descriptor fields; all must hold. @default {} (matches every request) */
  match?: Record<string, MatchSpec>
  /** Descriptor fields whose values form the counter key; each must be present. @default [] (one shared counter) */
  key?: string | string[]
  /** Policies in the same group compete and the most specific match wins. @default the sorted key fields joined by "+" */
  group?: string
  /** Higher wins within a group before specificity is considered. @default 0 */
  priority?: number
  /** @default "global" */
  scope?: Scope
  /** Evaluate and report would-deny, but always allow. @default false */
  shadow?: boolean
  /**
   * What a node does while members of the limit's scope are unreachable (membership
   * says suspect or dead): "share" caps its own usage at its weight's share of the limit
   * (all sides together stay within it), "closed" denies, "open" keeps admitting from
   * its own view (availability over accuracy).
   * @default "share"
   */
  onPartition?: PartitionMode
  /**
   * Strict mode: the mesh never admits more than the limit in a window, even under
   * partition, at the cost of denials while rights travel. Rights start with the
   * document's `escrow.holders` and move between nodes on demand (src/escrow.ts).
   * Only fixed-window limits can be strict; onPartition does not apply.
   * @default false
   */
  strict?: boolean
  /**
   * Ids of policies this one replaces: when this policy wins its group for a request,
   * the listed policies do not apply to that request, and their groups contribute no
   * limit to it (Envoy's `replaces`). @default []
   */
  replaces?: string | string[]
  /** Prefix length IPv4 keys are grouped by. @default 32 */
  ipv4Prefix?: number
  /** Prefix length IPv6 keys are grouped by. @default 64 */
  ipv6Prefix?: number
  limits: LimitSpec[]
}

/** A policy document: what files, admin pushes and `createLimiter({ policies })` take. */
export interface PolicyDocument {
  /** Monotonic version of the document (used by signed bundles). @default 0 */
  version?: number
  /** Strict policies' escrow: the peer ids that own each window's rights at its start (1-64). */
  escrow?: { holders: string[] }
  policies: PolicySpec[]
}

/** A limit after validation, with every default filled in. */
export interface Limit {
  readonly id: string
  readonly algorithm: Algorithm
  /** The ceiling: requests per window, bucket capacity (burst), or leases in flight. */
  readonly limit: number
  /** Window (sliding/fixed), refill horizon burst/rate (token bucket) or lease TTL (concurrency), in ms. */
  readonly windowMs: number
  readonly slots: number
  /** Token bucket refill rate per second (0 for other algorithms). */
  readonly ratePerSecond: number
}

export interface Condition {
  readonly field: string
  readonly patterns: readonly string[]
}

/** A policy after validation, with every default filled in. */
export interface Policy {
  readonly id: string
  readonly description: string | undefined
  readonly match: readonly Condition[]
  readonly key: readonly string[]
  readonly group: string
  readonly priority: number
  readonly scope: Scope
  readonly shadow: boolean
  readonly onPartition: PartitionMode
  readonly strict: boolean
  /** Ids of the policies this one replaces when it applies. */
  readonly replaces: readonly string[]
  readonly ipv4Prefix: number
  readonly ipv6Prefix: number
  readonly limits: readonly Limit[]
  /** Position in the document (the last tie-breaker of precedence). */
  readonly order: number
}

/** A validated policy document. */
export interface PolicySet {
  readonly version: number
  /** Holders of strict policies' rights (sorted), when the document names them. */
  readonly escrow: { readonly holders: readonly string[] } | undefined
  readonly policies: readonly Policy[]
}
