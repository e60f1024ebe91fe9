import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createLimiter, VirtualClock, seededRandom } from '../../src/index.js'
import { createRateLimitHeaders } from '../../src/http/headers.js'
import { rateLimitedProblem } from '../../src/http/problem.js'
import { sfInteger, sfItem, sfList, sfString } from '../../src/http/sf.js'
import { parseList } from './sf-parser.js'

const T0 = 1_800_000_000_000

describe('structured field serialisation', () => {
  it('strings round-trip through an RFC 9651 parser for every printable ASCII text', () => {
    fc.assert(fc.property(fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map(c => String.fromCharCode(c)), maxLength: 40 }), s => {
      const m = parseList(sfString(s))
      expect(m).toEqual([{ value: s, params: [] }])
    }))
  })

  it('escapes quotes and backslashes exactly', () => {
    expect(sfString('a"b\\c')).toBe('"a\\"b\\\\c"')
  })

  it('refuses characters outside printable ASCII', () => {
    expect(() => sfString('caf\u00e9')).toThrow(RangeError)
    expect(() => sfString('a\nb')).toThrow(RangeError)
  })

  it('integers are whole and clamped to 15 digits', () => {
    fc.assert(fc.property(fc.double({ noNaN: true }), n => {
      const s = sfInteger(n)
      expect(s).toMatch(/^-?[0-9]{1,15}$/)
    }))
    expect(sfInteger(1e20)).toBe('999999999999999')
    expect(sfInteger(2.7)).toBe('2')
  })

  it('lists of parametrised items parse back to the same members', () => {
    const item = fc.record({
      name: fc.stringMatching(/^[A-Za-z0-9_.:\-/"\\ ]{1,20}$/),
      params: fc.uniqueArray(fc.tuple(fc.stringMatching(/^[a-z][a-z0-9_]{0,5}$/), fc.integer({ min: 0, max: 2 ** 32 })), { selector: p => p[0], maxLength: 4 })
    })
    fc.assert(fc.property(fc.array(item, { minLength: 1, maxLength: 5 }), items => {
      const text = sfList(items.map(i => sfItem(i.name, i.params)))
      expect(parseList(text)).toEqual(items.map(i => ({ value: i.name, params: i.params })))
    }))
  })
})

function setup (policies: string, init: Parameters<typeof createRateLimitHeaders>[0] = {}) {
  const clock = new VirtualClock(T0)
  const limiter = createLimiter({ policies, clock })
  const headers = createRateLimitHeaders({ clock, policies: limiter, random: seededRandom(7), ...init })
  return { clock, limiter, headers }
}

const ONE = `
policies:
  - id: per-user
    key: user
    limits: [ { limit: 3, window: 10s, algorithm: fixed-window } ]
`

describe('rate-limit headers', () => {
  it('writes the legacy trio and the draft-10 pair in exact syntax', () => {
    const { limiter, headers, clock } = setup(ONE)
    clock.advance(2500) // 2.5 s into the 10 s window
    const h = headers.of(limiter.check({ user: 'u' }))
    expect(h).toEqual({
      'X-RateLimit-Limit': '3',
      'X-RateLimit-Remaining': '2',
      'X-RateLimit-Reset': '8',
      'RateLimit-Policy': '"per-user";q=3;w=10',
      RateLimit: '"per-user";r=2;t=8'
    })
  })

  it('denied: Retry-After is the true wait rounded up, and the 429 body names the policy', () => {
    const { limiter, headers, clock } = setup(ONE)
    clock.advance(2500)
    for (let i = 0; i < 3; i++) limiter.check({ user: 'u' })
    const d = limiter.check({ user: 'u' })
    expect(d.allowed).toBe(false)
    const h = headers.of(d)
    expect(h['Retry-After']).toBe('8')
    expect(h['X-RateLimit-Remaining']).toBe('0')
    expect(h.RateLimit).toBe('"per-user";r=0;t=8')
    const p = rateLimitedProblem(d, headers.quotaName, headers.retryAfterSeconds(d), '/x')
    expect(p).toMatchObject({ status: 429, title: 'Too Many Requests', violatedPolicies: ['per-user'], retryAfterSeconds: 8, instance: '/x' })
    expect(p.violations).toEqual([{ quota: 'per-user', policy: 'per-user', limit: '0', quotaUnits: 3, windowSeconds: 10, retryAfterSeconds: 8 }])
  })

  it('Retry-After is never earlier than the true reset, with or without jitter', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 9999 }), fc.integer({ min: 0, max: 5000 }), fc.integer(), (offset, jitterMs, seed) => {
      const { limiter, headers, clock } = setup(ONE, { retryAfterJitterMs: jitterMs, random: seededRandom(seed) })
      clock.advance(offset)
      for (let i = 0; i < 3; i++) limiter.check({ user: 'u' })
      const d = limiter.check({ user: 'u' })
      const r = Number(headers.of(d)['Retry-After'])
      expect(r * 1000).toBeGreaterThanOrEqual(d.retryAfterMs)
      expect(r * 1000).toBeLessThanOrEqual(d.retryAfterMs + jitterMs + 1000)
      // Waiting that long really lets the request through.
      clock.advance(r * 1000)
      expect(limiter.check({ user: 'u' }).allowed).toBe(true)
    }), { numRuns: 200 })
  })

  it('epoch-seconds reset is the Unix time of the reset, rounded up', () => {
    const { limiter, headers, clock } = setup(ONE, { resetFormat: 'epoch-seconds' })
    clock.advance(2500)
    const h = headers.of(limiter.check({ user: 'u' }))
    expect(h['X-RateLimit-Reset']).toBe(String(Math.ceil((T0 + 10_000) / 1000)))
  })

  it('lists every enforced limit, names multi-limit policies policy/limit, skips shadow ones', () => {
    const { limiter, headers } = setup(`
policies:
  - id: per-user
    key: user
    limits:
      - { id: sec, limit: 5, window: 1s, algorithm: fixed-window }
      - { id: min, limit: 100, window: 1m, algorithm: fixed-window }
  - id: per-ip
    key: ip
    limits: [ { limit: 50, window: 1h, algorithm: fixed-window } ]
  - id: trial
    key: apiKey
    shadow: true
    limits: [ { limit: 1, window: 1s } ]
`)
    const h = headers.of(limiter.check({ user: 'u', ip: '10.0.0.1', apiKey: 'k' }))
    expect(h['RateLimit-Policy']).toBe('"per-user/sec";q=5;w=1, "per-user/min";q=100;w=60, "per-ip";q=50;w=3600')
    expect(h.RateLimit).toBe('"per-user/sec";r=4;t=1, "per-user/min";r=99;t=60, "per-ip";r=49;t=3600')
    expect(h['X-RateLimit-Limit']).toBe('5')
    for (const f of ['RateLimit-Policy', 'RateLimit']) expect(() => parseList(h[f])).not.toThrow()
  })

  it('each family can be switched off; no headers when no policy matched', () => {
    const a = setup(ONE, { legacy: false })
    expect(Object.keys(a.headers.of(a.limiter.check({ user: 'u' })))).toEqual(['RateLimit-Policy', 'RateLimit'])
    const b = setup(ONE, { ietf: false })
    expect(Object.keys(b.headers.of(b.limiter.check({ user: 'u' })))).toEqual(['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'])
    expect(b.headers.of(b.limiter.check({ ip: '1.2.3.4' }))).toEqual({})
  })

  it('a cost above the limit gets no Retry-After and a body saying it can never pass', () => {
    const { limiter, headers } = setup(ONE)
    const d = limiter.check({ user: 'u' }, 5)
    expect(d.allowed).toBe(false)
    expect(headers.of(d)['Retry-After']).toBeUndefined()
    const p = rateLimitedProblem(d, headers.quotaName, headers.retryAfterSeconds(d))
    expect(p.detail).toContain('can never pass')
    expect((p.violations as Array<{ retryAfterSeconds: unknown }>)[0].retryAfterSeconds).toBeNull()
  })

  it('refuses bad options with a coded error', () => {
    expect(() => createRateLimitHeaders({ resetFormat: 'http-date' as never })).toThrow(expect.objectContaining({ code: 'MESHLIMIT_OPTION_INVALID', field: 'resetFormat' }))
    expect(() => createRateLimitHeaders({ retryAfterJitterMs: -1 })).toThrow(expect.objectContaining({ code: 'MESHLIMIT_OPTION_INVALID' }))
  })
})

describe('jitter consistency', () => {
  it('the 429 body and the Retry-After header agree when jitter is on', async () => {
    const { createGate } = await import('../../src/gate.js')
    const { limiter, headers } = setup(ONE, { retryAfterJitterMs: 30_000, random: seededRandom(3) })
    const gate = createGate({ limiter, headers })
    for (let i = 0; i < 3; i++) gate.check({ user: 'u' }, 1, 'test')
    for (let i = 0; i < 20; i++) {
      const r = gate.check({ user: 'u' }, 1, 'test')
      expect(r.headers['Retry-After']).toBe(String(r.retryAfterSeconds))
      expect(gate.problem(r).retryAfterSeconds).toBe(r.retryAfterSeconds)
    }
  })
})
