import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ErrorCode } from '../../src/errors.js'
import { compilePolicies, digestKey, type CompiledPolicies } from '../../src/policy/compile.js'
import { validatePolicies } from '../../src/policy/validate.js'
import type { Descriptor } from '../../src/policy/types.js'
import { expectError } from './helpers.js'

type Obj = Record<string, unknown>

const LIMIT = [{ limit: 10, windowMs: 1000 }]

function compile (policies: Obj[], maxKeyLength = 64): CompiledPolicies {
  return compilePolicies(validatePolicies({ policies: policies.map(p => ({ limits: LIMIT, ...p })) }), { maxKeyLength })
}

/** The key of a one-policy set for `d`, or undefined when it does not match. */
function keyOf (policy: Obj, d: Descriptor, maxKeyLength = 64): string | undefined {
  return compile([{ id: 'p', ...policy }], maxKeyLength).byId.get('p')?.keyIfMatch(d)
}

function matches (match: Obj, d: Descriptor): boolean {
  return keyOf({ match }, d) !== undefined
}

/** Every policy in one group "g"; returns the id of the winner for `d`. */
function winner (policies: Obj[], d: Descriptor): string | undefined {
  const c = compile(policies.map(p => ({ group: 'g', ...p })))
  expect(c.groups).toHaveLength(1)
  return c.groups[0].winner(d)?.id
}

describe('matching', () => {
  it('matches every request when there are no conditions', () => {
    expect(keyOf({}, {})).toBe('')
    expect(keyOf({}, { user: 'u', route: '/x' })).toBe('')
  })

  it('matches an exact value and nothing else', () => {
    const m = { route: '/v1/users' }
    expect(matches(m, { route: '/v1/users' })).toBe(true)
    for (const route of ['/v1/users/1', '/v1/user', '/V1/users', '', ' /v1/users']) expect(matches(m, { route })).toBe(false)
  })

  it('matches any value of a list', () => {
    const m = { method: ['GET', 'HEAD', 'OPTIONS'] }
    for (const method of ['GET', 'HEAD', 'OPTIONS']) expect(matches(m, { method })).toBe(true)
    for (const method of ['POST', 'get', 'GETS']) expect(matches(m, { method })).toBe(false)
    const two = { method: ['GET', 'HEAD'] }
    expect(matches(two, { method: 'HEAD' })).toBe(true)
    expect(matches(two, { method: 'PUT' })).toBe(false)
  })

  it('matches "prefix*" on the literal prefix', () => {
    const m = { route: '/v1/*' }
    for (const route of ['/v1/', '/v1/users', '/v1/*']) expect(matches(m, { route })).toBe(true)
    for (const route of ['/v1', '/v2/users', 'x/v1/users', '']) expect(matches(m, { route })).toBe(false)
  })

  it('matches "*" when the field is present, with any value', () => {
    for (const user of ['u', '', '*']) expect(matches({ user: '*' }, { user })).toBe(true)
    expect(matches({ user: '*' }, {})).toBe(false)
    expect(matches({ user: '*' }, { user: undefined })).toBe(false)
  })

  it('mixes exact values, prefixes and "*" in one list', () => {
    const m = { route: ['/health', '/v1/*', '/v2/admin'] }
    for (const route of ['/health', '/v1/a', '/v2/admin']) expect(matches(m, { route })).toBe(true)
    for (const route of ['/health/x', '/v2/admin/x', '/v2']) expect(matches(m, { route })).toBe(false)
  })

  it('requires every condition to hold', () => {
    const m = { route: '/v1/*', method: 'GET' }
    expect(matches(m, { route: '/v1/a', method: 'GET' })).toBe(true)
    expect(matches(m, { route: '/v1/a', method: 'POST' })).toBe(false)
    expect(matches(m, { route: '/v2/a', method: 'GET' })).toBe(false)
    expect(matches(m, { route: '/v1/a' })).toBe(false)
  })

  it('never matches a descriptor that lacks a matched field', () => {
    expect(matches({ route: '/v1/*' }, {})).toBe(false)
    expect(matches({ route: '/v1/*' }, { user: '/v1/x' })).toBe(false)
    expect(matches({ ip: '0.0.0.0/0' }, {})).toBe(false)
  })

  it('matches IPv4 CIDR blocks on the ip field', () => {
    const m = { ip: '10.0.0.0/8' }
    for (const ip of ['10.0.0.0', '10.1.2.3', '10.255.255.255']) expect(matches(m, { ip })).toBe(true)
    for (const ip of ['11.0.0.0', '9.255.255.255', '2001:db8::1', 'not-an-ip', '010.1.2.3', '']) expect(matches(m, { ip })).toBe(false)
    const odd = { ip: '192.168.0.0/23' }
    expect(matches(odd, { ip: '192.168.1.255' })).toBe(true)
    expect(matches(odd, { ip: '192.168.2.0' })).toBe(false)
    expect(matches({ ip: '0.0.0.0/0' }, { ip: '203.0.113.9' })).toBe(true)
    expect(matches({ ip: '0.0.0.0/0' }, { ip: '::1' })).toBe(false)
  })

  it('matches a bare address exactly', () => {
    expect(matches({ ip: '203.0.113.7' }, { ip: '203.0.113.7' })).toBe(true)
    expect(matches({ ip: '203.0.113.7' }, { ip: '203.0.113.8' })).toBe(false)
    expect(matches({ ip: '2001:db8::7' }, { ip: '2001:0DB8:0:0:0:0:0:7' })).toBe(true)
    expect(matches({ ip: '2001:db8::7' }, { ip: '2001:db8::8' })).toBe(false)
  })

  it('matches IPv6 CIDR blocks in any spelling of the address', () => {
    const m = { ip: '2001:db8::/32' }
    for (const ip of ['2001:db8::1', '2001:DB8:ffff::', '2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1%eth0']) expect(matches(m, { ip })).toBe(true)
    for (const ip of ['2001:db9::1', '2001:db7:ffff::', '10.0.0.1', '::ffff:10.0.0.1', '2001:db8::1::2']) expect(matches(m, { ip })).toBe(false)
    expect(matches({ ip: '2001:db8:0:100::/56' }, { ip: '2001:db8:0:1ff::1' })).toBe(true)
    expect(matches({ ip: '2001:db8:0:100::/56' }, { ip: '2001:db8:0:200::1' })).toBe(false)
    expect(matches({ ip: '::/0' }, { ip: '2001:db8::1' })).toBe(true)
  })

  it('matches IPv4-mapped IPv6 addresses against IPv4 blocks', () => {
    for (const ip of ['::ffff:10.1.2.3', '::FFFF:10.1.2.3', '::ffff:a01:203', '0:0:0:0:0:ffff:10.1.2.3']) {
      expect(matches({ ip: '10.0.0.0/8' }, { ip })).toBe(true)
      expect(matches({ ip: '10.1.2.3' }, { ip })).toBe(true)
    }
    expect(matches({ ip: '10.0.0.0/8' }, { ip: '::ffff:11.1.2.3' })).toBe(false)
    // A mapped address counts as IPv4, not as IPv6.
    expect(matches({ ip: '::/0' }, { ip: '::ffff:10.1.2.3' })).toBe(false)
  })

  it('treats an IPv4-mapped block in a policy as the IPv4 block it maps', () => {
    expect(matches({ ip: '::ffff:10.0.0.0/104' }, { ip: '10.1.2.3' })).toBe(true)
    expect(matches({ ip: '::ffff:10.0.0.0/104' }, { ip: '::ffff:10.1.2.3' })).toBe(true)
    expect(matches({ ip: '::ffff:10.0.0.0/104' }, { ip: '11.1.2.3' })).toBe(false)
    expect(matches({ ip: '::ffff:203.0.113.7' }, { ip: '203.0.113.7' })).toBe(true)
  })

  it('matches a list of CIDR blocks of both families', () => {
    const m = { ip: ['10.0.0.0/8', '2001:db8::/32', '192.0.2.1'] }
    for (const ip of ['10.9.9.9', '2001:db8::5', '192.0.2.1']) expect(matches(m, { ip })).toBe(true)
    for (const ip of ['192.0.2.2', '2001:db9::5']) expect(matches(m, { ip })).toBe(false)
    expect(matches({ ip: '*' }, { ip: 'anything' })).toBe(true)
  })
})

describe('precedence within a group', () => {
  it('prefers higher priority over every other tie-breaker', () => {
    const specific = { id: 'specific', match: { route: '/v1/users', method: 'GET' } }
    expect(winner([specific, { id: 'urgent', priority: 1 }], { route: '/v1/users', method: 'GET' })).toBe('urgent')
    expect(winner([{ id: 'low', priority: -1 }, { id: 'default' }], {})).toBe('default')
  })

  it('then prefers more exact conditions over more pattern conditions', () => {
    const patterns = { id: 'patterns', match: { route: '/v1/users*', method: 'G*', plan: '*' } }
    const exact = { id: 'exact', match: { method: 'GET' } }
    expect(winner([patterns, exact], { route: '/v1/users', method: 'GET', plan: 'pro' })).toBe('exact')
    // An exact IP counts as exact; a wider block is a pattern.
    expect(winner([{ id: 'block', match: { ip: '10.0.0.0/8', route: '/*' } }, { id: 'host', match: { ip: '10.1.2.3' } }], { ip: '10.1.2.3', route: '/x' })).toBe('host')
  })

  it('then prefers more pattern conditions over a longer literal', () => {
    const long = { id: 'long', match: { route: '/v1/users/admin*' } }
    const more = { id: 'more', match: { route: '/*', method: '*' } }
    expect(winner([long, more], { route: '/v1/users/admin/7', method: 'GET' })).toBe('more')
  })

  it('then prefers the longer literal prefix', () => {
    const short = { id: 'short', match: { route: '/v*' } }
    const long = { id: 'long', match: { route: '/v1/users*' } }
    expect(winner([short, long], { route: '/v1/users/7' })).toBe('long')
    expect(winner([short, long], { route: '/v2' })).toBe('short')
    // A list is as specific as its least specific pattern.
    expect(winner([{ id: 'list', match: { route: ['/v1/users/admin*', '/*'] } }, { id: 'one', match: { route: '/v1*' } }], { route: '/v1/users/admin' })).toBe('one')
  })

  it('then prefers the narrower CIDR block, whatever its spelling', () => {
    expect(winner([{ id: 'wide', match: { ip: '10.0.0.0/8' } }, { id: 'narrow', match: { ip: '10.0.0.0/9' } }], { ip: '10.1.2.3' })).toBe('narrow')
    expect(winner([{ id: 'wide', match: { ip: '2001:db8:1::/48' } }, { id: 'narrow', match: { ip: '2001:db8:1::/56' } }], { ip: '2001:db8:1::5' })).toBe('narrow')
    expect(winner([{ id: 'wide', match: { ip: '10.200.200.200/8' } }, { id: 'narrow', match: { ip: '10.2.0.0/16' } }], { ip: '10.2.3.4' })).toBe('narrow')
  })

  it('then prefers the earlier policy in the document', () => {
    const a = { id: 'a', match: { route: '/v1/*' } }
    const b = { id: 'b', match: { route: '/v2/*' } }
    expect(winner([a, b], { route: '/v1/x' })).toBe('a')
    const a2 = { id: 'a2', match: { route: '/v1/*' } }
    expect(winner([a, a2], { route: '/v1/x' })).toBe('a')
    expect(winner([a2, a], { route: '/v1/x' })).toBe('a2')
  })

  it('falls through to the next policy when the best one lacks a key field', () => {
    const c = compile([{ id: 'per-user', group: 'g', key: 'user', priority: 1 }, { id: 'anon', group: 'g' }])
    const g = c.groups[0]
    expect(g.winner({ user: 'alice' })?.id).toBe('per-user')
    expect(g.lastKey).toBe('alice')
    expect(g.winner({})?.id).toBe('anon')
    expect(g.lastKey).toBe('')
  })

  it('returns undefined when nothing in the group matches', () => {
    const c = compile([{ id: 'a', group: 'g', match: { route: '/a' } }])
    expect(c.groups[0].winner({ route: '/b' })).toBeUndefined()
  })

  it('orders the group\'s policies most specific first', () => {
    const c = compile([
      { id: 'catch-all', group: 'g' },
      { id: 'prefix', group: 'g', match: { route: '/v1/*' } },
      { id: 'exact', group: 'g', match: { route: '/v1/users' } },
      { id: 'vip', group: 'g', priority: 5 }
    ])
    expect(c.groups[0].policies.map(p => p.id)).toEqual(['vip', 'exact', 'prefix', 'catch-all'])
  })
})

describe('groups', () => {
  it('evaluates policies of different groups independently', () => {
    const c = compile([
      { id: 'per-user', key: 'user' },
      { id: 'per-ip', key: 'ip', priority: 100 },
      { id: 'per-user-v1', key: 'user', match: { route: '/v1/*' } }
    ])
    expect(c.groups.map(g => g.name)).toEqual(['user', 'ip'])
    const d = { user: 'u', ip: '10.0.0.1', route: '/v1/x' }
    expect(c.groups.map(g => g.winner(d)?.id)).toEqual(['per-user-v1', 'per-ip'])
    expect(c.groups.map(g => g.winner({ user: 'u' })?.id)).toEqual(['per-user', undefined])
  })

  it('groups by the sorted key fields unless a group is named', () => {
    const c = compile([
      { id: 'a', key: ['user', 'apiKey'] },
      { id: 'b', key: ['apiKey', 'user'] },
      { id: 'c' },
      { id: 'd', key: 'ip', group: 'apiKey+user' }
    ])
    expect(c.groups.map(g => [g.name, g.policies.map(p => p.id)])).toEqual([['apiKey+user', ['a', 'b', 'd']], ['', ['c']]])
  })

  it('indexes policies by id and sizes scratch space for the largest match per group', () => {
    const c = compile([
      { id: 'a', key: 'user', limits: [LIMIT[0], { id: 'x', ...LIMIT[0] }, { id: 'y', ...LIMIT[0] }] },
      { id: 'b', key: 'user' },
      { id: 'c', key: 'ip', limits: [LIMIT[0], { id: 'x', ...LIMIT[0] }] }
    ])
    expect([...c.byId.keys()]).toEqual(['a', 'b', 'c'])
    expect(c.byId.get('c')?.policy.key).toEqual(['ip'])
    expect(c.maxLimitsPerRequest).toBe(5)
  })
})

describe('replaces', () => {
  // Envoy's example: a limit for (key_2, user) replaces the named limit for (key_1, user).
  const policies: Obj[] = [
    { id: 'specific', match: { key_1: 'value_1', user: 'bk' }, group: 'key_1' },
    { id: 'replacing', match: { key_2: 'value_2', user: 'bk' }, group: 'key_2', replaces: 'specific' },
    { id: 'other', key: 'user' }
  ]

  it('drops a replaced policy only when the replacing one leads its group', () => {
    const c = compile(policies)
    const applied = (d: Descriptor): Array<string | undefined> => c.groups.map(g => g.winner(d)?.id)
    expect(applied({ key_1: 'value_1', user: 'bk' })).toEqual(['specific', undefined, 'other'])
    expect(applied({ key_2: 'value_2', user: 'bk' })).toEqual([undefined, 'replacing', 'other'])
    expect(applied({ key_1: 'value_1', key_2: 'value_2', user: 'bk' })).toEqual([undefined, 'replacing', 'other'])
  })

  it('a replaced group contributes nothing, not its next policy', () => {
    const c = compile([
      { id: 'exact', match: { route: '/a' }, group: 'route' },
      { id: 'fallback', match: { route: '*' }, group: 'route' },
      { id: 'r', match: { plan: 'pro' }, group: 'plan', replaces: ['exact'] }
    ])
    expect(c.groups.map(g => g.winner({ route: '/a', plan: 'pro' })?.id)).toEqual([undefined, 'r'])
    expect(c.groups.map(g => g.winner({ route: '/b', plan: 'pro' })?.id)).toEqual(['fallback', 'r'])
  })

  it('a replacing policy that does not lead its own group replaces nothing; one that is itself replaced still does', () => {
    const c = compile([
      { id: 'x', match: { a: '1' }, group: 'a' },
      { id: 'y-better', match: { b: '1', c: '1' }, group: 'b' },
      { id: 'y', match: { b: '1' }, group: 'b', replaces: 'x' },
      { id: 'z', match: { z: '1' }, group: 'z', replaces: 'y' }
    ])
    const applied = (d: Descriptor): Array<string | undefined> => c.groups.map(g => g.winner(d)?.id)
    expect(applied({ a: '1', b: '1', c: '1' })).toEqual(['x', 'y-better', undefined])
    expect(applied({ a: '1', b: '1' })).toEqual([undefined, 'y', undefined])
    // y is replaced by z, yet still replaces x (Envoy collects every matched limit's replaces first).
    expect(applied({ a: '1', b: '1', z: '1' })).toEqual([undefined, undefined, 'z'])
  })

  it('matches the reference rule on random sets: drop every group leader named by another group leader', () => {
    const fields = ['a', 'b', 'c']
    const policyArb = (i: number): fc.Arbitrary<Obj> => fc.record({
      match: fc.dictionary(fc.constantFrom(...fields), fc.constantFrom('1', '2', '*'), { maxKeys: 2 }),
      group: fc.constantFrom('g1', 'g2', 'g3'),
      priority: fc.integer({ min: 0, max: 2 }),
      replaces: fc.subarray(Array.from({ length: 6 }, (_, j) => `p${j}`).filter(id => id !== `p${i}`), { maxLength: 2 })
    }).map(p => ({ id: `p${i}`, ...p }))
    const descriptorArb = fc.dictionary(fc.constantFrom(...fields), fc.constantFrom('1', '2'))
    fc.assert(fc.property(fc.tuple(...Array.from({ length: 6 }, (_, i) => policyArb(i))), fc.array(descriptorArb, { minLength: 1, maxLength: 8 }), (ps, ds) => {
      const c = compile(ps)
      for (const d of ds) {
        const leaders = c.groups.map(g => g.first(d))
        const replaced = new Set(leaders.flatMap(p => p === undefined ? [] : [...p.policy.replaces]))
        const expected = leaders.map(p => p === undefined || replaced.has(p.id) ? undefined : p.id)
        expect(c.groups.map(g => g.winner(d)?.id)).toEqual(expected)
      }
    }), { numRuns: 300 })
  })

  it('validation: ids must exist, not name the policy itself, and not repeat', () => {
    const base = [{ id: 'a' }, { id: 'b' }]
    expectError(() => compile([...base, { id: 'c', replaces: 'nope' }]), ErrorCode.POLICY_INVALID, 'policies[2].replaces[0]', 'nope')
    expectError(() => compile([...base, { id: 'c', replaces: ['a', 'c'] }]), ErrorCode.POLICY_INVALID, 'policies[2].replaces[1]', 'c')
    expectError(() => compile([...base, { id: 'c', replaces: ['a', 'a'] }]), ErrorCode.POLICY_INVALID, 'policies[2].replaces')
    expectError(() => compile([...base, { id: 'c', replaces: 7 }]), ErrorCode.POLICY_INVALID, 'policies[2].replaces', 7)
    expectError(() => compile([...base, { id: 'c', replaces: [''] }]), ErrorCode.POLICY_INVALID, 'policies[2].replaces[0]', '')
    expect(compile([...base, { id: 'c', replaces: ['a', 'b'] }]).byId.get('a')?.replacedBy.map(r => r.policy.id)).toEqual(['c'])
  })
})

describe('keys', () => {
  it('uses the raw value of a single key field', () => {
    expect(keyOf({ key: 'user' }, { user: 'alice' })).toBe('alice')
    expect(keyOf({ key: 'user' }, { user: '5:a:b' })).toBe('5:a:b')
    expect(keyOf({ key: 'user' }, { user: '' })).toBe('')
    expect(keyOf({ key: 'user' }, { route: 'x' })).toBeUndefined()
  })

  it('needs every key field to be present', () => {
    expect(keyOf({ key: ['apiKey', 'route'] }, { apiKey: 'k' })).toBeUndefined()
    expect(keyOf({ key: ['apiKey', 'route'] }, { route: 'r' })).toBeUndefined()
    expect(keyOf({ key: ['apiKey', 'route'] }, { apiKey: 'k', route: 'r' })).toBeDefined()
  })

  it('joins several fields so that no two tuples collide', () => {
    const k = (a: string, b: string) => keyOf({ key: ['a', 'b'] }, { a, b })
    expect(k('a1:', 'b')).not.toBe(k('a', '1:b'))
    expect(k('a:b', 'c')).not.toBe(k('a', 'b:c'))
    expect(k('1:a', '')).not.toBe(k('', '1:a'))
    expect(k('', '')).not.toBe(k('', '0:'))
    expect(k('x', 'y')).toBe(k('x', 'y'))
  })

  it('keys distinct tuples of any strings distinctly', () => {
    const compiled = compile([{ id: 'p', key: ['a', 'b', 'c'] }], Number.MAX_SAFE_INTEGER).byId.get('p')!
    const part = fc.oneof(fc.string({ unit: fc.constantFrom('1', '0', ':', 'a', '2'), maxLength: 6 }), fc.string({ unit: 'binary', maxLength: 12 }))
    const tuple = fc.tuple(part, part, part)
    fc.assert(fc.property(fc.uniqueArray(tuple, { minLength: 2, maxLength: 30, comparator: 'SameValueZero', selector: t => JSON.stringify(t) }), tuples => {
      const keys = tuples.map(([a, b, c]) => compiled.keyIfMatch({ a, b, c }))
      expect(new Set(keys).size).toBe(tuples.length)
    }), { numRuns: 300 })
  })

  it('groups IPv6 keys by /64 unless the policy says otherwise', () => {
    const ip = (ip: string, extra: Obj = {}) => keyOf({ key: 'ip', ...extra }, { ip })
    expect(ip('2001:db8:1:2:3:4:5:6')).toBe(ip('2001:db8:1:2:ffff::1'))
    expect(ip('2001:db8:1:2::1')).not.toBe(ip('2001:db8:1:3::1'))
    expect(ip('2001:db8:1:2::1', { ipv6Prefix: 48 })).toBe(ip('2001:db8:1:ffff::1', { ipv6Prefix: 48 }))
    expect(ip('2001:db8:1:2::1', { ipv6Prefix: 48 })).not.toBe(ip('2001:db8:2:2::1', { ipv6Prefix: 48 }))
    expect(ip('2001:db8::1', { ipv6Prefix: 128 })).not.toBe(ip('2001:db8::2', { ipv6Prefix: 128 }))
    expect(ip('2001:db8::1', { ipv6Prefix: 128 })).toBe(ip('2001:0DB8:0:0:0:0:0:1', { ipv6Prefix: 128 }))
  })

  it('keys IPv4 addresses whole, or by the policy\'s ipv4Prefix', () => {
    const ip = (ip: string, extra: Obj = {}) => keyOf({ key: 'ip', ...extra }, { ip })
    expect(ip('10.1.2.3')).toBe('10.1.2.3')
    expect(ip('::ffff:10.1.2.3')).toBe('10.1.2.3')
    expect(ip('10.1.2.3', { ipv4Prefix: 24 })).toBe(ip('10.1.2.200', { ipv4Prefix: 24 }))
    expect(ip('10.1.2.3', { ipv4Prefix: 24 })).not.toBe(ip('10.1.3.3', { ipv4Prefix: 24 }))
    // Only the IPv4 prefix applies to IPv4; only the IPv6 prefix to IPv6.
    expect(ip('10.1.2.3', { ipv6Prefix: 0 })).toBe('10.1.2.3')
    expect(ip('2001:db8::1', { ipv4Prefix: 0 })).toBe(ip('2001:db8::2'))
  })

  it('groups the ip part of a multi-field key wherever it sits', () => {
    for (const key of [['ip', 'route'], ['route', 'ip'], ['apiKey', 'ip', 'route']]) {
      const k = (ip: string) => keyOf({ key }, { ip, route: '/r', apiKey: 'k' })
      expect(k('2001:db8:0:1::1')).toBe(k('2001:db8:0:1::2'))
      expect(k('2001:db8:0:1::1')).not.toBe(k('2001:db8:0:2::1'))
    }
    // Non-ip fields are never treated as addresses.
    const byUser = (user: string) => keyOf({ key: ['user', 'route'] }, { user, route: '/r' })
    expect(byUser('2001:db8::1')).not.toBe(byUser('2001:db8::2'))
  })

  it('replaces keys longer than maxKeyLength with a fixed-size digest', () => {
    const k = (user: string) => keyOf({ key: 'user' }, { user }, 16)
    expect(k('a'.repeat(16))).toBe('a'.repeat(16))
    const long = k('a'.repeat(17)) as string
    expect(long).toMatch(/^~[0-9a-z]+\.[0-9a-z]+$/)
    expect(long).toBe(digestKey('a'.repeat(17)))
    expect(k('a'.repeat(17))).toBe(long)
    expect(k('b'.repeat(17))).not.toBe(long)
    expect(k('a'.repeat(16) + 'b')).not.toBe(long)
    for (const n of [17, 100, 10_000]) expect((k('x'.repeat(n)) as string).length).toBeLessThanOrEqual(24)
    // The length limit applies to the joined key of several fields too.
    const multi = keyOf({ key: ['a', 'b'] }, { a: 'x'.repeat(8), b: 'y'.repeat(8) }, 16) as string
    expect(multi.startsWith('~')).toBe(true)
  })

  it('gives distinct long keys distinct digests', () => {
    fc.assert(fc.property(fc.string({ minLength: 65, maxLength: 200 }), fc.string({ minLength: 65, maxLength: 200 }), (a, b) => {
      fc.pre(a !== b)
      expect(keyOf({ key: 'user' }, { user: a })).not.toBe(keyOf({ key: 'user' }, { user: b }))
    }), { numRuns: 200 })
  })
})

describe('descriptor values', () => {
  it.each([
    ['a number in a key field', { key: 'user' }, { user: 5 }, 'user', 5],
    ['null in a key field', { key: 'user' }, { user: null }, 'user', null],
    ['an object in a multi-field key', { key: ['apiKey', 'route'] }, { apiKey: 'k', route: { path: '/' } }, 'route', { path: '/' }],
    ['a number in a matched field', { match: { route: '/v1/*' } }, { route: 7 }, 'route', 7],
    ['a boolean in a "*" field', { match: { plan: '*' } }, { plan: true }, 'plan', true],
    ['a number in the ip field', { key: 'ip' }, { ip: 167772161 }, 'ip', 167772161]
  ])('rejects %s with MESHLIMIT_DESCRIPTOR_INVALID', (_, policy, d, field, value) => {
    const p = compile([{ id: 'p', ...policy }]).byId.get('p')!
    expectError(() => p.keyIfMatch(d as unknown as Descriptor), ErrorCode.DESCRIPTOR_INVALID, `descriptor.${field}`, value)
  })

  it('ignores non-string values in fields no policy reads', () => {
    expect(keyOf({ key: 'user' }, { user: 'u', count: 5 } as unknown as Descriptor)).toBe('u')
  })
})
