import { parse as parseYaml } from 'yaml'
import { ErrorCode, MeshlimitError, invalid, show } from '../errors.js'
import { parseDuration } from './duration.js'
import { parseCidr } from './ip.js'
import type { Algorithm, Condition, Limit, PartitionMode, Policy, PolicySet, Scope } from './types.js'

const ALGORITHMS: readonly Algorithm[] = ['sliding-window', 'fixed-window', 'token-bucket', 'concurrency']
const SCOPES: readonly Scope[] = ['node', 'region', 'global']
const DOC_FIELDS = ['version', 'escrow', 'policies']
const POLICY_FIELDS = ['id', 'description', 'match', 'key', 'group', 'priority', 'scope', 'shadow', 'onPartition', 'strict', 'replaces', 'ipv4Prefix', 'ipv6Prefix', 'limits']
const PARTITION_MODES: readonly PartitionMode[] = ['share', 'closed', 'open']
const LIMIT_FIELDS = ['id', 'algorithm', 'limit', 'windowMs', 'window', 'slots', 'ratePerSecond', 'burst', 'leaseTtlMs']
/** What a policy or limit id may be. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/
const FIELD_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/
const FIELD_FIX = 'use letters, digits, "_", "." or "-", and not a name every object inherits such as "constructor"'

/** Largest window, refill horizon or lease TTL: 31 days. */
export const MAX_WINDOW_MS = 31 * 86_400_000
/** Most slots a window may be split into. */
export const MAX_SLOTS = 120
/** Largest limit, burst or rate: one node's count per slot fits in 32 bits. */
export const MAX_LIMIT = 2 ** 32 - 1
/** Most policies in one document, and most limits in one policy. */
export const MAX_POLICIES = 10_000
export const MAX_LIMITS_PER_POLICY = 16
/** Most patterns in one match condition. */
export const MAX_PATTERNS = 1_000
/** Most escrow holders. */
export const MAX_HOLDERS = 64
const PEER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/

const validated = new WeakSet<object>()

/** Whether `v` is a set returned by validatePolicies or parsePolicies (and so needs no re-validation). */
export function isPolicySet (v: unknown): v is PolicySet {
  return typeof v === 'object' && v !== null && validated.has(v)
}

/** Defaults applied to fields a document leaves out. */
export const POLICY_DEFAULTS = {
  algorithm: 'sliding-window' as Algorithm,
  slots: 10,
  leaseTtlMs: 60_000,
  scope: 'global' as Scope,
  onPartition: 'share' as PartitionMode,
  ipv4Prefix: 32,
  ipv6Prefix: 64
}

function fail (field: string, value: unknown, problem: string, fix: string): never {
  throw invalid(ErrorCode.POLICY_INVALID, field, value, problem, fix)
}

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Edit distance, for "did you mean" hints on unknown fields. */
function distance (a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1))
      prev = tmp
    }
  }
  return row[b.length]
}

function rejectUnknown (obj: Record<string, unknown>, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(obj)) {
    if (allowed.includes(k)) continue
    const near = allowed.filter(a => distance(k, a) <= 2)
    const hint = near.length > 0 ? `did you mean "${near[0]}"? ` : ''
    fail(`${path}.${k}`, obj[k], 'unknown field', `${hint}allowed fields are ${allowed.join(', ')}`)
  }
}

/** A descriptor field name; names inherited from Object.prototype would read as present on every descriptor. */
export function isFieldName (f: unknown): f is string {
  return typeof f === 'string' && FIELD_PATTERN.test(f) && !(f in Object.prototype)
}

function integer (v: unknown, field: string, min: number, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    fail(field, v, `must be an integer from ${min} to ${max}`, `set ${what}`)
  }
  return v
}

function positive (v: unknown, field: string, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > max) {
    fail(field, v, `must be a number > 0 and <= ${max}`, `set ${what}`)
  }
  return v
}

function windowOf (spec: Record<string, unknown>, path: string, required: boolean): number | undefined {
  if (spec.windowMs !== undefined && spec.window !== undefined) {
    fail(`${path}.window`, spec.window, 'conflicts with windowMs', 'give the window once, as windowMs (a number) or window (a string such as "1m")')
  }
  if (spec.window !== undefined) {
    const ms = typeof spec.window === 'string' ? parseDuration(spec.window) : undefined
    if (ms === undefined) fail(`${path}.window`, spec.window, 'is not a duration', 'write a number and a unit: "500ms", "10s", "1m", "1h" or "1d"')
    // Report the duration as written ("0s"), not the milliseconds it converts to.
    if (ms < 1 || ms > MAX_WINDOW_MS) fail(`${path}.window`, spec.window, `must be from 1ms to 31d (${MAX_WINDOW_MS} ms)`, 'set a window from 1ms to 31d')
    return ms
  }
  if (spec.windowMs !== undefined) return integer(spec.windowMs, `${path}.windowMs`, 1, MAX_WINDOW_MS, 'the window length in milliseconds, e.g. 60000 for a minute')
  if (required) fail(`${path}.windowMs`, undefined, 'is required for this algorithm', 'add windowMs (e.g. 60000) or window (e.g. "1m")')
  return undefined
}

function notFor (spec: Record<string, unknown>, fields: string[], path: string, algorithm: Algorithm): void {
  for (const f of fields) {
    if (spec[f] !== undefined) fail(`${path}.${f}`, spec[f], `does not apply to the ${algorithm} algorithm`, `remove ${f}`)
  }
}

function validateLimit (raw: unknown, path: string, index: number): Limit {
  if (!isRecord(raw)) fail(path, raw, 'must be an object', 'write a limit such as { limit: 100, windowMs: 60000 }')
  rejectUnknown(raw, LIMIT_FIELDS, path)
  const id = raw.id === undefined ? String(index) : raw.id
  if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
    fail(`${path}.id`, raw.id, 'must be 1-64 letters, digits, "_", ".", ":" or "-", starting with a letter or digit', 'rename the limit')
  }
  const algorithm = raw.algorithm === undefined ? POLICY_DEFAULTS.algorithm : raw.algorithm
  if (typeof algorithm !== 'string' || !(ALGORITHMS as readonly string[]).includes(algorithm)) {
    fail(`${path}.algorithm`, raw.algorithm, 'is not a known algorithm', `use one of ${ALGORITHMS.join(', ')}`)
  }
  const algo = algorithm as Algorithm
  const slots = raw.slots === undefined
    ? (algo === 'fixed-window' ? 1 : POLICY_DEFAULTS.slots)
    : integer(raw.slots, `${path}.slots`, 1, MAX_SLOTS, `a slot count from 1 to ${MAX_SLOTS}`)
  switch (algo) {
    case 'sliding-window':
    case 'fixed-window': {
      notFor(raw, ['ratePerSecond', 'burst', 'leaseTtlMs'], path, algo)
      if (algo === 'fixed-window' && raw.slots !== undefined && raw.slots !== 1) {
        fail(`${path}.slots`, raw.slots, 'a fixed window has exactly one slot', 'remove slots, or use sliding-window')
      }
      if (raw.limit === undefined) fail(`${path}.limit`, undefined, 'is required', 'add limit: the most requests per window')
      const limit = integer(raw.limit, `${path}.limit`, 0, MAX_LIMIT, 'a non-negative integer: the most requests (or cost units) per window')
      const windowMs = windowOf(raw, path, true) as number
      // Name the field the document used (window or windowMs) and its value as written.
      const windowField = raw.window !== undefined ? 'window' : 'windowMs'
      if (windowMs < slots) fail(`${path}.${windowField}`, raw[windowField], `is shorter than one millisecond per slot (${slots} slots)`, 'use a longer window or fewer slots')
      return { id, algorithm: algo, limit, windowMs, slots, ratePerSecond: 0 }
    }
    case 'token-bucket': {
      notFor(raw, ['limit', 'windowMs', 'window', 'leaseTtlMs'], path, algo)
      if (raw.ratePerSecond === undefined) fail(`${path}.ratePerSecond`, undefined, 'is required for token-bucket', 'add ratePerSecond: the refill rate in tokens per second')
      if (raw.burst === undefined) fail(`${path}.burst`, undefined, 'is required for token-bucket', 'add burst: the bucket capacity, the largest burst after idle')
      const ratePerSecond = positive(raw.ratePerSecond, `${path}.ratePerSecond`, MAX_LIMIT, 'a refill rate in tokens per second, e.g. 10')
      const burst = integer(raw.burst, `${path}.burst`, 1, MAX_LIMIT, 'a bucket capacity of at least 1 token')
      const horizon = Math.ceil((burst / ratePerSecond) * 1000)
      if (horizon > MAX_WINDOW_MS) fail(`${path}.burst`, burst, `refills in ${horizon} ms, longer than 31 days`, 'raise ratePerSecond or lower burst')
      return { id, algorithm: algo, limit: burst, windowMs: Math.max(horizon, 1), slots, ratePerSecond }
    }
    case 'concurrency': {
      notFor(raw, ['windowMs', 'window', 'ratePerSecond', 'burst', 'slots'], path, algo)
      if (raw.limit === undefined) fail(`${path}.limit`, undefined, 'is required', 'add limit: the most requests in flight at once')
      const limit = integer(raw.limit, `${path}.limit`, 0, MAX_LIMIT, 'a non-negative integer: the most requests in flight')
      const leaseTtlMs = raw.leaseTtlMs === undefined
        ? POLICY_DEFAULTS.leaseTtlMs
        : integer(raw.leaseTtlMs, `${path}.leaseTtlMs`, 10, MAX_WINDOW_MS, 'how long an unreleased lease counts, in ms (longer than your slowest request)')
      return { id, algorithm: algo, limit, windowMs: leaseTtlMs, slots: POLICY_DEFAULTS.slots, ratePerSecond: 0 }
    }
  }
}

function validatePatterns (field: string, raw: unknown, path: string): string[] {
  const list = Array.isArray(raw) ? raw : [raw]
  if (list.length === 0) fail(path, raw, 'is an empty list and would never match', 'list at least one value, or remove the condition')
  if (list.length > MAX_PATTERNS) fail(path, `${list.length} patterns`, `has more than ${MAX_PATTERNS} patterns`, 'split the policy or key on the field instead')
  // Array.from visits holes of a sparse list (as undefined), which map() would skip and keep.
  return Array.from(list, (p: unknown, j) => {
    const at = Array.isArray(raw) ? `${path}[${j}]` : path
    if (typeof p !== 'string' || p.length === 0 || p.length > 1024) {
      fail(at, p, 'must be a non-empty string of at most 1024 characters', 'write a value, "prefix*", "*" (present), or for ip a CIDR such as "10.0.0.0/8"')
    }
    if (field === 'ip' && p !== '*' && parseCidr(p) === undefined) {
      fail(at, p, 'is not an IP address or CIDR block', 'write an address or block such as "203.0.113.7", "10.0.0.0/8" or "2001:db8::/32"')
    }
    if (field !== 'ip' && p.indexOf('*') >= 0 && p.indexOf('*') !== p.length - 1) {
      fail(at, p, '"*" may only end a pattern', 'use "prefix*" for a prefix match or "*" for any value')
    }
    return p
  })
}

function validatePolicy (raw: unknown, path: string, order: number): Policy {
  if (!isRecord(raw)) fail(path, raw, 'must be an object', 'write a policy with at least id and limits')
  rejectUnknown(raw, POLICY_FIELDS, path)
  if (typeof raw.id !== 'string' || !ID_PATTERN.test(raw.id)) {
    fail(`${path}.id`, raw.id, 'must be 1-64 letters, digits, "_", ".", ":" or "-", starting with a letter or digit', 'give the policy a unique id such as "per-user"')
  }
  const id = raw.id
  if (raw.description !== undefined && typeof raw.description !== 'string') fail(`${path}.description`, raw.description, 'must be a string', 'write a description or remove it')
  const match: Condition[] = []
  if (raw.match !== undefined) {
    if (!isRecord(raw.match)) fail(`${path}.match`, raw.match, 'must be an object of field: pattern', 'write e.g. match: { route: "/v1/*", method: [GET, HEAD] }')
    for (const field of Object.keys(raw.match).sort()) {
      if (!isFieldName(field)) fail(`${path}.match.${field}`, field, 'is not a valid descriptor field name', FIELD_FIX)
      match.push({ field, patterns: validatePatterns(field, raw.match[field], `${path}.match.${field}`) })
    }
  }
  let key: string[]
  if (raw.key === undefined) key = []
  else if (typeof raw.key === 'string') key = [raw.key]
  // A copy: freezing the result must not freeze the caller's document; holes become undefined.
  else if (Array.isArray(raw.key)) key = Array.from(raw.key as unknown[]) as string[]
  else fail(`${path}.key`, raw.key, 'must be a field name or a list of them', 'write e.g. key: user or key: [apiKey, route]')
  key.forEach((f, j) => {
    if (!isFieldName(f)) fail(`${path}.key[${j}]`, f, 'is not a valid descriptor field name', FIELD_FIX)
  })
  if (new Set(key).size !== key.length) fail(`${path}.key`, key, 'lists a field twice', 'list each field once')
  const group = raw.group === undefined ? [...key].sort().join('+') : raw.group
  if (typeof group !== 'string' || group.length > 128) fail(`${path}.group`, raw.group, 'must be a string of at most 128 characters', 'name the group, or remove group to compete with policies keyed on the same fields')
  const priority = raw.priority === undefined ? 0 : integer(raw.priority, `${path}.priority`, -1_000_000, 1_000_000, 'an integer priority (higher wins)')
  const scope = raw.scope === undefined ? POLICY_DEFAULTS.scope : raw.scope
  if (typeof scope !== 'string' || !(SCOPES as readonly string[]).includes(scope)) fail(`${path}.scope`, raw.scope, 'is not a known scope', `use one of ${SCOPES.join(', ')}`)
  if (raw.shadow !== undefined && typeof raw.shadow !== 'boolean') fail(`${path}.shadow`, raw.shadow, 'must be true or false', 'write shadow: true to evaluate without enforcing')
  const onPartition = raw.onPartition === undefined ? POLICY_DEFAULTS.onPartition : raw.onPartition
  if (typeof onPartition !== 'string' || !(PARTITION_MODES as readonly string[]).includes(onPartition)) {
    fail(`${path}.onPartition`, raw.onPartition, 'is not a known partition mode', `use one of ${PARTITION_MODES.join(', ')}`)
  }
  if (raw.strict !== undefined && typeof raw.strict !== 'boolean') fail(`${path}.strict`, raw.strict, 'must be true or false', 'write strict: true to never admit past the limit, even under partition')
  let replaces: string[]
  if (raw.replaces === undefined) replaces = []
  else if (typeof raw.replaces === 'string') replaces = [raw.replaces]
  else if (Array.isArray(raw.replaces)) replaces = Array.from(raw.replaces as unknown[]) as string[]
  else fail(`${path}.replaces`, raw.replaces, 'must be a policy id or a list of them', 'write e.g. replaces: [per-user]')
  replaces.forEach((r, j) => {
    if (typeof r !== 'string' || !ID_PATTERN.test(r)) fail(`${path}.replaces[${j}]`, r, 'is not a policy id', 'name a policy of this document by its id')
    if (r === id) fail(`${path}.replaces[${j}]`, r, 'is the policy itself', 'remove it: a policy cannot replace itself')
  })
  if (new Set(replaces).size !== replaces.length) fail(`${path}.replaces`, replaces, 'lists a policy twice', 'list each policy once')
  const ipv4Prefix = raw.ipv4Prefix === undefined ? POLICY_DEFAULTS.ipv4Prefix : integer(raw.ipv4Prefix, `${path}.ipv4Prefix`, 0, 32, 'an IPv4 prefix length from 0 to 32')
  const ipv6Prefix = raw.ipv6Prefix === undefined ? POLICY_DEFAULTS.ipv6Prefix : integer(raw.ipv6Prefix, `${path}.ipv6Prefix`, 0, 128, 'an IPv6 prefix length from 0 to 128')
  if (!Array.isArray(raw.limits) || raw.limits.length === 0) {
    fail(`${path}.limits`, raw.limits, 'must be a non-empty list', 'add at least one limit such as { limit: 100, window: "1m" }')
  }
  if (raw.limits.length > MAX_LIMITS_PER_POLICY) fail(`${path}.limits`, `${raw.limits.length} limits`, `has more than ${MAX_LIMITS_PER_POLICY} limits`, 'split the policy')
  // Array.from, not map(): a hole in a sparse list must be rejected, not kept.
  const limits = Array.from(raw.limits as unknown[], (l, j) => validateLimit(l, `${path}.limits[${j}]`, j))
  const seen = new Set<string>()
  limits.forEach((l, j) => {
    if (seen.has(l.id)) fail(`${path}.limits[${j}].id`, l.id, 'repeats the id of an earlier limit in this policy', 'give each limit of a policy its own id')
    seen.add(l.id)
    if (raw.strict === true && l.algorithm !== 'fixed-window') {
      fail(`${path}.limits[${j}].algorithm`, l.algorithm, 'cannot be strict: strict mode escrows the rights of fixed windows', 'use algorithm: fixed-window, or remove strict')
    }
  })
  return {
    id,
    description: raw.description as string | undefined,
    match,
    key,
    group,
    priority,
    scope: scope as Scope,
    shadow: raw.shadow === true,
    onPartition: onPartition as PartitionMode,
    strict: raw.strict === true,
    replaces,
    ipv4Prefix,
    ipv6Prefix,
    limits,
    order
  }
}

/**
 * Validates a policy document (an object already parsed from JSON or YAML) and fills
 * in defaults. Throws a MeshlimitError with code MESHLIMIT_POLICY_INVALID naming the
 * first offending field, its value and the fix.
 */
export function validatePolicies (doc: unknown): PolicySet {
  if (Array.isArray(doc)) doc = { policies: doc }
  if (!isRecord(doc)) fail('document', doc, 'must be an object with a policies list', 'write { policies: [...] }')
  rejectUnknown(doc, DOC_FIELDS, 'document')
  const version = doc.version === undefined ? 0 : integer(doc.version, 'version', 0, Number.MAX_SAFE_INTEGER, 'a non-negative integer version')
  if (!Array.isArray(doc.policies)) fail('policies', doc.policies, 'must be a list', 'write policies: [ { id: ..., limits: [...] } ]')
  if (doc.policies.length > MAX_POLICIES) fail('policies', `${doc.policies.length} policies`, `has more than ${MAX_POLICIES} policies`, 'key policies on descriptor fields instead of listing values')
  // Array.from, not map(): a hole in a sparse list must be rejected, not kept.
  const policies = Array.from(doc.policies as unknown[], (p, i) => validatePolicy(p, `policies[${i}]`, i))
  const escrow = validateEscrow(doc.escrow)
  policies.forEach((p, i) => {
    if (p.strict && escrow === undefined) fail(`policies[${i}].strict`, true, 'needs escrow holders', 'add escrow: { holders: [<peer id>, ...] } at the top of the document: the nodes that own each window\'s rights')
  })
  const ids = new Map<string, number>()
  policies.forEach((p, i) => {
    const prev = ids.get(p.id)
    if (prev !== undefined) fail(`policies[${i}].id`, p.id, `repeats the id of policies[${prev}]`, 'give every policy a unique id')
    ids.set(p.id, i)
  })
  policies.forEach((p, i) => {
    p.replaces.forEach((r, j) => {
      if (!ids.has(r)) fail(`policies[${i}].replaces[${j}]`, r, 'is not the id of a policy in this document', 'name an existing policy, or remove the entry')
    })
  })
  const set: PolicySet = deepFreeze({ version, escrow, policies })
  validated.add(set)
  return set
}

function validateEscrow (raw: unknown): { holders: string[] } | undefined {
  if (raw === undefined) return undefined
  if (!isRecord(raw)) fail('escrow', raw, 'must be an object', 'write escrow: { holders: [<peer id>, ...] }')
  rejectUnknown(raw, ['holders'], 'escrow')
  if (!Array.isArray(raw.holders) || raw.holders.length === 0 || raw.holders.length > MAX_HOLDERS) {
    fail('escrow.holders', raw.holders, `must be a list of 1 to ${MAX_HOLDERS} peer ids`, 'list the peer ids (meshlimit start prints its own) of a few stable nodes every node can reach')
  }
  const holders = Array.from(raw.holders as unknown[], (h, j) => {
    if (typeof h !== 'string' || !PEER_PATTERN.test(h)) fail(`escrow.holders[${j}]`, h, 'is not a peer id', 'write the peer id a node prints at start, e.g. 12D3KooW...')
    return h
  })
  if (new Set(holders).size !== holders.length) fail('escrow.holders', holders, 'lists a peer twice', 'list each holder once')
  return { holders: holders.sort() }
}

function deepFreeze<T> (v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k])
  }
  return v
}

/**
 * Parses a policy document from JSON or YAML text (YAML is a superset of JSON) and
 * validates it. Syntax errors throw MESHLIMIT_POLICY_PARSE with the line and column.
 */
export function parsePolicies (text: string, source = 'policy document'): PolicySet {
  let doc: unknown
  try {
    doc = parseYaml(text, { prettyErrors: true, uniqueKeys: true, maxAliasCount: 100 })
  } catch (err) {
    const detail = err instanceof Error ? err.message.split('\n')[0] : String(err)
    throw new MeshlimitError(ErrorCode.POLICY_PARSE, `${source} is not valid YAML or JSON: ${detail}. Fix: correct the syntax at the position shown`, 'document', show(text))
  }
  return validatePolicies(doc)
}
