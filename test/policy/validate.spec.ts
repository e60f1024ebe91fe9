import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { stringify as stringifyYaml } from 'yaml'
import { ErrorCode, MeshlimitError } from '../../src/errors.js'
import { MAX_LIMIT, MAX_LIMITS_PER_POLICY, POLICY_DEFAULTS, isPolicySet, parsePolicies, validatePolicies } from '../../src/policy/validate.js'
import { compilePolicies } from '../../src/policy/compile.js'
import { documentArb, expectedPolicy, toDocument } from './arbitraries.js'
import { expectError, thrown } from './helpers.js'

const INVALID = ErrorCode.POLICY_INVALID

type Obj = Record<string, unknown>

/** A one-policy document whose policy and first limit are overridden by `p` and `l`. */
function doc (p: Obj = {}, l: Obj = {}): Obj {
  return { policies: [{ id: 'p', limits: [{ limit: 10, windowMs: 1000, ...l }], ...p }] }
}

function firstLimit (d: unknown) {
  return validatePolicies(d).policies[0].limits[0]
}

describe('validatePolicies: defaults', () => {
  it('fills in every policy and limit default', () => {
    const set = validatePolicies(doc())
    expect(set).toEqual({
      version: 0,
      escrow: undefined,
      policies: [{
        id: 'p',
        description: undefined,
        match: [],
        key: [],
        group: '',
        priority: 0,
        scope: 'global',
        shadow: false,
        onPartition: 'share',
        strict: false,
        replaces: [],
        ipv4Prefix: 32,
        ipv6Prefix: 64,
        limits: [{ id: '0', algorithm: 'sliding-window', limit: 10, windowMs: 1000, slots: 10, ratePerSecond: 0 }],
        order: 0
      }]
    })
    expect(POLICY_DEFAULTS).toEqual({ algorithm: 'sliding-window', slots: 10, leaseTtlMs: 60_000, scope: 'global', onPartition: 'share', ipv4Prefix: 32, ipv6Prefix: 64 })
  })

  it('keeps every field that is given', () => {
    const set = validatePolicies({
      version: 7,
      policies: [{
        id: 'per-user',
        description: 'd',
        match: { route: '/v1/*', method: ['GET', 'HEAD'] },
        key: ['user'],
        group: 'g',
        priority: -3,
        scope: 'region',
        shadow: true,
        ipv4Prefix: 24,
        ipv6Prefix: 48,
        limits: [{ id: 'burst', algorithm: 'sliding-window', limit: 0, windowMs: 120, slots: 120 }]
      }]
    })
    const p = set.policies[0]
    expect(set.version).toBe(7)
    expect(p).toMatchObject({ id: 'per-user', description: 'd', key: ['user'], group: 'g', priority: -3, scope: 'region', shadow: true, ipv4Prefix: 24, ipv6Prefix: 48 })
    // Match conditions are sorted by field and every pattern becomes a list.
    expect(p.match).toEqual([{ field: 'method', patterns: ['GET', 'HEAD'] }, { field: 'route', patterns: ['/v1/*'] }])
    expect(p.limits).toEqual([{ id: 'burst', algorithm: 'sliding-window', limit: 0, windowMs: 120, slots: 120, ratePerSecond: 0 }])
  })

  it('gives a fixed window one slot', () => {
    expect(firstLimit(doc({}, { algorithm: 'fixed-window' }))).toEqual({ id: '0', algorithm: 'fixed-window', limit: 10, windowMs: 1000, slots: 1, ratePerSecond: 0 })
    expect(firstLimit(doc({}, { algorithm: 'fixed-window', slots: 1 })).slots).toBe(1)
  })

  it('names limits by position unless they have an id', () => {
    const set = validatePolicies(doc({ limits: [{ limit: 1, windowMs: 1000 }, { id: 'x', limit: 2, windowMs: 1000 }, { limit: 3, windowMs: 1000 }] }))
    expect(set.policies[0].limits.map(l => l.id)).toEqual(['0', 'x', '2'])
  })

  it('defaults the group to the sorted key fields joined by "+"', () => {
    const set = validatePolicies({
      policies: [
        { id: 'a', key: ['user', 'apiKey'], limits: [{ limit: 1, windowMs: 1000 }] },
        { id: 'b', key: ['apiKey', 'user'], limits: [{ limit: 1, windowMs: 1000 }] },
        { id: 'c', key: 'ip', limits: [{ limit: 1, windowMs: 1000 }] },
        { id: 'd', key: ['route', 'ip', 'apiKey'], limits: [{ limit: 1, windowMs: 1000 }] },
        { id: 'e', key: 'ip', group: 'custom', limits: [{ limit: 1, windowMs: 1000 }] }
      ]
    })
    expect(set.policies.map(p => p.group)).toEqual(['apiKey+user', 'apiKey+user', 'ip', 'apiKey+ip+route', 'custom'])
    // The key keeps the order it was written in; only the group name is sorted.
    expect(set.policies[0].key).toEqual(['user', 'apiKey'])
    expect(set.policies[2].key).toEqual(['ip'])
  })

  it('derives a token bucket\'s window from burst and rate: ceil(burst / rate * 1000)', () => {
    expect(firstLimit(doc({}, { algorithm: 'token-bucket', limit: undefined, windowMs: undefined, ratePerSecond: 10, burst: 25 })))
      .toEqual({ id: '0', algorithm: 'token-bucket', limit: 25, windowMs: 2500, slots: 10, ratePerSecond: 10 })
    const tb = (ratePerSecond: number, burst: number, extra: Obj = {}) =>
      firstLimit({ policies: [{ id: 'p', limits: [{ algorithm: 'token-bucket', ratePerSecond, burst, ...extra }] }] })
    expect(tb(3, 10).windowMs).toBe(3334) // 3333.33... rounds up
    expect(tb(0.5, 1).windowMs).toBe(2000)
    expect(tb(MAX_LIMIT, 1).windowMs).toBe(1) // never 0
    expect(tb(10, 20, { slots: 4 }).slots).toBe(4)
  })

  it('gives concurrency limits the lease TTL as their window', () => {
    const c = (extra: Obj) => firstLimit({ policies: [{ id: 'p', limits: [{ algorithm: 'concurrency', limit: 5, ...extra }] }] })
    expect(c({})).toEqual({ id: '0', algorithm: 'concurrency', limit: 5, windowMs: 60_000, slots: 10, ratePerSecond: 0 })
    expect(c({ leaseTtlMs: 5000 }).windowMs).toBe(5000)
    expect(c({ limit: 0 }).limit).toBe(0)
  })

  it.each([
    ['500ms', 500], ['10s', 10_000], ['1m', 60_000], ['1.5m', 90_000], ['1h', 3_600_000], ['1d', 86_400_000], ['31d', 31 * 86_400_000]
  ])('reads window %j as %d ms', (window, ms) => {
    expect(firstLimit(doc({}, { windowMs: undefined, window })).windowMs).toBe(ms)
  })

  it('records each policy\'s position as its order', () => {
    const set = validatePolicies({ policies: ['a', 'b', 'c'].map(id => ({ id, limits: [{ limit: 1, windowMs: 1000 }] })) })
    expect(set.policies.map(p => [p.id, p.order])).toEqual([['a', 0], ['b', 1], ['c', 2]])
  })

  it('accepts the boundaries of every range', () => {
    expect(firstLimit(doc({}, { limit: MAX_LIMIT })).limit).toBe(MAX_LIMIT)
    expect(firstLimit(doc({}, { windowMs: 10, slots: 10 })).windowMs).toBe(10)
    expect(firstLimit(doc({}, { windowMs: 1, slots: 1 })).windowMs).toBe(1)
    const p = validatePolicies(doc({ priority: 1_000_000, ipv4Prefix: 0, ipv6Prefix: 128, id: 'a'.repeat(64) })).policies[0]
    expect([p.priority, p.ipv4Prefix, p.ipv6Prefix]).toEqual([1_000_000, 0, 128])
    expect(validatePolicies(doc({ limits: Array.from({ length: MAX_LIMITS_PER_POLICY }, () => ({ limit: 1, windowMs: 1000 })) })).policies[0].limits).toHaveLength(16)
  })

  it('accepts a top-level array as the policies list', () => {
    const set = validatePolicies([{ id: 'a', limits: [{ limit: 1, windowMs: 1000 }] }])
    expect(set.version).toBe(0)
    expect(set.policies.map(p => p.id)).toEqual(['a'])
  })
})

describe('parsePolicies', () => {
  const yaml = [
    'version: 3',
    'policies:',
    '  - id: per-user',
    '    key: [user]',
    '    match: { route: "/v1/*", method: [GET, HEAD] }',
    '    limits:',
    '      - { limit: 100, window: 1m }',
    '      - id: tb',
    '        algorithm: token-bucket',
    '        ratePerSecond: 5',
    '        burst: 10',
    '  - id: per-ip',
    '    key: ip',
    '    limits: [{ algorithm: concurrency, limit: 3 }]'
  ].join('\n')
  const object = {
    version: 3,
    policies: [
      { id: 'per-user', key: ['user'], match: { route: '/v1/*', method: ['GET', 'HEAD'] }, limits: [{ limit: 100, window: '1m' }, { id: 'tb', algorithm: 'token-bucket', ratePerSecond: 5, burst: 10 }] },
      { id: 'per-ip', key: 'ip', limits: [{ algorithm: 'concurrency', limit: 3 }] }
    ]
  }

  it('reads YAML into the same set as the equivalent object', () => {
    const set = parsePolicies(yaml)
    expect(set).toEqual(validatePolicies(object))
    expect(set.policies[0].limits[0].windowMs).toBe(60_000)
    expect(set.policies[0].limits[1].windowMs).toBe(2000)
  })

  it('reads JSON text', () => {
    expect(parsePolicies(JSON.stringify(object))).toEqual(validatePolicies(object))
  })

  it('accepts a top-level YAML or JSON array as the policies list', () => {
    const fromYaml = parsePolicies('- id: a\n  limits: [{ limit: 1, windowMs: 1000 }]\n')
    const fromJson = parsePolicies('[{"id": "a", "limits": [{"limit": 1, "windowMs": 1000}]}]')
    expect(fromYaml).toEqual(validatePolicies({ policies: [{ id: 'a', limits: [{ limit: 1, windowMs: 1000 }] }] }))
    expect(fromJson).toEqual(fromYaml)
  })

  it.each([
    ['unclosed flow sequence', 'policies: [ { id: a'],
    ['bad indentation', 'policies:\n  - id: a\n bad: 1\n    x: 2'],
    ['unterminated JSON', '{"policies": ['],
    ['tab indentation', 'policies:\n\t- id: a'],
    ['duplicate key', 'policies: []\npolicies: []']
  ])('throws MESHLIMIT_POLICY_PARSE on a syntax error (%s)', (_, text) => {
    const e = expectError(() => parsePolicies(text), ErrorCode.POLICY_PARSE, 'document')
    expect(e.message).toContain('policy document')
  })

  it('names the source in parse errors', () => {
    expect((thrown(() => parsePolicies('a: [', 'policies.yaml')) as Error).message).toContain('policies.yaml')
  })

  it('reports invalid content with its path, not as a parse error', () => {
    expectError(() => parsePolicies('policies:\n  - id: a\n    limits: [{ limit: -1, windowMs: 1000 }]'), INVALID, 'policies[0].limits[0].limit', -1)
    expectError(() => parsePolicies(''), INVALID, 'document', null)
    // YAML 1.2 reads 60_000 as a string, so it is not a number of milliseconds.
    expectError(() => parsePolicies('- id: a\n  limits: [{ limit: 1, windowMs: 60_000 }]'), INVALID, 'policies[0].limits[0].windowMs', '60_000')
  })
})

describe('validatePolicies: invalid input', () => {
  const tb = { algorithm: 'token-bucket', limit: undefined, windowMs: undefined, ratePerSecond: 10, burst: 20 }
  const cc = { algorithm: 'concurrency', windowMs: undefined }
  const L = 'policies[0].limits[0]'
  const cases: Array<[string, unknown, string, unknown]> = [
    ['negative limit', doc({}, { limit: -1 }), `${L}.limit`, -1],
    ['non-integer limit', doc({}, { limit: 1.5 }), `${L}.limit`, 1.5],
    ['limit above MAX_LIMIT', doc({}, { limit: MAX_LIMIT + 1 }), `${L}.limit`, MAX_LIMIT + 1],
    ['string limit', doc({}, { limit: '10' }), `${L}.limit`, '10'],
    ['NaN limit', doc({}, { limit: NaN }), `${L}.limit`, NaN],
    ['missing limit', doc({}, { limit: undefined }), `${L}.limit`, undefined],
    ['missing limits', doc({ limits: undefined }), 'policies[0].limits', undefined],
    ['empty limits', doc({ limits: [] }), 'policies[0].limits', []],
    ['limits not a list', doc({ limits: { limit: 1 } }), 'policies[0].limits', { limit: 1 }],
    ['too many limits', doc({ limits: Array.from({ length: MAX_LIMITS_PER_POLICY + 1 }, () => ({ limit: 1, windowMs: 1000 })) }), 'policies[0].limits', '17 limits'],
    ['limit not an object', doc({ limits: [5] }), L, 5],
    ['unknown limit field', doc({}, { limt: 10 }), `${L}.limt`, 10],
    ['unknown policy field', doc({ keys: ['user'] }), 'policies[0].keys', ['user']],
    ['unknown document field', { ...doc(), polices: [] }, 'document.polices', []],
    ['unknown algorithm', doc({}, { algorithm: 'leaky-bucket' }), `${L}.algorithm`, 'leaky-bucket'],
    ['windowMs shorter than slots', doc({}, { windowMs: 9 }), `${L}.windowMs`, 9],
    ['windowMs zero', doc({}, { windowMs: 0, slots: 1 }), `${L}.windowMs`, 0],
    ['windowMs above 31 days', doc({}, { windowMs: 31 * 86_400_000 + 1 }), `${L}.windowMs`, 31 * 86_400_000 + 1],
    ['missing window', doc({}, { windowMs: undefined }), `${L}.windowMs`, undefined],
    ['window and windowMs both given', doc({}, { window: '1m' }), `${L}.window`, '1m'],
    ['malformed duration', doc({}, { windowMs: undefined, window: '1 minute' }), `${L}.window`, '1 minute'],
    ['duration without unit', doc({}, { windowMs: undefined, window: '60' }), `${L}.window`, '60'],
    ['duration as a number', doc({}, { windowMs: undefined, window: 60 }), `${L}.window`, 60],
    ['zero duration', doc({}, { windowMs: undefined, window: '0s' }), `${L}.window`, '0s'],
    ['duration rounding to zero', doc({}, { windowMs: undefined, window: '0.4ms', slots: 1 }), `${L}.window`, '0.4ms'],
    ['duration above 31 days', doc({}, { windowMs: undefined, window: '32d' }), `${L}.window`, '32d'],
    ['duration shorter than slots', doc({}, { windowMs: undefined, window: '5ms' }), `${L}.window`, '5ms'],
    ['slots zero', doc({}, { slots: 0 }), `${L}.slots`, 0],
    ['slots above 120', doc({}, { slots: 121, windowMs: 60_000 }), `${L}.slots`, 121],
    ['fixed window with slots', doc({}, { algorithm: 'fixed-window', slots: 2 }), `${L}.slots`, 2],
    ['sliding window with burst', doc({}, { burst: 5 }), `${L}.burst`, 5],
    ['token-bucket missing rate', doc({}, { ...tb, ratePerSecond: undefined }), `${L}.ratePerSecond`, undefined],
    ['token-bucket missing burst', doc({}, { ...tb, burst: undefined }), `${L}.burst`, undefined],
    ['token-bucket zero rate', doc({}, { ...tb, ratePerSecond: 0 }), `${L}.ratePerSecond`, 0],
    ['token-bucket infinite rate', doc({}, { ...tb, ratePerSecond: Infinity }), `${L}.ratePerSecond`, Infinity],
    ['token-bucket zero burst', doc({}, { ...tb, burst: 0 }), `${L}.burst`, 0],
    ['token-bucket fractional burst', doc({}, { ...tb, burst: 2.5 }), `${L}.burst`, 2.5],
    ['token-bucket refilling in over 31 days', doc({}, { ...tb, ratePerSecond: 1, burst: MAX_LIMIT }), `${L}.burst`, MAX_LIMIT],
    ['token-bucket with windowMs', doc({}, { ...tb, windowMs: 1000 }), `${L}.windowMs`, 1000],
    ['token-bucket with window', doc({}, { ...tb, window: '1s' }), `${L}.window`, '1s'],
    ['token-bucket with limit', doc({}, { ...tb, limit: 5 }), `${L}.limit`, 5],
    ['concurrency with slots', doc({}, { ...cc, slots: 5 }), `${L}.slots`, 5],
    ['concurrency with windowMs', doc({}, { algorithm: 'concurrency' }), `${L}.windowMs`, 1000],
    ['concurrency lease under 10 ms', doc({}, { ...cc, leaseTtlMs: 9 }), `${L}.leaseTtlMs`, 9],
    ['concurrency missing limit', doc({}, { ...cc, limit: undefined }), `${L}.limit`, undefined],
    ['duplicate limit ids', doc({ limits: [{ id: '1', limit: 1, windowMs: 1000 }, { limit: 1, windowMs: 1000 }] }), 'policies[0].limits[1].id', '1'],
    ['bad limit id', doc({}, { id: 'a b' }), `${L}.id`, 'a b'],
    ['bad id characters', doc({ id: 'per user' }), 'policies[0].id', 'per user'],
    ['id starting with "-"', doc({ id: '-p' }), 'policies[0].id', '-p'],
    ['empty id', doc({ id: '' }), 'policies[0].id', ''],
    ['id over 64 characters', doc({ id: 'a'.repeat(65) }), 'policies[0].id', 'a'.repeat(65)],
    ['missing id', doc({ id: undefined }), 'policies[0].id', undefined],
    ['numeric id', doc({ id: 7 }), 'policies[0].id', 7],
    ['description not a string', doc({ description: 5 }), 'policies[0].description', 5],
    ['bad key field name', doc({ key: '1user' }), 'policies[0].key[0]', '1user'],
    ['bad key field in a list', doc({ key: ['user', 'api key'] }), 'policies[0].key[1]', 'api key'],
    ['key not a string or list', doc({ key: { user: true } }), 'policies[0].key', { user: true }],
    ['key listing a field twice', doc({ key: ['user', 'route', 'user'] }), 'policies[0].key', ['user', 'route', 'user']],
    ['match not an object', doc({ match: ['route'] }), 'policies[0].match', ['route']],
    ['bad match field name', doc({ match: { 'a b': 'x' } }), 'policies[0].match.a b', 'a b'],
    ['empty match list', doc({ match: { route: [] } }), 'policies[0].match.route', []],
    ['empty pattern', doc({ match: { route: '' } }), 'policies[0].match.route', ''],
    ['pattern not a string', doc({ match: { route: ['/a', 5] } }), 'policies[0].match.route[1]', 5],
    ['pattern over 1024 characters', doc({ match: { route: 'x'.repeat(1025) } }), 'policies[0].match.route', 'x'.repeat(1025)],
    ['ip match that is not an IP', doc({ match: { ip: 'localhost' } }), 'policies[0].match.ip', 'localhost'],
    ['ip match with a bad prefix', doc({ match: { ip: ['10.0.0.0/8', '10.0.0.0/33'] } }), 'policies[0].match.ip[1]', '10.0.0.0/33'],
    ['ip match with a wildcard octet', doc({ match: { ip: '10.0.*' } }), 'policies[0].match.ip', '10.0.*'],
    ['ipv6 match with a bad prefix', doc({ match: { ip: '2001:db8::/129' } }), 'policies[0].match.ip', '2001:db8::/129'],
    ['"*" in the middle of a pattern', doc({ match: { route: '/v1/*/users' } }), 'policies[0].match.route', '/v1/*/users'],
    ['"*" in the middle of a listed pattern', doc({ match: { route: ['/a*', '*b'] } }), 'policies[0].match.route[1]', '*b'],
    ['double "*"', doc({ match: { route: '**' } }), 'policies[0].match.route', '**'],
    ['group not a string', doc({ group: 5 }), 'policies[0].group', 5],
    ['group over 128 characters', doc({ group: 'g'.repeat(129) }), 'policies[0].group', 'g'.repeat(129)],
    ['bad scope', doc({ scope: 'planet' }), 'policies[0].scope', 'planet'],
    ['shadow not boolean', doc({ shadow: 'yes' }), 'policies[0].shadow', 'yes'],
    ['priority above range', doc({ priority: 1_000_001 }), 'policies[0].priority', 1_000_001],
    ['priority below range', doc({ priority: -1_000_001 }), 'policies[0].priority', -1_000_001],
    ['fractional priority', doc({ priority: 0.5 }), 'policies[0].priority', 0.5],
    ['ipv6Prefix 129', doc({ ipv6Prefix: 129 }), 'policies[0].ipv6Prefix', 129],
    ['ipv4Prefix 33', doc({ ipv4Prefix: 33 }), 'policies[0].ipv4Prefix', 33],
    ['negative ipv4Prefix', doc({ ipv4Prefix: -1 }), 'policies[0].ipv4Prefix', -1],
    ['policy not an object', { policies: ['p'] }, 'policies[0]', 'p'],
    ['policies not a list', { policies: { id: 'p' } }, 'policies', { id: 'p' }],
    ['missing policies', {}, 'policies', undefined],
    ['document not an object', 'policies', 'document', 'policies'],
    ['null document', null, 'document', null],
    ['negative version', { ...doc(), version: -1 }, 'version', -1]
  ]

  it.each(cases)('rejects %s', (_, input, field, value) => {
    expectError(() => validatePolicies(input), INVALID, field, value)
  })

  it('names the exact policy and limit at fault', () => {
    const ok = { id: 'a', limits: [{ limit: 1, windowMs: 1000 }] }
    const input = { policies: [ok, { id: 'b', limits: [{ limit: 1, windowMs: 1000 }, { limit: 1, windowMs: 1000 }, { limit: 1, windowMs: 5 }] }] }
    expectError(() => validatePolicies(input), INVALID, 'policies[1].limits[2].windowMs', 5)
  })

  it('rejects duplicate policy ids, naming the later one', () => {
    const e = expectError(() => validatePolicies({
      policies: ['a', 'b', 'a'].map(id => ({ id, limits: [{ limit: 1, windowMs: 1000 }] }))
    }), INVALID, 'policies[2].id', 'a')
    expect(e.message).toContain('policies[0]')
  })

  it('hints at the field a near-miss meant', () => {
    expect(expectError(() => validatePolicies(doc({}, { limt: 10 })), INVALID, 'policies[0].limits[0].limt').message).toContain('did you mean "limit"')
    expect(expectError(() => validatePolicies(doc({}, { windowMS: 10 })), INVALID, 'policies[0].limits[0].windowMS').message).toContain('did you mean "windowMs"')
    expect(expectError(() => validatePolicies(doc({ prority: 1 })), INVALID, 'policies[0].prority').message).toContain('did you mean "priority"')
    expect(expectError(() => validatePolicies({ ...doc(), polices: [] }), INVALID, 'document.polices').message).toContain('did you mean "policies"')
    // No hint when nothing is close, but the allowed fields are listed.
    const far = expectError(() => validatePolicies(doc({}, { colour: 'red' })), INVALID, 'policies[0].limits[0].colour')
    expect(far.message).not.toContain('did you mean')
    expect(far.message).toContain('windowMs')
  })

  it('says what was wrong in the message: field, value and fix', () => {
    const e = expectError(() => validatePolicies(doc({}, { limit: -5 })), INVALID, 'policies[0].limits[0].limit', -5)
    expect(e.message).toMatch(/^policies\[0\]\.limits\[0\]\.limit is -5: .+\. Fix: .+/)
    expect(e.name).toBe('MeshlimitError')
    expect(e).toBeInstanceOf(Error)
  })

  it('rejects field names every JavaScript object inherits (a descriptor literal would "have" them)', () => {
    expectError(() => validatePolicies(doc({ key: 'constructor' })), INVALID, 'policies[0].key[0]', 'constructor')
    expectError(() => validatePolicies(doc({ key: ['user', '__proto__'] })), INVALID, 'policies[0].key[1]', '__proto__')
    expectError(() => validatePolicies(doc({ match: { toString: 'x' } })), INVALID, 'policies[0].match.toString', 'toString')
    expectError(() => validatePolicies(doc({ match: JSON.parse('{"__proto__": "x"}') })), INVALID, 'policies[0].match.__proto__', '__proto__')
  })

  it('rejects holes in lists as undefined entries (a sparse array is not a list of values)', () => {
    expectError(() => validatePolicies({ policies: [, ...(doc().policies as unknown[])] }), INVALID, 'policies[0]', undefined)
    expectError(() => validatePolicies(doc({ limits: new Array(2) })), INVALID, 'policies[0].limits[0]', undefined)
    expectError(() => validatePolicies(doc({ key: [, 'user'] })), INVALID, 'policies[0].key[0]', undefined)
    expectError(() => validatePolicies(doc({ match: { route: ['/a', ,] } })), INVALID, 'policies[0].match.route[1]', undefined)
  })
})

describe('validatePolicies: the result', () => {
  const input = () => ({
    policies: [{ id: 'a', key: ['user', 'route'], match: { route: ['/a', '/b*'] }, limits: [{ limit: 1, windowMs: 1000 }] }]
  })

  it('is deeply frozen', () => {
    const set = validatePolicies(input()) as any
    const p = set.policies[0]
    for (const v of [set, set.policies, p, p.key, p.match, p.match[0], p.match[0].patterns, p.limits, p.limits[0]]) {
      expect(Object.isFrozen(v)).toBe(true)
    }
    expect(() => { p.limits[0].limit = 5 }).toThrow(TypeError)
    expect(() => { p.key.push('ip') }).toThrow(TypeError)
    expect(() => { set.policies.pop() }).toThrow(TypeError)
  })

  it('leaves the input document unfrozen and unshared', () => {
    const raw = input()
    const set = validatePolicies(raw)
    expect(Object.isFrozen(raw.policies[0].key)).toBe(false)
    raw.policies[0].key.push('ip')
    expect(set.policies[0].key).toEqual(['user', 'route'])
  })

  it('is recognised by isPolicySet, and nothing else is', () => {
    const set = validatePolicies(input())
    expect(isPolicySet(set)).toBe(true)
    expect(isPolicySet(parsePolicies(JSON.stringify(input())))).toBe(true)
    expect(isPolicySet(structuredClone(set))).toBe(false)
    expect(isPolicySet({ ...set })).toBe(false)
    expect(isPolicySet(input())).toBe(false)
    for (const v of [null, undefined, 0, 'x', []]) expect(isPolicySet(v)).toBe(false)
  })

  it('compiles without error', () => {
    expect(compilePolicies(validatePolicies(input()), { maxKeyLength: 64 }).groups).toHaveLength(1)
  })
})

describe('validatePolicies: properties', () => {
  it('accepts every valid document and fills in the documented defaults', () => {
    fc.assert(fc.property(documentArb, d => {
      const specs = (Array.isArray(d) ? d : (d as Obj).policies) as Obj[]
      const set = validatePolicies(d)
      expect(set.version).toBe(Array.isArray(d) ? 0 : (d as Obj).version ?? 0)
      expect(set.policies).toEqual(specs.map(expectedPolicy))
    }), { numRuns: 200 })
  })

  it('round-trips: a set written back with every field explicit validates to itself', () => {
    fc.assert(fc.property(documentArb, d => {
      const set = validatePolicies(d)
      expect(validatePolicies({ version: set.version, policies: toDocument(set.policies) })).toEqual(set)
    }), { numRuns: 100 })
  })

  it('reads the YAML and JSON text of a document as the document itself', () => {
    fc.assert(fc.property(documentArb, d => {
      const set = validatePolicies(d)
      expect(parsePolicies(stringifyYaml(d))).toEqual(set)
      expect(parsePolicies(JSON.stringify(d))).toEqual(set)
    }), { numRuns: 50 })
  })

  const garbageArb = fc.oneof(
    fc.anything({ withSparseArray: true, withNullPrototype: true, withBigInt: true, withBoxedValues: true, withMap: true, withSet: true, withDate: true, withTypedArray: true, withObjectString: true, maxDepth: 2 }),
    fc.constantFrom<unknown>(NaN, Infinity, -Infinity, -0, 0, -1, 1, 1.5, 2 ** 53, MAX_LIMIT + 1, 10, 60_000, '', '*', '**', 'a*b', '1m', '0s', '10.0.0.0/8', '::', 'user',
      [], [[]], {}, null, undefined, true, 'sliding-window', 'fixed-window', 'token-bucket', 'concurrency', 'node', 'constructor', '__proto__', new Array(3))
  )
  const LEVELS = {
    document: ['version', 'policies', 'extra'],
    policy: ['id', 'description', 'match', 'key', 'group', 'priority', 'scope', 'shadow', 'ipv4Prefix', 'ipv6Prefix', 'limits', 'lmits', 'extra'],
    limit: ['id', 'algorithm', 'limit', 'windowMs', 'window', 'slots', 'ratePerSecond', 'burst', 'leaseTtlMs', 'extra'],
    match: ['ip', 'route', 'user', 'x'],
    whole: ['policy', 'limit']
  }
  const targetArb = fc.constantFrom(...Object.entries(LEVELS).flatMap(([level, fields]) => fields.map(field => [level, field] as const)))

  it('throws nothing but MESHLIMIT_POLICY_INVALID when one field holds garbage, and what it accepts compiles and matches', () => {
    const descriptorArb = fc.dictionary(fc.constantFrom('user', 'ip', 'route', 'x', 'apiKey', 'plan'), fc.oneof(fc.string(), fc.constantFrom('10.1.2.3', '2001:db8::1', '/v1/a')))
    fc.assert(fc.property(documentArb, targetArb, garbageArb, fc.nat(), fc.nat(), descriptorArb, (valid, [level, field], garbage, pi, li, descriptor) => {
      const d = { policies: structuredClone(Array.isArray(valid) ? valid : (valid as Obj).policies) as Obj[] }
      const policy = d.policies[pi % d.policies.length]
      const limits = policy.limits as Obj[]
      if (level === 'document') (d as Obj)[field] = garbage
      else if (level === 'policy') policy[field] = garbage
      else if (level === 'limit') limits[li % limits.length][field] = garbage
      else if (level === 'match') policy.match = { ...(policy.match as Obj | undefined), [field]: garbage }
      else if (field === 'policy') d.policies[pi % d.policies.length] = garbage as Obj
      else limits[li % limits.length] = garbage as Obj
      let set
      try {
        set = validatePolicies(d)
      } catch (err) {
        expect(err).toBeInstanceOf(MeshlimitError)
        expect((err as MeshlimitError).code).toBe(INVALID)
        expect(typeof (err as MeshlimitError).field).toBe('string')
        expect((err as MeshlimitError).message).toContain('Fix:')
        return
      }
      const compiled = compilePolicies(set, { maxKeyLength: 64 })
      for (const g of compiled.groups) {
        const w = g.winner(descriptor)
        if (w !== undefined) expect(typeof g.lastKey).toBe('string')
      }
    }), { numRuns: 1000 })
  })
})
