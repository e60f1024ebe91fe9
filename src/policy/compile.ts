import { hashString } from '../../crdt/hash.js'
import { ErrorCode, invalid } from '../errors.js'
import type { LimitRuntime } from '../algorithms.js'
import { cidrContains, ipKey, parseCidr, type Cidr } from './ip.js'
import type { Descriptor, Policy, PolicySet } from './types.js'

/** Reads a descriptor field, which must be a string or absent. */
function read (d: Descriptor, field: string): string | undefined {
  const v = d[field]
  if (v === undefined || typeof v === 'string') return v
  throw invalid(ErrorCode.DESCRIPTOR_INVALID, `descriptor.${field}`, v, 'must be a string', 'pass descriptor values as strings (String(value)), or leave the field out')
}

/** One precompiled match condition on a descriptor field. */
class FieldCondition {
  readonly field: string
  private readonly any: boolean
  private readonly single: string | undefined
  private readonly exact: Set<string> | undefined
  private readonly prefixes: readonly string[]
  private readonly cidrs: readonly Cidr[]
  /** Literal patterns only: counts as an exact condition for precedence. */
  readonly isExact: boolean
  /** Characters of literal text in patterns (longer prefixes are more specific). */
  readonly literalLength: number

  constructor (field: string, patterns: readonly string[]) {
    this.field = field
    const exact: string[] = []
    const prefixes: string[] = []
    const cidrs: Cidr[] = []
    let any = false
    for (const p of patterns) {
      if (p === '*') any = true
      else if (field === 'ip' && (p.includes('/') || p.includes(':') || p.includes('.'))) cidrs.push(parseCidr(p) as Cidr)
      else if (p.endsWith('*')) prefixes.push(p.slice(0, -1))
      else exact.push(p)
    }
    this.any = any
    this.single = exact.length === 1 ? exact[0] : undefined
    this.exact = exact.length > 1 ? new Set(exact) : undefined
    this.prefixes = prefixes
    this.cidrs = cidrs
    this.isExact = !any && prefixes.length === 0 && cidrs.every(c => c.prefix === (c.v6 ? 128 : 32))
    // A CIDR block is as specific as its prefix length, not its spelling ("10.0.0.0/8" vs "10.0.0.0/9").
    this.literalLength = any ? 0 : Math.min(...exact.map(p => p.length), ...prefixes.map(p => p.length), ...cidrs.map(c => c.prefix))
  }

  test (d: Descriptor): boolean {
    const v = read(d, this.field)
    if (v === undefined) return false
    if (this.any) return true
    if (v === this.single) return true
    if (this.exact !== undefined && this.exact.has(v)) return true
    for (let i = 0; i < this.prefixes.length; i++) if (v.startsWith(this.prefixes[i])) return true
    for (let i = 0; i < this.cidrs.length; i++) if (cidrContains(this.cidrs[i], v)) return true
    return false
  }
}

/** Options that shape counter keys. */
export interface KeyOptions {
  /** Keys longer than this are replaced by a 106-bit digest so memory per key stays bounded. */
  maxKeyLength: number
}

/** Separator-free join: every value but the last is length-prefixed, so no two tuples collide. */
function joinKey (parts: readonly string[]): string {
  let out = ''
  for (let j = 0; j < parts.length - 1; j++) out += String(parts[j].length) + ':' + parts[j]
  return out + parts[parts.length - 1]
}

/** A policy compiled to a matcher and a key function; `runtimes` are bound by the limiter. */
export class CompiledPolicy {
  readonly policy: Policy
  readonly id: string
  readonly shadow: boolean
  private readonly conditions: readonly FieldCondition[]
  private readonly keyFields: readonly string[]
  private readonly single: string | undefined
  private readonly ipAt: number
  private readonly maxKeyLength: number
  /** Precedence within a group: larger sorts first. */
  readonly rank: readonly number[]
  /** The runtimes of the policy's limits, in order; bound by the limiter after compiling. */
  runtimes: LimitRuntime[] = []
  /** The same without concurrency limits (what check() evaluates). */
  rateRuntimes: LimitRuntime[] = []
  /** Policies that replace this one, with their groups: when one of them leads its group, this one does not apply. */
  replacedBy: ReadonlyArray<{ readonly group: CompiledGroup, readonly policy: CompiledPolicy }> = []

  constructor (policy: Policy, o: KeyOptions) {
    this.policy = policy
    this.id = policy.id
    this.shadow = policy.shadow
    this.conditions = policy.match.map(c => new FieldCondition(c.field, c.patterns))
    this.keyFields = policy.key
    this.single = policy.key.length === 1 ? policy.key[0] : undefined
    this.ipAt = policy.key.indexOf('ip')
    this.maxKeyLength = o.maxKeyLength
    const exact = this.conditions.filter(c => c.isExact).length
    const patterns = this.conditions.length - exact
    const literal = this.conditions.reduce((n, c) => n + c.literalLength, 0)
    this.rank = [policy.priority, exact, patterns, literal, -policy.order]
  }

  /**
   * The counter key when every condition holds and every key field is present, else
   * undefined. The key is "" when the policy keys on nothing (one shared counter).
   */
  keyIfMatch (d: Descriptor): string | undefined {
    const cs = this.conditions
    for (let i = 0; i < cs.length; i++) if (!cs[i].test(d)) return undefined
    let key: string
    if (this.single !== undefined) {
      const v = read(d, this.single)
      if (v === undefined) return undefined
      key = this.ipAt === 0 ? ipKey(v, this.policy.ipv4Prefix, this.policy.ipv6Prefix) : v
    } else if (this.keyFields.length === 0) {
      return ''
    } else {
      const ks = this.keyFields
      const parts = new Array<string>(ks.length)
      for (let i = 0; i < ks.length; i++) {
        const v = read(d, ks[i])
        if (v === undefined) return undefined
        parts[i] = i === this.ipAt ? ipKey(v, this.policy.ipv4Prefix, this.policy.ipv6Prefix) : v
      }
      key = joinKey(parts)
    }
    return key.length > this.maxKeyLength ? digestKey(key) : key
  }
}

/** A fixed-size stand-in for an over-long key: two independent 53-bit hashes. */
export function digestKey (key: string): string {
  return '~' + hashString(key, 0x5eed1).toString(36) + '.' + hashString(key, 0x5eed2).toString(36)
}

function compareRank (a: CompiledPolicy, b: CompiledPolicy): number {
  for (let i = 0; i < a.rank.length; i++) {
    if (a.rank[i] !== b.rank[i]) return b.rank[i] - a.rank[i]
  }
  return 0
}

/** Policies competing for one group, most specific first. */
export class CompiledGroup {
  readonly name: string
  readonly policies: readonly CompiledPolicy[]

  constructor (name: string, policies: CompiledPolicy[]) {
    this.name = name
    this.policies = policies.sort(compareRank)
  }

  /**
   * The winning policy for `d` (the first match in precedence order) with its counter
   * key left in `lastKey`, or undefined when none matches or the first match is
   * replaced by a policy that leads its own group for `d`.
   */
  winner (d: Descriptor): CompiledPolicy | undefined {
    const p = this.first(d)
    if (p === undefined || p.replacedBy.length === 0) return p
    const key = this.lastKey
    for (const r of p.replacedBy) {
      // As in Envoy, a replacing policy counts whenever it matched, even if it is itself replaced.
      if (r.group.first(d) === r.policy) return undefined
    }
    this.lastKey = key
    return p
  }

  /** The first policy matching `d` in precedence order (its key left in `lastKey`), ignoring replacements. */
  first (d: Descriptor): CompiledPolicy | undefined {
    const ps = this.policies
    for (let i = 0; i < ps.length; i++) {
      const key = ps[i].keyIfMatch(d)
      if (key !== undefined) {
        this.lastKey = key
        return ps[i]
      }
    }
    return undefined
  }

  /** The key of the last winner() match (valid until the next call). */
  lastKey = ''
}

/** A policy set compiled for matching: groups in document order of first appearance. */
export interface CompiledPolicies {
  readonly set: PolicySet
  readonly groups: readonly CompiledGroup[]
  readonly byId: ReadonlyMap<string, CompiledPolicy>
  /** The most limits one request can match (sizes the limiter's scratch space). */
  readonly maxLimitsPerRequest: number
}

/**
 * Compiles a validated policy set. Precedence inside a group: higher `priority`, then
 * more exact conditions, then more pattern conditions, then longer literal text in
 * patterns, then earlier position in the document.
 */
export function compilePolicies (set: PolicySet, o: KeyOptions): CompiledPolicies {
  const byGroup = new Map<string, CompiledPolicy[]>()
  const byId = new Map<string, CompiledPolicy>()
  for (const p of set.policies) {
    const c = new CompiledPolicy(p, o)
    byId.set(p.id, c)
    const list = byGroup.get(p.group)
    if (list === undefined) byGroup.set(p.group, [c])
    else list.push(c)
  }
  const groups = [...byGroup].map(([name, ps]) => new CompiledGroup(name, ps))
  const groupOf = new Map<CompiledPolicy, CompiledGroup>()
  for (const g of groups) for (const p of g.policies) groupOf.set(p, g)
  const replacedBy = new Map<string, Array<{ group: CompiledGroup, policy: CompiledPolicy }>>()
  for (const p of set.policies) {
    const c = byId.get(p.id) as CompiledPolicy
    for (const r of p.replaces) {
      const list = replacedBy.get(r) ?? []
      list.push({ group: groupOf.get(c) as CompiledGroup, policy: c })
      replacedBy.set(r, list)
    }
  }
  for (const [id, list] of replacedBy) {
    const target = byId.get(id)
    if (target !== undefined) target.replacedBy = list
  }
  let maxLimitsPerRequest = 0
  for (const g of groups) maxLimitsPerRequest += Math.max(...g.policies.map(p => p.policy.limits.length))
  return { set, groups, byId, maxLimitsPerRequest }
}
