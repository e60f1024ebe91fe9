import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { LimitInfo } from '../../src/algorithms.js'
import { createBlocklist } from '../../src/abuse/blocklist.js'
import { Decision, LimitStatus } from '../../src/decision.js'
import { createGate } from '../../src/gate.js'
import { createRateLimitHeaders, toAscii } from '../../src/http/headers.js'
import { ByteOut, StringOut, type JsonOut } from '../../src/http/json-out.js'
import { createLimiter, seededRandom, VirtualClock } from '../../src/index.js'
import { writeDecisionJson } from '../../src/sidecar/answer-json.js'

/** What a writer writes, through both JsonOut implementations (they must agree). */
function written (write: (out: JsonOut) => void): string {
  const s = new StringOut()
  write(s)
  const b = new ByteOut(64)
  b.begin()
  write(b)
  expect(b.finish().toString('latin1')).toBe(s.text)
  return s.text
}
const decisionJson = (d: Decision): string => written(out => { writeDecisionJson(out, d) })

const T0 = 1_800_000_000_000
const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map(c => String.fromCharCode(c)), minLength: 1, maxLength: 12 })
const anyText = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 })

const info = (name: fc.Arbitrary<string>): fc.Arbitrary<LimitInfo> => fc.record({
  policy: name,
  id: name,
  limit: fc.integer({ min: 1, max: 2 ** 32 }),
  algorithm: fc.constantFrom('fixed-window', 'sliding-window', 'token-bucket', 'gcra', 'concurrency'),
  scope: fc.constantFrom('local', 'region', 'global'),
  windowMs: fc.integer({ min: 1, max: 86_400_000 }),
  shadow: fc.boolean()
}) as fc.Arbitrary<LimitInfo>

const wait = fc.oneof(fc.constant(0), fc.constant(Infinity), fc.integer({ min: 1, max: 10_000_000 }), fc.double({ min: 0.001, max: 1e6, noNaN: true }))

/** Decisions as the limiter builds them: one deciding limit alone (enforced), several, or none matched. */
const decision = (name: fc.Arbitrary<string>): fc.Arbitrary<Decision> => fc.oneof(
  fc.constant(new Decision(true, undefined, Infinity, 0, 0, undefined)),
  fc.tuple(fc.boolean(), info(name), fc.nat(2 ** 32), fc.nat(10_000_000), wait).map(([ok, i, rem, reset, retry]) =>
    new Decision(ok, { ...i, shadow: false }, rem, reset, ok ? 0 : retry, undefined)),
  fc.array(fc.tuple(fc.boolean(), info(name), fc.nat(2 ** 32), fc.nat(10_000_000), wait), { minLength: 1, maxLength: 4 }).map(ls => {
    const statuses = ls.map(([ok, i, rem, reset, retry]) => new LimitStatus(i, rem, reset, ok ? 0 : retry, ok))
    const denied = statuses.some(s => !s.allowed && !s.info.shadow)
    const s = statuses[0]
    return new Decision(!denied, s.info, s.remaining, s.resetMs, denied ? s.retryAfterMs : 0, statuses)
  })
)

describe('the decision API answer written as text', () => {
  it('decisionJson is JSON.stringify of the decision, character for character', () => {
    fc.assert(fc.property(decision(printable), d => {
      expect(decisionJson(d)).toBe(JSON.stringify(d))
    }), { numRuns: 500 })
  })

  it('decisionJson of ids outside ASCII is the same value, in ASCII', () => {
    fc.assert(fc.property(decision(anyText), d => {
      const text = decisionJson(d)
      expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(d)))
      expect(Buffer.byteLength(text)).toBe(text.length)
    }), { numRuns: 300 })
  })

  it('headers.writeJson writes JSON.stringify(headers.of(...)) for every option and decision', () => {
    const options = fc.record({
      legacy: fc.boolean(),
      ietf: fc.boolean(),
      resetFormat: fc.constantFrom('delta-seconds' as const, 'epoch-seconds' as const),
      retryAfterJitterMs: fc.constantFrom(0, 500)
    })
    fc.assert(fc.property(options, decision(printable), fc.option(fc.integer({ min: 1, max: 100_000 }), { nil: undefined }), (o, d, retry) => {
      const h = createRateLimitHeaders({ ...o, clock: new VirtualClock(T0), random: seededRandom(3) })
      // With jitter and no retry given, each call draws its own: give both the same one.
      const r = retry ?? h.retryAfterSeconds(d)
      const text = written(out => { h.writeJson?.(out, d, r) })
      expect(text).toBe(JSON.stringify(h.of(d, r)))
      expect(Buffer.byteLength(text)).toBe(text.length)
    }), { numRuns: 500 })
  })

  it('toAscii escapes only characters outside ASCII, keeping the value', () => {
    fc.assert(fc.property(fc.jsonValue(), v => {
      const text = toAscii(JSON.stringify(v))
      expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(v)))
      expect(Buffer.byteLength(text)).toBe(text.length)
    }))
    expect(toAscii('"plain \\"text\\""')).toBe('"plain \\"text\\""')
  })
})

describe('ByteOut', () => {
  const op = fc.oneof(
    fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map(c => String.fromCharCode(c)), maxLength: 40 }).map(s => ({ kind: 'ascii' as const, s })),
    fc.string({ unit: 'grapheme', maxLength: 10 }).map(s => ({ kind: 'utf8' as const, s })),
    fc.oneof(fc.nat(), fc.maxSafeNat(), fc.integer(), fc.double(), fc.constantFrom(-0, 0, 9, 10, 99, 100, Infinity, -Infinity, NaN, 1e21, 2 ** 53, 1.5)).map(n => ({ kind: 'number' as const, n }))
  )
  type Op = typeof op extends fc.Arbitrary<infer T> ? T : never
  const text = (ops: Op[]): string => ops.map(o => o.kind === 'number' ? String(o.n) : o.s).join('')

  it('each piece is its text in bytes, and stays so while later pieces are written (small slabs grow and are replaced)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 64 }), fc.array(fc.tuple(fc.array(op, { maxLength: 12 }), fc.boolean()), { maxLength: 30 }), (slab, pieces) => {
      const out = new ByteOut(slab)
      const kept: Array<[Buffer, string]> = []
      for (const [ops, finished] of pieces) {
        out.begin()
        for (const o of ops) {
          if (o.kind === 'ascii') out.ascii(o.s)
          else if (o.kind === 'utf8') out.utf8(o.s)
          else out.number(o.n)
        }
        // An unfinished piece (an error thrown midway) is dropped by the next begin().
        if (finished) kept.push([out.finish(), text(ops)])
      }
      for (const [bytes, t] of kept) expect(bytes.toString('utf8')).toBe(t)
    }))
  })
})

describe('gate.decide', () => {
  const POLICIES = `
policies:
  - id: per-user
    key: user
    limits: [ { limit: 3, window: 10s, algorithm: fixed-window }, { limit: 5, window: 1m, algorithm: sliding-window } ]
  - id: per-route
    key: route
    limits: [ { algorithm: token-bucket, ratePerSecond: 1, burst: 4 } ]
`
  const twin = () => {
    const clock = new VirtualClock(T0)
    const limiter = createLimiter({ policies: POLICIES, clock })
    const blocklist = createBlocklist({ clock })
    const gate = createGate({ limiter, blocklist, clock, headers: createRateLimitHeaders({ clock, policies: limiter, random: seededRandom(9) }) })
    return { clock, gate, blocklist }
  }

  it('decides as check() does, and headersJson is its header map as JSON', () => {
    const a = twin()
    const b = twin()
    let blocked = 0
    let denied = 0
    const reqs = [{ user: 'u1', route: '/a' }, { user: 'u1', route: '/b' }, { user: 'u2', route: '/a' }, { route: '/a' }, { other: 'x' }]
    for (let i = 0; i < 40; i++) {
      const d = reqs[i % reqs.length]
      if (i === 25) { a.blocklist.block('user:u2', 30_000, 'probing'); b.blocklist.block('user:u2', 30_000, 'probing') }
      const v = a.gate.decide(d, 1 + (i % 2), 'http')
      const r = b.gate.check(d, 1 + (i % 2), 'http')
      const { headers, ...rest } = r
      // (JSON: check() has already materialised the decision's limit list through its headers.)
      expect(JSON.stringify(v)).toBe(JSON.stringify(rest))
      expect(written(out => { a.gate.writeHeadersJson(out, v) })).toBe(JSON.stringify(headers))
      if (v.block !== undefined) blocked++
      else if (!v.allowed) denied++
      a.clock.advance(700)
      b.clock.advance(700)
    }
    expect(blocked).toBeGreaterThan(0)
    expect(denied).toBeGreaterThan(0)
  })

  it('a header builder without json() gets JSON.stringify of its map, in ASCII', () => {
    const clock = new VirtualClock(T0)
    const limiter = createLimiter({ policies: POLICIES, clock })
    const gate = createGate({ limiter, headers: { of: () => ({ 'X-Note': 'caf\u00e9' }), retryAfterSeconds: () => undefined, quotaName: i => i.policy } })
    const text = written(out => { gate.writeHeadersJson(out, gate.decide({ user: 'u' }, 1, 'http')) })
    expect(JSON.parse(text)).toEqual({ 'X-Note': 'caf\u00e9' })
    expect(text).toBe('{"X-Note":"caf\\u00e9"}')
  })
})
