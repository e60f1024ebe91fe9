import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createLimiter, VirtualClock, type Descriptor, type Limiter } from '../../src/index.js'
import { readPolicyText } from '../../src/policy/load.js'
import { validatePolicies } from '../../src/policy/validate.js'

const DIR = join(import.meta.dirname, '../../examples/policies')
const FILES = readdirSync(DIR).filter(f => f.endsWith('.yaml')).sort()
const T0 = 1_800_000_000_000

function limiterOf (file: string): Limiter {
  const loaded = readPolicyText(readFileSync(join(DIR, file), 'utf8'), file)
  if (loaded.kind !== 'document') throw new Error(`${file} is not a document`)
  return createLimiter({ clock: new VirtualClock(T0), policies: loaded.document })
}

function admitted (l: Limiter, d: Descriptor, n: number): number {
  let ok = 0
  for (let i = 0; i < n; i++) if (l.check(d).allowed) ok++
  return ok
}

describe('examples/policies', () => {
  it('every example is a valid document (Envoy files included), and docs/policies.md shows each one', () => {
    expect(FILES.length).toBeGreaterThanOrEqual(7)
    const docs = readFileSync(join(DIR, '../../docs/policies.md'), 'utf8')
    for (const f of FILES) {
      const loaded = readPolicyText(readFileSync(join(DIR, f), 'utf8'), f)
      expect(loaded.kind).toBe('document')
      if (loaded.kind === 'document') validatePolicies(loaded.document)
      expect(docs).toContain(`examples/policies/${f}`)
    }
  })

  it('per-user: 100 a minute, bursts of 20', () => {
    const l = limiterOf('per-user.yaml')
    expect(admitted(l, { user: 'u' }, 25)).toBe(20)
  })

  it('per-api-key: per key per hour, 20 in flight', () => {
    const l = limiterOf('per-api-key.yaml')
    const leases = Array.from({ length: 21 }, () => l.acquire({ apiKey: 'k' }))
    expect(leases.filter(x => x.allowed)).toHaveLength(20)
    for (const x of leases) x.release()
    expect(l.acquire({ apiKey: 'k' }).allowed).toBe(true)
  })

  it('per-ip: IPv6 grouped by /64, internal networks higher, one block shut out', () => {
    const l = limiterOf('per-ip.yaml')
    expect(admitted(l, { ip: '2001:db8:1:2::1' }, 200) + admitted(l, { ip: '2001:db8:1:2::ffff' }, 200)).toBe(300)
    expect(admitted(l, { ip: '10.1.2.3' }, 400)).toBe(400)
    expect(admitted(l, { ip: '203.0.113.9' }, 5)).toBe(0)
    expect(l.check({ ip: '198.51.100.1' }).policy).toBe('per-ip')
  })

  it('per-route: named routes share one counter, others one per route', () => {
    const l = limiterOf('per-route.yaml')
    expect(l.check({ route: '/v1/search', method: 'GET' }).policy).toBe('search-reads')
    expect(l.check({ route: '/v1/orders', method: 'POST' }).policy).toBe('v1-writes')
    expect(l.check({ route: '/v1/orders', method: 'GET' }).policy).toBe('per-route-default')
    // All writes share one counter of 500 a second; the POST above took one.
    expect(admitted(l, { route: '/v1/a', method: 'DELETE' }, 300) + admitted(l, { route: '/v1/b', method: 'PUT' }, 300)).toBe(499)
  })

  it('tiers: one tier applies per request, free by default', () => {
    const l = limiterOf('tiers.yaml')
    expect(admitted(l, { user: 'a' }, 100)).toBe(60)
    expect(admitted(l, { user: 'b', plan: 'pro' }, 700)).toBe(600)
    expect(admitted(l, { user: 'c', plan: 'enterprise' }, 700)).toBe(700)
    expect(admitted(l, { user: 'd', plan: 'unknown' }, 100)).toBe(60)
    expect(l.check({ user: 'e', plan: 'pro' }).limits.map(s => s.policy)).toEqual(['tier-pro', 'tier-pro'])
  })

  it('several limits: all apply, the shadow one only reports', () => {
    const l = limiterOf('several-limits.yaml')
    const d = { user: 'u', ip: '198.51.100.7', route: '/v1/x' }
    const first = l.check(d)
    expect(first.limits.map(s => s.policy)).toEqual(['per-user', 'per-ip', 'per-route', 'fleet', 'per-user-strict'])
    expect(admitted(l, d, 150)).toBe(99)
    const last = l.check(d)
    expect([last.allowed, last.policy]).toEqual([false, 'per-user'])
    expect(l.stats().limits.find(s => s.name === 'per-user-strict/minute')?.shadowDenied).toBeGreaterThan(0)
  })

  it('envoy-ratelimit: per address, a blocked address, a dark launch and a replacing premium limit', () => {
    const l = limiterOf('envoy-ratelimit.yaml')
    expect(admitted(l, { remote_address: '1.2.3.4' }, 20)).toBe(10)
    expect(admitted(l, { remote_address: '50.0.0.5' }, 20)).toBe(0)
    const search = { service: 'search', user: 'u' }
    expect(admitted(l, search, 40)).toBe(40)
    expect(l.check(search).shadowDenied).toBe(true)
    const premium = { service: 'search', plan: 'premium', user: 'p' }
    expect(l.check(premium).limits.map(s => s.policy)).toEqual(['edge.plan_premium.user'])
  })
})
