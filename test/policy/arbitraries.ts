import fc from 'fast-check'
import { MAX_LIMIT, MAX_SLOTS, MAX_WINDOW_MS } from '../../src/policy/validate.js'
import type { Limit, Policy } from '../../src/policy/types.js'

type Obj = Record<string, unknown>

export const idArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,15}$/)

/** Descriptor field names: the well-known ones and arbitrary well-formed ones. */
export const fieldArb = fc.oneof(
  fc.constantFrom('user', 'client', 'apiKey', 'ip', 'route', 'method', 'plan'),
  fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.-]{0,11}$/).filter(f => !(f in Object.prototype))
)

/** An IPv4 address as a dotted quad. */
export function v4 (n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

const u32 = fc.integer({ min: 0, max: 0xffffffff })
const hextet = fc.oneof(fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff }))

const ipPatternArb = fc.oneof(
  fc.constant('*'),
  fc.tuple(u32, fc.integer({ min: 0, max: 32 })).map(([n, p]) => `${v4(n)}/${p}`),
  u32.map(v4),
  fc.tuple(fc.array(hextet, { minLength: 8, maxLength: 8 }), fc.integer({ min: 0, max: 128 }))
    .map(([g, p]) => `${g.map(h => h.toString(16)).join(':')}/${p}`)
)

const literalArb = fc.string({ minLength: 1, maxLength: 12 }).map(s => s.replaceAll('*', '_'))
const patternArb = fc.oneof(fc.constant('*'), literalArb, literalArb.map(s => s + '*'), fc.constant('/v1/*'))

function patternsFor (field: string): fc.Arbitrary<string | string[]> {
  const one = field === 'ip' ? ipPatternArb : patternArb
  return fc.oneof(one, fc.array(one, { minLength: 1, maxLength: 4 }))
}

const matchArb: fc.Arbitrary<Obj> = fc.uniqueArray(fieldArb, { maxLength: 4 })
  .chain(fields => fc.tuple(...fields.map(patternsFor)).map(ps => Object.fromEntries(fields.map((f, i) => [f, ps[i]]))))

const UNITS: Array<[string, number, number]> = [['ms', 1, 100_000], ['s', 1000, 100_000], ['m', 60_000, 10_000], ['h', 3_600_000, 744], ['d', 86_400_000, 31]]

/** A window as windowMs or as a duration string, at least `min` ms long. */
function windowArb (min: number): fc.Arbitrary<Obj> {
  return fc.oneof(
    fc.integer({ min, max: MAX_WINDOW_MS }).map(windowMs => ({ windowMs })),
    fc.tuple(fc.integer({ min: 0, max: UNITS.length - 1 }), fc.nat()).map(([u, n]) => {
      const [unit, ms, max] = UNITS[u]
      const lo = Math.ceil(min / ms)
      return { window: `${lo + (n % (max - lo + 1))}${unit}` }
    })
  )
}

const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined })
const limitValue = fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: MAX_LIMIT }))

export const limitSpecArb: fc.Arbitrary<Obj> = fc.oneof(
  fc.tuple(fc.constantFrom(undefined, 'sliding-window'), limitValue, opt(fc.integer({ min: 1, max: MAX_SLOTS })))
    .chain(([algorithm, limit, slots]) => windowArb(slots ?? 10).map(w => ({ algorithm, limit, slots, ...w }))),
  fc.tuple(limitValue, fc.constantFrom(undefined, 1), windowArb(1))
    .map(([limit, slots, w]) => ({ algorithm: 'fixed-window', limit, slots, ...w })),
  fc.tuple(fc.oneof(fc.integer({ min: 1, max: 100_000 }), fc.double({ min: 0.5, max: 100_000, noNaN: true })), fc.integer({ min: 1, max: 1_000_000 }), opt(fc.integer({ min: 1, max: MAX_SLOTS })))
    .map(([ratePerSecond, burst, slots]) => ({ algorithm: 'token-bucket', ratePerSecond, burst, slots })),
  fc.tuple(limitValue, opt(fc.integer({ min: 10, max: MAX_WINDOW_MS })))
    .map(([limit, leaseTtlMs]) => ({ algorithm: 'concurrency', limit, leaseTtlMs }))
).chain(l => opt(idArb).map(id => ({ id, ...l })))

export const policySpecArb = (id: string): fc.Arbitrary<Obj> => fc.record({
  description: opt(fc.string({ maxLength: 20 })),
  match: opt(matchArb),
  key: opt(fc.oneof(fieldArb, fc.uniqueArray(fieldArb, { maxLength: 4 }))),
  group: opt(fc.string({ maxLength: 20 })),
  priority: opt(fc.integer({ min: -1_000_000, max: 1_000_000 })),
  scope: opt(fc.constantFrom('node', 'region', 'global')),
  shadow: opt(fc.boolean()),
  onPartition: opt(fc.constantFrom('share', 'closed', 'open')),
  ipv4Prefix: opt(fc.integer({ min: 0, max: 32 })),
  ipv6Prefix: opt(fc.integer({ min: 0, max: 128 })),
  limits: fc.array(limitSpecArb, { minLength: 1, maxLength: 4 })
    .filter(ls => new Set(ls.map((l, j) => l.id ?? String(j))).size === ls.length)
}).map(p => ({ id, ...p }))

/** A valid policy document: an object with an optional version, or a bare list of policies. */
export const documentArb: fc.Arbitrary<unknown> = fc.uniqueArray(idArb, { minLength: 1, maxLength: 5 })
  .chain(ids => fc.tuple(...ids.map(policySpecArb)))
  .chain(policies => fc.oneof(
    fc.constant<unknown>(policies),
    opt(fc.nat()).map(version => ({ version, policies }))
  ))

/** What validation should make of a limit spec, computed from the documented defaults. */
export function expectedLimit (l: Obj, j: number): Limit {
  const id = (l.id as string | undefined) ?? String(j)
  const algorithm = (l.algorithm as Limit['algorithm'] | undefined) ?? 'sliding-window'
  const windowMs = (): number => {
    if (l.windowMs !== undefined) return l.windowMs as number
    const [, n, unit] = /^(\d+)(ms|s|m|h|d)$/.exec(l.window as string) as RegExpExecArray
    return Number(n) * (UNITS.find(u => u[0] === unit) as [string, number, number])[1]
  }
  switch (algorithm) {
    case 'sliding-window': return { id, algorithm, limit: l.limit as number, windowMs: windowMs(), slots: (l.slots as number | undefined) ?? 10, ratePerSecond: 0 }
    case 'fixed-window': return { id, algorithm, limit: l.limit as number, windowMs: windowMs(), slots: 1, ratePerSecond: 0 }
    case 'token-bucket': {
      const rate = l.ratePerSecond as number
      const burst = l.burst as number
      return { id, algorithm, limit: burst, windowMs: Math.max(1, Math.ceil(burst / rate * 1000)), slots: (l.slots as number | undefined) ?? 10, ratePerSecond: rate }
    }
    case 'concurrency': return { id, algorithm, limit: l.limit as number, windowMs: (l.leaseTtlMs as number | undefined) ?? 60_000, slots: 10, ratePerSecond: 0 }
  }
}

/** What validation should make of a policy spec, computed from the documented defaults. */
export function expectedPolicy (p: Obj, order: number): Policy {
  const key = p.key === undefined ? [] : typeof p.key === 'string' ? [p.key] : p.key as string[]
  const match = Object.entries((p.match ?? {}) as Record<string, string | string[]>)
    .map(([field, ps]) => ({ field, patterns: Array.isArray(ps) ? ps : [ps] }))
  return {
    id: p.id as string,
    description: p.description as string | undefined,
    match: match.sort((a, b) => a.field < b.field ? -1 : 1),
    key,
    group: (p.group as string | undefined) ?? [...key].sort().join('+'),
    priority: (p.priority as number | undefined) ?? 0,
    scope: (p.scope as Policy['scope'] | undefined) ?? 'global',
    shadow: (p.shadow as boolean | undefined) ?? false,
    onPartition: (p.onPartition as Policy['onPartition'] | undefined) ?? 'share',
    strict: false,
    replaces: [],
    ipv4Prefix: (p.ipv4Prefix as number | undefined) ?? 32,
    ipv6Prefix: (p.ipv6Prefix as number | undefined) ?? 64,
    limits: (p.limits as Obj[]).map(expectedLimit),
    order
  }
}

/** A policy set written back as a document with every field explicit. */
export function toDocument (policies: readonly Policy[]): Obj[] {
  return policies.map(p => ({
    id: p.id,
    ...(p.description === undefined ? {} : { description: p.description }),
    match: Object.fromEntries(p.match.map(c => [c.field, [...c.patterns]])),
    key: [...p.key],
    group: p.group,
    priority: p.priority,
    scope: p.scope,
    shadow: p.shadow,
    onPartition: p.onPartition,
    ipv4Prefix: p.ipv4Prefix,
    ipv6Prefix: p.ipv6Prefix,
    limits: p.limits.map(l => {
      switch (l.algorithm) {
        case 'sliding-window': return { id: l.id, algorithm: l.algorithm, limit: l.limit, windowMs: l.windowMs, slots: l.slots }
        case 'fixed-window': return { id: l.id, algorithm: l.algorithm, limit: l.limit, windowMs: l.windowMs, slots: 1 }
        case 'token-bucket': return { id: l.id, algorithm: l.algorithm, ratePerSecond: l.ratePerSecond, burst: l.limit, slots: l.slots }
        case 'concurrency': return { id: l.id, algorithm: l.algorithm, limit: l.limit, leaseTtlMs: l.windowMs }
      }
    })
  }))
}
