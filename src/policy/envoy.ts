import { createHash } from 'node:crypto'
import { isAlias, isMap, isScalar, isSeq, parseAllDocuments, type Document } from 'yaml'
import { ErrorCode, MeshlimitError, invalid } from '../errors.js'
import type { LimitSpec, PolicyDocument, PolicySpec } from './types.js'
import { parseCidr } from './ip.js'
import { ID_PATTERN, MAX_LIMIT, isFieldName, validatePolicies } from './validate.js'

/**
 * envoyproxy/ratelimit configuration (YAML: `domain` + nested `descriptors`) read as a
 * meshlimit policy document, so an Envoy user brings their files unchanged.
 *
 * Each descriptor node with a `rate_limit` becomes a policy: levels with a value become
 * match conditions, levels without one (and wildcard levels, unless
 * `share_threshold`) become key fields, so each distinct value has its own counter as
 * in Envoy. Policies of one domain and top-level key form a group, ranked as Envoy
 * looks them up: deeper descriptors first, then level by level exact value, wildcard
 * (in file order), key only. See docs/policies.md for what does not map.
 */
export interface EnvoyConvertInit {
  /**
   * Descriptor field that must equal the domain for a domain's policies to apply.
   * Without it the domain only prefixes policy ids and group names.
   * @default undefined
   */
  domainField?: string
  /**
   * Algorithm of converted limits. Envoy counts in fixed windows aligned to the unit.
   * @default "fixed-window"
   */
  algorithm?: 'fixed-window' | 'sliding-window'
  /** Version of the produced document. @default none */
  version?: number
}

export interface EnvoyConversion {
  document: PolicyDocument
  /** Envoy settings that were read but have no effect in meshlimit (metrics naming, metadata). */
  warnings: string[]
}

const UNITS: Record<string, string> = { second: '1s', minute: '1m', hour: '1h', day: '1d', week: '7d', month: '30d' }
const ROOT_FIELDS = ['domain', 'descriptors']
const DESCRIPTOR_FIELDS = ['key', 'value', 'rate_limit', 'descriptors', 'shadow_mode', 'quota_mode', 'detailed_metric', 'value_to_metric', 'share_threshold', 'metadata']
const RATE_LIMIT_FIELDS = ['requests_per_unit', 'unit', 'unlimited', 'name', 'replaces']
const METRIC_ONLY = ['detailed_metric', 'value_to_metric', 'metadata']
/** Deepest descriptor nesting read (Envoy has no limit; ours keeps ids and recursion bounded). */
const MAX_DEPTH = 16
/** Limit of an `unlimited` descriptor: never reached in practice (2^32 - 1 per second, per node). */
const UNLIMITED: LimitSpec = { id: 'unlimited', algorithm: 'fixed-window', limit: MAX_LIMIT, window: '1s' }

/** A YAML plain scalar that resolved to a number or boolean, with its source text (Go reads string fields as the text). */
class Raw {
  constructor (readonly value: unknown, readonly source: string) {}
}

type Obj = Record<string, unknown>

function fail (field: string, value: unknown, problem: string, fix: string): never {
  throw invalid(ErrorCode.POLICY_INVALID, field, value instanceof Raw ? value.source : value, problem, fix)
}

function isObj (v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Raw)
}

/** A string field as Go's yaml.v2 reads it: plain scalars keep their text, null is "". */
function str (v: unknown, field: string): string {
  if (v === undefined || v === null) return ''
  if (typeof v === 'string') return v
  if (v instanceof Raw) return v.source
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  return fail(field, v, 'must be a string', 'write a plain value')
}

function bool (v: unknown, field: string): boolean {
  if (v === undefined || v === null) return false
  const x = v instanceof Raw ? v.value : v
  if (typeof x === 'boolean') return x
  if (typeof x === 'string' && /^(true|false)$/i.test(x)) return x.toLowerCase() === 'true'
  return fail(field, v, 'must be true or false', 'write true or false')
}

function uint32 (v: unknown, field: string): number {
  const x = v instanceof Raw ? v.value : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v
  if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > MAX_LIMIT) fail(field, v, `must be an integer from 0 to ${MAX_LIMIT}`, 'write the number of requests per unit')
  return x
}

function list (v: unknown, field: string): unknown[] {
  if (v === undefined || v === null || v === '') return []
  if (!Array.isArray(v)) fail(field, v, 'must be a list', 'write a YAML list (lines starting with "- ")')
  return v
}

function checkFields (o: Obj, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) fail(`${path}.${k}`, o[k], 'is not an envoyproxy/ratelimit field', `allowed fields here are ${allowed.join(', ')}`)
  }
}

/** One level of a descriptor path. */
interface Level {
  key: string
  value: string
  kind: 'exact' | 'wildcard' | 'any'
  /** Position among the wildcard siblings of its parent (Envoy tries them in file order). */
  wildcardIndex: number
  shareThreshold: boolean
}

interface Node {
  domain: string
  path: Level[]
  /** Where the node is in the file, for error messages. */
  at: string
  limit: Obj | undefined
  shadow: boolean
  /** True when the node has no rate limit but must block less specific ones (Envoy finds no limit there). */
  blocker: boolean
}

/** Reads a YAML node tree as plain values, keeping the source text of non-string scalars. */
function plain (node: unknown, doc: Document, budget: { nodes: number }): unknown {
  if (--budget.nodes < 0) throw new MeshlimitError(ErrorCode.POLICY_INVALID, 'the Envoy configuration has more than 1000000 YAML nodes (or aliases expanding to them). Fix: split it into several files', 'document')
  if (isAlias(node)) return plain(node.resolve(doc), doc, budget)
  if (isMap(node)) {
    const out: Obj = {}
    for (const pair of node.items) {
      const k = plain(pair.key, doc, budget)
      const name = k instanceof Raw ? k.source : String(k)
      if (name === '__proto__') fail(name, name, 'is not an envoyproxy/ratelimit field', 'remove it')
      out[name] = plain(pair.value, doc, budget)
    }
    return out
  }
  if (isSeq(node)) return node.items.map(n => plain(n, doc, budget))
  if (isScalar(node)) {
    const v = node.value
    if (v === null || typeof v === 'string') return v
    return new Raw(v, typeof node.source === 'string' ? node.source : String(v))
  }
  return node ?? null
}

/**
 * Parses envoyproxy/ratelimit YAML (one domain per YAML document; several documents
 * separated by `---` are several domains) into plain objects. YAML 1.1, as Envoy's Go
 * reader: `yes`/`no` are booleans there; string fields keep their text either way.
 */
export function parseEnvoyYaml (text: string, source = 'Envoy configuration'): unknown[] {
  const docs = parseAllDocuments(text, { version: '1.1', uniqueKeys: true, prettyErrors: true })
  if (!Array.isArray(docs)) return []
  const budget = { nodes: 1_000_000 }
  return docs.map(d => {
    if (d.errors.length > 0) {
      throw new MeshlimitError(ErrorCode.POLICY_PARSE, `${source} is not valid YAML: ${d.errors[0].message.split('\n')[0]}. Fix: correct the syntax at the position shown`, 'document')
    }
    return plain(d.contents, d, budget)
  }).filter(d => d !== null)
}

/** Whether a parsed document is an envoyproxy/ratelimit configuration (it has a domain and no policies). */
export function isEnvoyConfig (doc: unknown): boolean {
  const one = Array.isArray(doc) ? doc[0] : doc
  return isObj(one) && 'domain' in one && !('policies' in one)
}

function levelName (l: Level): string {
  return l.kind === 'any' ? l.key : `${l.key}_${l.value}`
}

/** A policy id from a name or a path: valid, and stable across conversions of the same file. */
function makeId (domain: string, tail: string, taken: Set<string>): string {
  const raw = `${domain}.${tail}`
  let id = raw
  if (!ID_PATTERN.test(id) || taken.has(id)) {
    const hash = createHash('sha256').update(raw).digest('hex').slice(0, 8)
    const clean = raw.replace(/[^A-Za-z0-9_.:-]/g, '_').replace(/^[^A-Za-z0-9]+/, '').slice(0, 54)
    id = `${clean === '' ? 'envoy' : clean}-${hash}`
  }
  taken.add(id)
  return id
}

/** Compares two nodes of one group by Envoy's lookup preference; negative when `a` is preferred. */
function preference (a: Node, b: Node): number {
  if (a.path.length !== b.path.length) return b.path.length - a.path.length
  const rank = { exact: 2, wildcard: 1, any: 0 }
  for (let i = 0; i < a.path.length; i++) {
    const x = a.path[i]
    const y = b.path[i]
    if (rank[x.kind] !== rank[y.kind]) return rank[y.kind] - rank[x.kind]
    if (x.kind === 'wildcard' && x.wildcardIndex !== y.wildcardIndex) return x.wildcardIndex - y.wildcardIndex
  }
  return 0
}

/** Converts parsed envoyproxy/ratelimit configurations (one per domain) to a policy document. */
export function envoyToPolicies (input: string | unknown, init: EnvoyConvertInit = {}): EnvoyConversion {
  const docs = typeof input === 'string' ? parseEnvoyYaml(input) : Array.isArray(input) ? input : [input]
  const algorithm = init.algorithm ?? 'fixed-window'
  if (algorithm !== 'fixed-window' && algorithm !== 'sliding-window') fail('algorithm', algorithm, 'must be fixed-window or sliding-window', 'leave it out for Envoy\'s fixed windows')
  if (init.domainField !== undefined && !isFieldName(init.domainField)) fail('domainField', init.domainField, 'is not a valid descriptor field name', 'use letters, digits, "_", "." or "-"')
  const warnings: string[] = []
  const nodes: Node[] = []
  const domains = new Set<string>()
  docs.forEach((doc, d) => {
    const at = docs.length > 1 ? `documents[${d}]` : 'document'
    if (!isObj(doc)) fail(at, doc, 'must be a mapping with domain and descriptors', 'write domain: <name> and descriptors: [...]')
    checkFields(doc, ROOT_FIELDS, at)
    const domain = str(doc.domain, `${at}.domain`)
    if (domain === '') fail(`${at}.domain`, doc.domain, 'is required', 'name the domain, as in Envoy\'s rate limit filter')
    if (domains.has(domain)) fail(`${at}.domain`, domain, 'repeats a domain of an earlier document', 'merge the two files\' descriptors into one domain')
    domains.add(domain)
    walk(domain, list(doc.descriptors, `${at}.descriptors`), [], `${at}.descriptors`, nodes, warnings)
  })
  if (domains.size > 1 && init.domainField === undefined) {
    warnings.push(`${domains.size} domains without domainField: every domain's limits apply to every request that matches them; set domainField to tell domains apart`)
  }
  markBlockers(nodes)
  const policies = toPolicies(nodes, init, algorithm, warnings)
  const document: PolicyDocument = init.version === undefined ? { policies } : { version: init.version, policies }
  // The output is a meshlimit document like any other: prove it before handing it out.
  validatePolicies(document)
  return { document, warnings }
}

function walk (domain: string, descriptors: unknown[], parent: Level[], path: string, out: Node[], warnings: string[]): void {
  const seen = new Set<string>()
  let wildcards = 0
  descriptors.forEach((raw, i) => {
    const at = `${path}[${i}]`
    if (!isObj(raw)) fail(at, raw, 'must be a mapping', 'write a descriptor such as { key: remote_address, rate_limit: {...} }')
    checkFields(raw, DESCRIPTOR_FIELDS, at)
    const key = str(raw.key, `${at}.key`)
    if (key === '') fail(`${at}.key`, raw.key, 'is required', 'give every descriptor a key')
    if (!isFieldName(key)) fail(`${at}.key`, key, 'is not a field name meshlimit can match on', 'use letters, digits, "_", "." or "-" (rename the descriptor key in Envoy\'s route config too)')
    if (parent.some(l => l.key === key)) fail(`${at}.key`, key, 'repeats the key of an enclosing descriptor, and a meshlimit descriptor holds one value per field', 'rename one of the two keys (in Envoy\'s route config too)')
    const value = str(raw.value, `${at}.value`)
    const star = value.indexOf('*')
    if (star >= 0 && star !== value.length - 1) fail(`${at}.value`, value, 'has a "*" before its end; meshlimit matches prefixes ("abc*") only', 'use a trailing wildcard, or list the values')
    const kind: Level['kind'] = value === '' ? 'any' : star >= 0 ? 'wildcard' : 'exact'
    if (key === 'ip' && kind !== 'any' && parseCidr(value) === undefined) {
      fail(`${at}.value`, value, 'is not an IP address or CIDR block, and meshlimit reads the field "ip" as an address', 'rename the descriptor key (e.g. remote_address), or write an address or block')
    }
    const shareThreshold = bool(raw.share_threshold, `${at}.share_threshold`)
    if (shareThreshold && kind !== 'wildcard') fail(`${at}.share_threshold`, true, 'only applies to a wildcard value', 'remove it, or end the value with "*"')
    const level: Level = { key, value, kind, wildcardIndex: kind === 'wildcard' ? wildcards++ : 0, shareThreshold }
    const name = levelName(level)
    if (seen.has(name)) fail(at, name, 'repeats a descriptor of this list (same key and value)', 'merge the two descriptors')
    seen.add(name)
    const levels = [...parent, level]
    if (levels.length > MAX_DEPTH) fail(at, levels.map(levelName).join('.'), `nests deeper than ${MAX_DEPTH} levels`, 'flatten the descriptors')
    for (const f of METRIC_ONLY) if (raw[f] !== undefined) warnings.push(`${at}.${f}: metrics naming is not carried over (meshlimit labels metrics by policy id)`)
    if (bool(raw.quota_mode, `${at}.quota_mode`)) fail(`${at}.quota_mode`, true, 'has no meshlimit equivalent', 'remove quota_mode, or use shadow_mode to observe without enforcing')
    let limit: Obj | undefined
    if (raw.rate_limit !== undefined && raw.rate_limit !== null) {
      if (!isObj(raw.rate_limit)) fail(`${at}.rate_limit`, raw.rate_limit, 'must be a mapping', 'write unit and requests_per_unit')
      checkFields(raw.rate_limit, RATE_LIMIT_FIELDS, `${at}.rate_limit`)
      if (bool(raw.rate_limit.unlimited, `${at}.rate_limit.unlimited`) && str(raw.rate_limit.unit, `${at}.rate_limit.unit`) !== '') {
        fail(`${at}.rate_limit.unit`, raw.rate_limit.unit, 'is set on an unlimited rate limit', 'remove unit (Envoy refuses it too)')
      }
      limit = raw.rate_limit
    }
    const children = list(raw.descriptors, `${at}.descriptors`)
    out.push({ domain, path: levels, at, limit, shadow: bool(raw.shadow_mode, `${at}.shadow_mode`), blocker: false })
    walk(domain, children, levels, `${at}.descriptors`, out, warnings)
  })
}

/**
 * Envoy finds no limit for a request whose most specific descriptor has none; in
 * meshlimit a less specific (or shallower: flat descriptors match every prefix of a
 * path) policy would match instead. A node without a limit gets an unlimited policy
 * when a limited node of its group at its depth or above could otherwise win.
 */
function markBlockers (nodes: Node[]): void {
  const shallowest = new Map<string, number>()
  for (const n of nodes) {
    if (n.limit === undefined) continue
    const g = `${n.domain}\u0000${n.path[0].key}`
    shallowest.set(g, Math.min(shallowest.get(g) ?? Infinity, n.path.length))
  }
  for (const n of nodes) {
    if (n.limit === undefined) n.blocker = (shallowest.get(`${n.domain}\u0000${n.path[0].key}`) ?? Infinity) <= n.path.length
  }
}

function toPolicies (nodes: Node[], init: EnvoyConvertInit, algorithm: string, warnings: string[]): PolicySpec[] {
  const used = nodes.filter(n => n.limit !== undefined || n.blocker)
  // Names: a unique name becomes the id; every node with a name can be replaced by it.
  const named = new Map<string, Node[]>()
  for (const n of used) {
    const name = n.limit === undefined ? '' : str(n.limit.name, `${n.at}.rate_limit.name`)
    if (name !== '') named.set(`${n.domain}\u0000${name}`, [...(named.get(`${n.domain}\u0000${name}`) ?? []), n])
  }
  const taken = new Set<string>()
  const ids = new Map<Node, string>()
  for (const n of used) {
    const name = n.limit === undefined ? '' : str(n.limit.name, `${n.at}.rate_limit.name`)
    const unique = name !== '' && named.get(`${n.domain}\u0000${name}`)?.length === 1
    ids.set(n, makeId(n.domain, unique ? name : n.path.map(levelName).join('.'), taken))
  }
  // Priority: rank inside each group by Envoy's lookup preference (higher wins).
  const groups = new Map<string, Node[]>()
  for (const n of used) {
    const g = `envoy:${n.domain}:${n.path[0].key}`
    groups.set(g, [...(groups.get(g) ?? []), n])
  }
  const priority = new Map<Node, number>()
  for (const members of groups.values()) {
    const sorted = [...members].sort(preference)
    let rank = sorted.length
    sorted.forEach((n, i) => {
      if (i > 0 && preference(sorted[i - 1], n) !== 0) rank = sorted.length - i
      priority.set(n, rank)
    })
  }
  return used.map(n => {
    const match: Record<string, string> = {}
    const key: string[] = []
    if (init.domainField !== undefined) match[init.domainField] = n.domain
    const unlimited = n.limit === undefined || bool(n.limit.unlimited, `${n.at}.rate_limit.unlimited`)
    for (const l of n.path) {
      if (l.kind === 'exact') match[l.key] = l.value
      else if (l.kind === 'wildcard') {
        match[l.key] = l.value
        if (!l.shareThreshold && !unlimited) key.push(l.key)
      } else if (unlimited) match[l.key] = '*'
      else key.push(l.key)
    }
    if (init.domainField !== undefined && n.path.some(l => l.key === init.domainField)) {
      fail(`${n.at}.key`, init.domainField, 'is also the domainField', 'choose a domainField no descriptor uses')
    }
    const spec: PolicySpec = {
      id: ids.get(n) as string,
      description: `envoy ${n.domain}: ${n.path.map(l => l.kind === 'any' ? `(${l.key})` : `(${l.key}=${l.value})`).join(' ')}${n.limit === undefined ? ' (no rate limit)' : ''}`,
      group: `envoy:${n.domain}:${n.path[0].key}`,
      priority: priority.get(n) as number,
      limits: [unlimited ? UNLIMITED : limitOf(n, algorithm)]
    }
    if (Object.keys(match).length > 0) spec.match = match
    if (key.length > 0) spec.key = key
    // Envoy counts each distinct value, IPv6 included: no /64 grouping for a field named ip.
    if (key.includes('ip')) spec.ipv6Prefix = 128
    if (unlimited) spec.scope = 'node'
    if (n.shadow) spec.shadow = true
    const replaces = n.limit === undefined ? [] : list(n.limit.replaces, `${n.at}.rate_limit.replaces`)
    const targets: string[] = []
    replaces.forEach((r, j) => {
      const field = `${n.at}.rate_limit.replaces[${j}]`
      if (!isObj(r)) fail(field, r, 'must be a mapping with a name', 'write - name: <rate_limit name>')
      checkFields(r, ['name'], field)
      const name = str(r.name, `${field}.name`)
      if (name === '') fail(`${field}.name`, r.name, 'is empty', 'name the rate limit this one replaces')
      const hit = named.get(`${n.domain}\u0000${name}`)
      if (hit === undefined) {
        warnings.push(`${field}.name: no rate limit of domain ${n.domain} is named ${JSON.stringify(name)}; nothing to replace`)
        return
      }
      for (const h of hit) if (h !== n && !targets.includes(ids.get(h) as string)) targets.push(ids.get(h) as string)
    })
    if (targets.length > 0) spec.replaces = targets
    return spec
  })
}

function limitOf (n: Node, algorithm: string): LimitSpec {
  const l = n.limit as Obj
  const at = `${n.at}.rate_limit`
  const unitText = str(l.unit, `${at}.unit`).toLowerCase()
  if (unitText === 'year') fail(`${at}.unit`, l.unit, 'is longer than meshlimit\'s 31-day maximum window', 'use month (30 days) or a shorter unit with a proportional limit')
  const window = UNITS[unitText]
  if (window === undefined) fail(`${at}.unit`, l.unit, 'is not a rate limit unit', `use one of ${Object.keys(UNITS).join(', ')}`)
  if (l.requests_per_unit === undefined || l.requests_per_unit === null) fail(`${at}.requests_per_unit`, undefined, 'is required', 'add requests_per_unit: the most requests per unit')
  const limit = uint32(l.requests_per_unit, `${at}.requests_per_unit`)
  return { id: 'envoy', algorithm: algorithm as LimitSpec['algorithm'], limit, window }
}
