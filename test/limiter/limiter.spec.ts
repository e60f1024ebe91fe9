import { describe, expect, it } from 'vitest'
import { stubTransport } from '../helpers/transport.js'
import { createLimiter, ErrorCode, MAX_COST, MeshlimitError, VirtualClock, type PolicyDocument } from '../../src/index.js'

const T0 = 1_800_000_000_000

function expectCode (fn: () => unknown, code: string, field?: string): MeshlimitError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(MeshlimitError)
    const e = err as MeshlimitError
    expect(e.code).toBe(code)
    if (field !== undefined) expect(e.field).toBe(field)
    expect(e.message).toContain('Fix:')
    return e
  }
  throw new Error(`expected ${code}`)
}

describe('limiter: several limits per request', () => {
  const doc: PolicyDocument = {
    policies: [
      { id: 'per-user', key: 'user', limits: [{ id: 'minute', limit: 5, window: '1m' }] },
      { id: 'per-route', key: 'route', limits: [{ id: 'minute', limit: 3, window: '1m' }] }
    ]
  }

  it('needs every matched limit to pass, and a denied request consumes nothing anywhere', () => {
    const limiter = createLimiter({ clock: new VirtualClock(T0), policies: doc })
    for (let i = 0; i < 3; i++) expect(limiter.check({ user: 'u', route: '/a' }).allowed).toBe(true)
    const denied = limiter.check({ user: 'u', route: '/a' })
    expect(denied.allowed).toBe(false)
    expect(denied.policy).toBe('per-route')
    expect(denied.limits.map(l => [l.policy, l.allowed, l.remaining])).toEqual([['per-user', true, 2], ['per-route', false, 0]])
    // The user limit still has exactly 2 left: the denial did not count against it.
    expect(limiter.check({ user: 'u', route: '/b' }).limits[0].remaining).toBe(1)
    expect(limiter.check({ user: 'u', route: '/b' }).limits[0].remaining).toBe(0)
    expect(limiter.check({ user: 'u', route: '/b' }).allowed).toBe(false)
  })

  it('reports the most constraining limit when allowed and the longest wait when denied', () => {
    const limiter = createLimiter({ clock: new VirtualClock(T0), policies: doc })
    const d = limiter.check({ user: 'u', route: '/a' })
    expect(d.policy).toBe('per-route')
    expect(d.remaining).toBe(2)
    expect(d.limit).toBe(3)
    expect(d.limitId).toBe('minute')
    expect(d.retryAfterMs).toBe(0)
    expect(d.resetMs).toBeGreaterThan(0)
    expect(d.resetMs).toBeLessThanOrEqual(66_000)
  })

  it('peek answers without counting', () => {
    const limiter = createLimiter({ clock: new VirtualClock(T0), policies: doc })
    for (let i = 0; i < 10; i++) expect(limiter.peek({ user: 'u', route: '/a' }).remaining).toBe(3)
    expect(limiter.check({ user: 'u', route: '/a' }).remaining).toBe(2)
    expect(limiter.peek({ user: 'u', route: '/a' }, 3).allowed).toBe(false)
    expect(limiter.peek({ user: 'u', route: '/a' }, 2).allowed).toBe(true)
  })
})

describe('limiter: precedence and groups', () => {
  it('the most specific policy of a group wins; other groups still apply', () => {
    const limiter = createLimiter({
      clock: new VirtualClock(T0),
      policies: `
policies:
  - id: default-user
    key: user
    limits: [{ limit: 2, window: 1m }]
  - id: pro-user
    key: user
    match: { plan: pro }
    limits: [{ limit: 10, window: 1m }]
  - id: vip
    key: user
    match: { user: vip-1 }
    priority: 10
    limits: [{ limit: 1000, window: 1m }]
  - id: per-ip
    key: ip
    limits: [{ limit: 100, window: 1m }]
`
    })
    expect(limiter.check({ user: 'a' }).limits.map(l => l.policy)).toEqual(['default-user'])
    expect(limiter.check({ user: 'b', plan: 'pro' }).limits.map(l => l.limit)).toEqual([10])
    expect(limiter.check({ user: 'vip-1', plan: 'pro', ip: '10.0.0.1' }).limits.map(l => l.policy)).toEqual(['vip', 'per-ip'])
  })

  it('groups IPv6 clients by /64 by default', () => {
    const limiter = createLimiter({ clock: new VirtualClock(T0), policies: { policies: [{ id: 'ip', key: 'ip', limits: [{ limit: 2, window: '1m' }] }] } })
    expect(limiter.check({ ip: '2001:db8:1:2::1' }).allowed).toBe(true)
    expect(limiter.check({ ip: '2001:db8:1:2:ffff::9' }).allowed).toBe(true)
    expect(limiter.check({ ip: '2001:0db8:0001:0002:0:0:0:abcd' }).allowed).toBe(false)
    expect(limiter.check({ ip: '2001:db8:1:3::1' }).allowed).toBe(true)
  })
})

describe('limiter: shadow mode', () => {
  it('evaluates and reports would-deny but allows, and does not count what it would deny', () => {
    const limiter = createLimiter({
      clock: new VirtualClock(T0),
      policies: { policies: [
        { id: 'enforced', key: 'user', limits: [{ limit: 100, window: '1m' }] },
        { id: 'dark-launch', key: 'route', shadow: true, limits: [{ limit: 1, window: '1m' }] }
      ] }
    })
    const first = limiter.check({ user: 'u', route: '/x' })
    expect(first.allowed).toBe(true)
    expect(first.shadowDenied).toBe(false)
    const second = limiter.check({ user: 'u', route: '/x' })
    expect(second.allowed).toBe(true)
    expect(second.shadowDenied).toBe(true)
    expect(second.policy).toBe('enforced')
    const shadow = second.limits.find(l => l.policy === 'dark-launch')
    expect(shadow?.shadow).toBe(true)
    expect(shadow?.allowed).toBe(false)
    expect(second.limits.find(l => l.policy === 'enforced')?.remaining).toBe(98)
  })

  it('a request matched only by shadow limits is allowed with no deciding policy', () => {
    const limiter = createLimiter({ clock: new VirtualClock(T0), policies: { policies: [{ id: 's', key: 'user', shadow: true, limits: [{ limit: 0, window: '1m' }] }] } })
    const d = limiter.check({ user: 'u' })
    expect(d.allowed).toBe(true)
    expect(d.shadowDenied).toBe(true)
    expect(d.policy).toBeUndefined()
    expect(d.limits).toHaveLength(1)
  })
})

describe('limiter: bad input', () => {
  const limiter = createLimiter({ clock: new VirtualClock(T0), policies: { policies: [{ id: 'p', key: 'user', limits: [{ limit: 5, window: '1m' }] }] } })

  it('rejects a cost that is not an integer from 1 to MAX_COST', () => {
    for (const cost of [0, -1, 1.5, Number.NaN, Infinity, MAX_COST + 1, '2' as unknown as number]) {
      expectCode(() => limiter.check({ user: 'u' }, cost), ErrorCode.COST_INVALID, 'cost')
    }
    expect(limiter.check({ user: 'u' }, 5).allowed).toBe(true)
  })

  it('rejects a descriptor that is not an object, or has non-string values', () => {
    for (const d of [null, undefined, 42, 'user']) {
      expectCode(() => limiter.check(d as never), ErrorCode.DESCRIPTOR_INVALID, 'descriptor')
    }
    expectCode(() => limiter.check({ user: 42 } as never), ErrorCode.DESCRIPTOR_INVALID, 'descriptor.user')
  })

  it('an empty descriptor matches only key-less, condition-less policies', () => {
    const l = createLimiter({
      clock: new VirtualClock(T0),
      policies: { policies: [
        { id: 'p', key: 'user', limits: [{ limit: 5, window: '1m' }] },
        { id: 'global', limits: [{ limit: 1, window: '1m' }] }
      ] }
    })
    expect(l.check({}).policy).toBe('global')
    expect(l.check({}).allowed).toBe(false)
    const none = createLimiter({ clock: new VirtualClock(T0), policies: { policies: [{ id: 'p', key: 'user', limits: [{ limit: 5, window: '1m' }] }] } })
    const d = none.check({})
    expect(d.allowed).toBe(true)
    expect(d.policy).toBeUndefined()
    expect(d.limits).toEqual([])
  })

  it('a 1 MB key is counted under a fixed-size digest: distinct keys stay distinct, memory stays bounded', () => {
    const l = createLimiter({ clock: new VirtualClock(T0), policies: { policies: [{ id: 'p', key: 'user', limits: [{ limit: 1, window: '1m' }] }] } })
    const a = 'a'.repeat(1 << 20)
    const b = 'a'.repeat((1 << 20) - 1) + 'b'
    expect(l.check({ user: a }).allowed).toBe(true)
    expect(l.check({ user: a }).allowed).toBe(false)
    expect(l.check({ user: b }).allowed).toBe(true)
    expect(l.stats().limits[0].keys).toBe(2)
  })

  it('a policy with a negative limit is refused with the field and the fix', () => {
    const e = expectCode(() => createLimiter({ policies: { policies: [{ id: 'p', limits: [{ limit: -1, window: '1m' }] }] } }), ErrorCode.POLICY_INVALID, 'policies[0].limits[0].limit')
    expect(e.value).toBe(-1)
  })

  it('bad options are refused with the option named', () => {
    expectCode(() => createLimiter({ policies: { policies: [] }, maxKeys: 0 }), ErrorCode.OPTION_INVALID, 'maxKeys')
    expectCode(() => createLimiter({ policies: { policies: [] }, flushIntervalMs: -5, transport: stubTransport('x') }), ErrorCode.OPTION_INVALID, 'flushIntervalMs')
    expectCode(() => createLimiter(undefined as never), ErrorCode.OPTION_INVALID, 'init')
    expectCode(() => createLimiter({} as never), ErrorCode.OPTION_INVALID, 'policies')
  })

  it('a closed limiter refuses work', () => {
    const l = createLimiter({ clock: new VirtualClock(T0), policies: { policies: [] } })
    l.close()
    expectCode(() => l.check({ user: 'u' }), ErrorCode.STATE_INVALID)
    expectCode(() => l.setPolicies({ policies: [] }), ErrorCode.STATE_INVALID)
  })

  it('a limit of 0 denies everything', () => {
    const l = createLimiter({ clock: new VirtualClock(T0), policies: { policies: [{ id: 'block', key: 'user', limits: [{ limit: 0, window: '1m' }] }] } })
    const d = l.check({ user: 'u' })
    expect(d.allowed).toBe(false)
    expect(d.retryAfterMs).toBe(Infinity)
  })
})

describe('limiter: bounded memory', () => {
  it('a flood of new keys never holds more than maxKeys per limit', () => {
    const clock = new VirtualClock(T0)
    const l = createLimiter({ clock, maxKeys: 1000, policies: { policies: [{ id: 'p', key: 'user', limits: [{ limit: 5, window: '1m' }] }] } })
    for (let i = 0; i < 50_000; i++) {
      if (i % 100 === 0) clock.advance(1)
      expect(l.check({ user: `attacker-${i}` }).allowed).toBe(true)
    }
    const s = l.stats().limits[0]
    expect(s.keys).toBeLessThanOrEqual(1000)
    expect(s.evictions).toBeGreaterThan(40_000)
  })

  it('idle keys are freed once their window has passed', () => {
    const clock = new VirtualClock(T0)
    const l = createLimiter({ clock, sweepIntervalMs: 1000, policies: { policies: [{ id: 'p', key: 'user', limits: [{ limit: 5, window: '10s' }] }] } })
    for (let i = 0; i < 500; i++) l.check({ user: `u${i}` })
    expect(l.stats().limits[0].keys).toBe(500)
    clock.advance(5_000)
    expect(l.stats().limits[0].keys).toBe(500)
    clock.advance(20_000)
    expect(l.stats().limits[0].keys).toBe(0)
    expect(l.stats().limits[0].expired).toBe(500)
  })
})

describe('limiter: policy changes at run time', () => {
  const v1: PolicyDocument = { policies: [{ id: 'p', key: 'user', limits: [{ id: 'm', limit: 5, window: '1m' }, { id: 'b', algorithm: 'token-bucket', ratePerSecond: 1, burst: 10 }] }] }

  it('keeps usage for limits that keep their id and applies a new ceiling from the next check', () => {
    const clock = new VirtualClock(T0)
    const l = createLimiter({ clock, policies: v1 })
    for (let i = 0; i < 4; i++) l.check({ user: 'u' })
    l.setPolicies({ policies: [{ id: 'p', key: 'user', limits: [{ id: 'm', limit: 6, window: '1m' }] }] })
    const d = l.check({ user: 'u' })
    expect(d.allowed).toBe(true)
    expect(d.remaining).toBe(1)
    expect(l.check({ user: 'u' }).allowed).toBe(true)
    expect(l.check({ user: 'u' }).allowed).toBe(false)
  })

  it('keeps the usage of a limit whose layout changed (re-bucketed, see test/policy/migrate.spec.ts)', () => {
    // T0 is a multiple of a minute: the sliding window's slots sit inside the fixed window.
    const clock = new VirtualClock(T0)
    const l = createLimiter({ clock, policies: v1 })
    for (let i = 0; i < 3; i++) l.check({ user: 'u' })
    l.setPolicies({ policies: [{ id: 'p', key: 'user', limits: [{ id: 'm', algorithm: 'fixed-window', limit: 5, window: '1m' }] }] })
    expect(l.check({ user: 'u' }).remaining).toBe(1)
  })

  it('an invalid document is refused and the last good policies stay in force', () => {
    const clock = new VirtualClock(T0)
    const l = createLimiter({ clock, policies: v1 })
    l.check({ user: 'u' })
    expectCode(() => l.setPolicies('policies: [ { id: p, limits: [ { limit: -3, window: 1m } ] } ]'), ErrorCode.POLICY_INVALID, 'policies[0].limits[0].limit')
    expectCode(() => l.setPolicies('policies: [ unclosed'), ErrorCode.POLICY_PARSE)
    expect(l.policies.policies[0].limits.map(x => x.id)).toEqual(['m', 'b'])
    expect(l.check({ user: 'u' }).limits[0].remaining).toBe(3)
  })
})
