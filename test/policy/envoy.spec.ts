import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createLimiter, VirtualClock, type Limiter } from '../../src/index.js'
import { ErrorCode, MeshlimitError } from '../../src/errors.js'
import { compilePolicies } from '../../src/policy/compile.js'
import { envoyToPolicies, isEnvoyConfig, parseEnvoyYaml } from '../../src/policy/envoy.js'
import type { Descriptor, PolicySpec } from '../../src/policy/types.js'
import { MAX_LIMIT, validatePolicies } from '../../src/policy/validate.js'
import { expectError, thrown } from './helpers.js'

const T0 = 1_800_000_000_000

function limiterFor (yaml: string): { limiter: Limiter, clock: VirtualClock } {
  const clock = new VirtualClock(T0)
  return { limiter: createLimiter({ clock, policies: envoyToPolicies(yaml).document }), clock }
}

/** How many of `n` identical checks pass. */
function admitted (limiter: Limiter, d: Descriptor, n: number): number {
  let ok = 0
  for (let i = 0; i < n; i++) if (limiter.check(d).allowed) ok++
  return ok
}

function policies (yaml: string): PolicySpec[] {
  return envoyToPolicies(yaml).document.policies
}

describe('envoy: mapping of each construct', () => {
  it('a key with a value is a match; requests_per_unit and unit are a fixed window', () => {
    const ps = policies(`
domain: db
descriptors:
  - key: database
    value: users
    rate_limit: { unit: second, requests_per_unit: 3 }
`)
    expect(ps).toEqual([{
      id: 'db.database_users',
      description: 'envoy db: (database=users)',
      group: 'envoy:db:database',
      priority: 1,
      match: { database: 'users' },
      limits: [{ id: 'envoy', algorithm: 'fixed-window', limit: 3, window: '1s' }]
    }])
    const { limiter, clock } = limiterFor(`
domain: db
descriptors:
  - key: database
    value: users
    rate_limit: { unit: second, requests_per_unit: 3 }
`)
    expect(admitted(limiter, { database: 'users' }, 5)).toBe(3)
    expect(admitted(limiter, { database: 'orders' }, 5)).toBe(5)
    // Envoy's windows are aligned to the unit: the next second starts afresh.
    clock.advance(1000 - (T0 % 1000))
    expect(admitted(limiter, { database: 'users' }, 5)).toBe(3)
  })

  it('a key without a value counts each value on its own; the more specific value wins', () => {
    const { limiter } = limiterFor(`
domain: edge
descriptors:
  - key: remote_address
    rate_limit: { unit: second, requests_per_unit: 2 }
  - key: remote_address
    value: 50.0.0.5
    rate_limit: { unit: second, requests_per_unit: 0 }
`)
    expect(admitted(limiter, { remote_address: '50.0.0.1' }, 4)).toBe(2)
    expect(admitted(limiter, { remote_address: '50.0.0.2' }, 4)).toBe(2)
    expect(admitted(limiter, { remote_address: '50.0.0.5' }, 4)).toBe(0)
    expect(limiter.check({ remote_address: '50.0.0.5' }).policy).toBe('edge.remote_address_50.0.0.5')
  })

  it('nested descriptors need every level; several top-level keys all apply', () => {
    const { limiter } = limiterFor(`
domain: messaging
descriptors:
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit: { unit: day, requests_per_unit: 2 }
  - key: to_number
    rate_limit: { unit: day, requests_per_unit: 5 }
`)
    const d = limiter.check({ message_type: 'marketing', to_number: '555' })
    expect(d.limits.map(l => [l.policy, l.limit, l.windowMs])).toEqual([
      ['messaging.message_type_marketing.to_number', 2, 86_400_000],
      ['messaging.to_number', 5, 86_400_000]
    ])
    expect(admitted(limiter, { message_type: 'marketing', to_number: '555' }, 5)).toBe(1)
    // The marketing limit is per number; the per-number limit still has 3 left for 555.
    expect(admitted(limiter, { message_type: 'marketing', to_number: '556' }, 5)).toBe(2)
    expect(admitted(limiter, { to_number: '555' }, 5)).toBe(3)
    expect(admitted(limiter, { message_type: 'marketing' }, 5)).toBe(5)
  })

  it('a request deeper or shallower than the configured descriptor does not match it', () => {
    const { limiter } = limiterFor(`
domain: ex
descriptors:
  - key: key
    value: value
    descriptors:
      - key: subkey
        rate_limit: { unit: second, requests_per_unit: 1 }
`)
    expect(admitted(limiter, { key: 'value' }, 3)).toBe(3)
    expect(admitted(limiter, { key: 'value', subkey: 's' }, 3)).toBe(1)
  })

  it('unlimited: allowed and never counted against anything else of its group', () => {
    const { limiter } = limiterFor(`
domain: internal
descriptors:
  - key: service
    rate_limit: { unit: minute, requests_per_unit: 2 }
  - key: service
    value: ldap
    rate_limit: { unlimited: true }
`)
    expect(admitted(limiter, { service: 'ldap' }, 100)).toBe(100)
    expect(limiter.check({ service: 'ldap' }).limit).toBe(MAX_LIMIT)
    expect(admitted(limiter, { service: 'azure' }, 5)).toBe(2)
    const p = policies('domain: internal\ndescriptors:\n  - key: service\n    value: ldap\n    rate_limit: { unlimited: true }\n')[0]
    expect(p).toMatchObject({ scope: 'node', match: { service: 'ldap' }, limits: [{ id: 'unlimited', limit: MAX_LIMIT }] })
  })

  it('a descriptor without a rate limit blocks a less specific one at its depth, as Envoy finds no limit there', () => {
    const { limiter } = limiterFor(`
domain: ex
descriptors:
  - key: user
    rate_limit: { unit: second, requests_per_unit: 1 }
  - key: user
    value: admin
  - key: user
    value: team
    descriptors:
      - key: route
        rate_limit: { unit: second, requests_per_unit: 2 }
`)
    expect(admitted(limiter, { user: 'bob' }, 3)).toBe(1)
    expect(admitted(limiter, { user: 'admin' }, 3)).toBe(3)
    expect(admitted(limiter, { user: 'team' }, 3)).toBe(3)
    expect(admitted(limiter, { user: 'team', route: '/x' }, 3)).toBe(2)
  })

  it('shadow_mode evaluates and reports would-deny, and always allows', () => {
    const { limiter } = limiterFor(`
domain: auth
descriptors:
  - key: service
    descriptors:
      - key: user
        value: user-a
        shadow_mode: true
        rate_limit: { unit: second, requests_per_unit: 2 }
      - key: user
        value: user-b
        rate_limit: { unit: second, requests_per_unit: 2 }
`)
    const a = { service: 'auth', user: 'user-a' }
    expect(admitted(limiter, a, 2)).toBe(2)
    const d = limiter.check(a)
    expect([d.allowed, d.shadowDenied]).toEqual([true, true])
    expect(admitted(limiter, { service: 'auth', user: 'user-b' }, 4)).toBe(2)
  })

  it('replaces: the replacing limit applies instead of the named one, which keeps its own count', () => {
    const { limiter } = limiterFor(`
domain: ex7
descriptors:
  - key: key_1
    value: value_1
    descriptors:
      - key: user
        value: bk
        rate_limit: { name: specific_limit, unit: second, requests_per_unit: 2 }
  - key: key_2
    value: value_2
    descriptors:
      - key: user
        value: bk
        rate_limit:
          replaces: [ { name: specific_limit } ]
          unit: second
          requests_per_unit: 4
`)
    const both = { key_1: 'value_1', key_2: 'value_2', user: 'bk' }
    expect(limiter.check(both).limits.map(l => l.policy)).toEqual(['ex7.key_2_value_2.user_bk'])
    expect(admitted(limiter, both, 5)).toBe(3)
    // The replaced limit was not touched by those requests.
    expect(admitted(limiter, { key_1: 'value_1', user: 'bk' }, 5)).toBe(2)
    const ps = policies(`
domain: ex7
descriptors:
  - key: a
    rate_limit: { name: n1, unit: second, requests_per_unit: 2 }
  - key: b
    rate_limit: { replaces: [ { name: n1 }, { name: missing } ], unit: second, requests_per_unit: 4 }
`)
    expect(ps.map(p => [p.id, p.replaces])).toEqual([['ex7.n1', undefined], ['ex7.b', ['ex7.n1']]])
    expect(envoyToPolicies('domain: d\ndescriptors:\n  - key: b\n    rate_limit: { replaces: [ { name: missing } ], unit: second, requests_per_unit: 4 }\n').warnings)
      .toEqual(['document.descriptors[0].rate_limit.replaces[0].name: no rate limit of domain d is named "missing"; nothing to replace'])
  })

  it('wildcards: a trailing * matches by prefix, counted per value unless share_threshold', () => {
    const { limiter } = limiterFor(`
domain: files
descriptors:
  - key: path
    value: /files/*
    rate_limit: { unit: minute, requests_per_unit: 2 }
  - key: path
    value: /shared/*
    share_threshold: true
    rate_limit: { unit: minute, requests_per_unit: 2 }
`)
    expect(admitted(limiter, { path: '/files/a' }, 3)).toBe(2)
    expect(admitted(limiter, { path: '/files/b' }, 3)).toBe(2)
    expect(admitted(limiter, { path: '/shared/a' }, 3)).toBe(2)
    expect(admitted(limiter, { path: '/shared/b' }, 3)).toBe(0)
    expect(admitted(limiter, { path: '/other' }, 3)).toBe(3)
  })

  it('every unit maps to its window, case-insensitively; sliding windows on request', () => {
    const windows = Object.entries({ second: 1000, MINUTE: 60_000, Hour: 3_600_000, day: 86_400_000, week: 604_800_000, month: 2_592_000_000 })
    for (const [unit, ms] of windows) {
      const doc = envoyToPolicies(`domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: ${unit}, requests_per_unit: 7 }\n`).document
      expect(validatePolicies(doc).policies[0].limits[0]).toMatchObject({ algorithm: 'fixed-window', windowMs: ms, limit: 7 })
    }
    const sliding = envoyToPolicies('domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: minute, requests_per_unit: 7 }\n', { algorithm: 'sliding-window' }).document
    expect(validatePolicies(sliding).policies[0].limits[0]).toMatchObject({ algorithm: 'sliding-window', windowMs: 60_000, slots: 10 })
  })

  it('reads YAML as Envoy does: YAML 1.1 booleans, and string fields keep their text', () => {
    const ps = policies(`
domain: d
descriptors:
  - key: version
    value: 1.0
    shadow_mode: yes
    rate_limit: { unit: second, requests_per_unit: 5 }
  - key: code
    value: 010
    rate_limit: { unit: second, requests_per_unit: "6" }
`)
    expect(ps.map(p => [p.match, p.shadow, p.limits[0].limit])).toEqual([[{ version: '1.0' }, true, 5], [{ code: '010' }, undefined, 6]])
  })

  it('domains: several per file, told apart by domainField when set', () => {
    const yaml = `
domain: a
descriptors: [ { key: user, rate_limit: { unit: second, requests_per_unit: 1 } } ]
---
domain: b
descriptors: [ { key: user, rate_limit: { unit: second, requests_per_unit: 2 } } ]
`
    expect(envoyToPolicies(yaml).warnings[0]).toMatch(/2 domains without domainField/)
    const { document, warnings } = envoyToPolicies(yaml, { domainField: 'domain', version: 4 })
    expect(warnings).toEqual([])
    expect(document.version).toBe(4)
    const limiter = createLimiter({ clock: new VirtualClock(T0), policies: document })
    expect(admitted(limiter, { domain: 'a', user: 'u' }, 3)).toBe(1)
    expect(admitted(limiter, { domain: 'b', user: 'u' }, 3)).toBe(2)
    expect(admitted(limiter, { user: 'u' }, 3)).toBe(3)
  })

  it('metrics-only settings are accepted with a warning', () => {
    const { warnings } = envoyToPolicies(`
domain: d
descriptors:
  - key: k
    detailed_metric: true
    value_to_metric: true
    metadata: { team: x }
    rate_limit: { unit: second, requests_per_unit: 5 }
`)
    expect(warnings).toHaveLength(3)
    expect(warnings[0]).toMatch(/^document\.descriptors\[0\]\.detailed_metric: metrics naming is not carried over/)
  })

  it('recognises Envoy documents', () => {
    expect(isEnvoyConfig({ domain: 'd', descriptors: [] })).toBe(true)
    expect(isEnvoyConfig([{ domain: 'd' }])).toBe(true)
    expect(isEnvoyConfig({ policies: [] })).toBe(false)
    expect(isEnvoyConfig('domain')).toBe(false)
    expect(isEnvoyConfig(parseEnvoyYaml('domain: d\n'))).toBe(true)
  })
})

describe('envoy: what does not map is refused with the path and a fix', () => {
  const cases: Array<[string, string, string]> = [
    ['descriptors: []', 'document.domain', ErrorCode.POLICY_INVALID],
    ['domain: d\nlimits: []', 'document.limits', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - value: x', 'document.descriptors[0].key', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: "a b"', 'document.descriptors[0].key', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n    vaule: x', 'document.descriptors[0].vaule', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n  - key: k', 'document.descriptors[1]', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n    value: a*b', 'document.descriptors[0].value', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: ip\n    value: host-1', 'document.descriptors[0].value', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n    share_threshold: true', 'document.descriptors[0].share_threshold', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n    quota_mode: true', 'document.descriptors[0].quota_mode', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: year, requests_per_unit: 1 }', 'document.descriptors[0].rate_limit.unit', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }', 'document.descriptors[0].rate_limit.unit', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second }', 'document.descriptors[0].rate_limit.requests_per_unit', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: -1 }', 'document.descriptors[0].rate_limit.requests_per_unit', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unlimited: true, unit: second }', 'document.descriptors[0].rate_limit.unit', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, replaces: [x] }', 'document.descriptors[0].rate_limit.replaces[0]', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n    descriptors:\n      - key: k', 'document.descriptors[0].descriptors[0].key', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n    shadow_mode: maybe', 'document.descriptors[0].shadow_mode', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors: { key: k }', 'document.descriptors', ErrorCode.POLICY_INVALID],
    ['domain: d\n---\ndomain: d\n', 'documents[1].domain', ErrorCode.POLICY_INVALID],
    ['domain: d\ndescriptors:\n  - key: k\n   bad: indent', 'document', ErrorCode.POLICY_PARSE],
    ['domain: d\ndomain: e', 'document', ErrorCode.POLICY_PARSE]
  ]
  for (const [yaml, field, code] of cases) {
    it(`${field}: ${yaml.split('\n').pop() as string}`, () => {
      expectError(() => envoyToPolicies(yaml), code as ErrorCode, field)
    })
  }

  it('nesting deeper than 16 levels', () => {
    let yaml = 'domain: d\ndescriptors:\n'
    for (let i = 0; i < 17; i++) yaml += `${'  '.repeat(2 * i + 1)}- key: k${i}\n${'  '.repeat(2 * i + 2)}descriptors:\n`
    expect(thrown(() => envoyToPolicies(yaml))).toMatchObject({ code: ErrorCode.POLICY_INVALID })
  })

  it('a domainField that a descriptor also uses', () => {
    expectError(() => envoyToPolicies('domain: d\ndescriptors:\n  - key: tenant\n    rate_limit: { unit: second, requests_per_unit: 1 }', { domainField: 'tenant' }), ErrorCode.POLICY_INVALID, 'document.descriptors[0].key')
  })
})

// --- Envoy's lookup, as a reference model ---------------------------------------------

interface EnvoyNode { key: string, value?: string, rate_limit?: { unit: string, requests_per_unit: number }, descriptors?: EnvoyNode[] }

/**
 * envoyproxy/ratelimit's lookup of one request descriptor (a list of entries): at each
 * level take the exact key_value, else the first matching wildcard, else the bare key;
 * the limit is the node reached at the last entry. `deadEnd` marks lookups that stopped
 * early (a level with no match, or a node with no children before the last entry):
 * Envoy then finds nothing, while meshlimit's flat descriptors may fall back to a less
 * specific policy (a documented difference).
 */
function envoyLookup (tree: EnvoyNode[], entries: Array<[string, string]>): { node?: EnvoyNode, path: EnvoyNode[], deadEnd: boolean } {
  let children = tree
  const path: EnvoyNode[] = []
  for (let i = 0; i < entries.length; i++) {
    const [k, v] = entries[i]
    const node = children.find(c => c.key === k && c.value === v) ??
      children.find(c => c.key === k && c.value?.endsWith('*') === true && v.startsWith(c.value.slice(0, -1))) ??
      children.find(c => c.key === k && (c.value === undefined || c.value === ''))
    if (node === undefined) return { path, deadEnd: true }
    path.push(node)
    if (i === entries.length - 1) return { node, path, deadEnd: false }
    if (node.descriptors === undefined || node.descriptors.length === 0) return { path, deadEnd: true }
    children = node.descriptors
  }
  return { path, deadEnd: true }
}

function describePath (domain: string, path: EnvoyNode[]): string {
  return `envoy ${domain}: ${path.map(n => n.value === undefined ? `(${n.key})` : `(${n.key}=${n.value})`).join(' ')}`
}

/** Whether some path of the tree uses a key twice. */
function repeatsKey (tree: EnvoyNode[], above: string[]): boolean {
  return tree.some(n => above.includes(n.key) || repeatsKey(n.descriptors ?? [], [...above, n.key]))
}

/** A request that follows a path of the tree (choices taken from `picks`), so lookups often reach a node. */
function requestAlong (tree: EnvoyNode[], picks: number[]): Array<[string, string]> {
  const out: Array<[string, string]> = []
  let children = tree
  for (let i = 0; children.length > 0 && i < picks.length; i += 2) {
    const n = children[picks[i] % children.length]
    const v = n.value === undefined ? VALUES[picks[i + 1] % VALUES.length] : n.value.endsWith('*') ? n.value.slice(0, -1) + String(picks[i + 1] % 3) : n.value
    out.push([n.key, v])
    // Stop here sometimes, or go one level deeper.
    if (picks[i + 1] % 3 === 0) break
    children = n.descriptors ?? []
  }
  return out
}

const KEYS = ['a', 'b', 'c']
const VALUES = ['1', '2', 'x1', 'x2']
const CONFIG_VALUES = [undefined, '1', '2', 'x*', 'x1']

const treeArb: fc.Arbitrary<EnvoyNode[]> = fc.letrec<{ node: EnvoyNode, list: EnvoyNode[] }>(tie => ({
  node: fc.record({
    key: fc.constantFrom(...KEYS),
    value: fc.constantFrom(...CONFIG_VALUES),
    limit: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
    descriptors: fc.oneof({ depthSize: 'small', withCrossShrink: true }, fc.constant(undefined), tie('list'))
  }).map(({ key, value, limit, descriptors }) => ({
    key,
    ...(value === undefined ? {} : { value }),
    ...(limit === undefined ? {} : { rate_limit: { unit: 'second', requests_per_unit: limit } }),
    ...(descriptors === undefined ? {} : { descriptors: descriptors as EnvoyNode[] })
  })),
  // Envoy refuses two siblings with the same key and value.
  list: fc.uniqueArray(tie('node') as fc.Arbitrary<EnvoyNode>, { maxLength: 4, selector: n => `${n.key}_${n.value ?? ''}` })
})).list as fc.Arbitrary<EnvoyNode[]>

const requestArb = fc.uniqueArray(fc.tuple(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES)), { minLength: 1, maxLength: 3, selector: e => e[0] })

describe('envoy: agrees with the reference lookup', () => {
  it('for one request descriptor, the policy that leads its first key\'s group is the limit Envoy finds', () => {
    let compared = 0
    fc.assert(fc.property(treeArb, fc.array(requestArb, { maxLength: 4 }), fc.array(fc.array(fc.nat(), { minLength: 6, maxLength: 6 }), { minLength: 1, maxLength: 6 }), (tree, random, walks) => {
      // A path that repeats a key has no flat descriptor; it is refused (tested below).
      fc.pre(!repeatsKey(tree, []))
      const requests = [...random, ...walks.map(w => requestAlong(tree, w)).filter(r => r.length > 0)]
      const { document } = envoyToPolicies({ domain: 'd', descriptors: tree })
      const compiled = compilePolicies(validatePolicies(document), { maxKeyLength: 256 })
      for (const entries of requests) {
        const ref = envoyLookup(tree, entries)
        if (ref.deadEnd) continue
        const group = compiled.groups.find(g => g.name === `envoy:d:${entries[0][0]}`)
        const winner = group?.winner(Object.fromEntries(entries))
        const node = ref.node as EnvoyNode
        if (node.rate_limit === undefined) {
          // Envoy finds no limit here: meshlimit finds none either, or this node's blocker.
          if (winner !== undefined) expect(winner.policy.description).toBe(describePath('d', ref.path) + ' (no rate limit)')
        } else {
          expect(winner?.policy.description).toBe(describePath('d', ref.path))
          expect(winner?.policy.limits[0].limit).toBe(node.rate_limit.requests_per_unit)
        }
        compared++
      }
    }), { numRuns: 400 })
    // The comparison must have happened often, not been skipped as dead ends.
    expect(compared).toBeGreaterThan(300)
  })

  it('conversion is deterministic, ids are unique and valid, or the input is refused with a policy error', () => {
    fc.assert(fc.property(treeArb, fc.constantFrom('d', 'my domain/with:odd chars', 'x'.repeat(70)), (tree, domain) => {
      if (repeatsKey(tree, [])) {
        expect(thrown(() => envoyToPolicies({ domain, descriptors: tree }))).toMatchObject({ code: ErrorCode.POLICY_INVALID })
        return
      }
      const a = envoyToPolicies({ domain, descriptors: tree })
      expect(envoyToPolicies({ domain, descriptors: tree })).toEqual(a)
      const ids = a.document.policies.map(p => p.id)
      expect(new Set(ids).size).toBe(ids.length)
      validatePolicies(a.document)
    }), { numRuns: 200 })
  })

  it('arbitrary input never throws anything but a MeshlimitError', () => {
    fc.assert(fc.property(fc.oneof(fc.anything(), fc.record({ domain: fc.anything(), descriptors: fc.anything() }), fc.string()), v => {
      try {
        envoyToPolicies(v)
      } catch (err) {
        expect(err).toBeInstanceOf(MeshlimitError)
        expect([ErrorCode.POLICY_INVALID, ErrorCode.POLICY_PARSE]).toContain((err as MeshlimitError).code)
      }
    }), { numRuns: 500 })
  })
})
