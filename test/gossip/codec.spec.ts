import { ExtData, encode } from '@msgpack/msgpack'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CODEC_VERSION, DEFAULT_CODEC_LIMITS, decodeDelta, encodeDelta, type CodecLimits, type CounterGroup, type DeltaMessage } from '../../gossip/codec.js'

const MAX_SAFE = Number.MAX_SAFE_INTEGER
const MAX_SPAN = 65535

// --- generators ----------------------------------------------------------------

const hashArb = fc.oneof(fc.nat(1000), fc.maxSafeNat(), fc.constant(MAX_SAFE))
const countArb = fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.bigInt({ min: 1n, max: BigInt(MAX_SAFE) }).map(Number))
const limitArb = fc.oneof(
  fc.string({ minLength: 1, maxLength: 40 }),
  fc.string({ minLength: 1, maxLength: 20, unit: 'grapheme' }),
  // Astral code points: 2 UTF-16 units and 4 UTF-8 bytes each.
  fc.string({ minLength: 1, maxLength: 64, unit: 'binary' }),
  fc.constant('x'.repeat(DEFAULT_CODEC_LIMITS.maxLimitNameLength)),
  fc.constant('\u{1F600}'.repeat(DEFAULT_CODEC_LIMITS.maxLimitNameLength / 2))
)
const slotMsArb = fc.oneof(fc.integer({ min: 1, max: 86_400_000 }), fc.double({ min: 1e-3, max: 1e9, noNaN: true }))
/** A group's epochs: base plus offsets spanning less than 65536 slots, all safe. */
const groupArb = (maxEntries: number): fc.Arbitrary<CounterGroup> => fc.record({
  limit: limitArb,
  slotMs: slotMsArb,
  base: fc.oneof(fc.nat(2_000_000), fc.bigInt({ min: 0n, max: BigInt(MAX_SAFE - MAX_SPAN) }).map(Number), fc.constant(MAX_SAFE - MAX_SPAN)),
  span: fc.oneof(fc.nat(10), fc.constant(MAX_SPAN)),
  entries: fc.array(fc.tuple(hashArb, fc.nat(MAX_SPAN), countArb), { maxLength: maxEntries })
}).map(({ limit, slotMs, base, span, entries }) => ({
  limit,
  slotMs,
  entries: entries.flatMap(([h, off, c]) => [h, base + (off % (span + 1)), c])
}))
const seqArb = fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: MAX_SAFE - 100_000 }))
const messageArb = (maxGroups: number, maxEntries: number): fc.Arbitrary<DeltaMessage> => fc.record({
  incarnation: fc.oneof(fc.nat(5), fc.maxSafeNat()),
  seq: seqArb,
  sentAtMs: fc.oneof(fc.nat(), fc.constant(1_764_000_000_000), fc.double({ min: 0, max: 1e15, noNaN: true })),
  groups: fc.array(groupArb(maxEntries), { maxLength: maxGroups })
})

// --- helpers -------------------------------------------------------------------

type Flat = Array<[string, number, number, number, number]>

/** Every entry with its group's limit and slotMs, in order: splitting must preserve it. */
function flatten (groups: CounterGroup[]): Flat {
  const out: Flat = []
  for (const g of groups) for (let j = 0; j < g.entries.length; j += 3) out.push([g.limit, g.slotMs, g.entries[j], g.entries[j + 1], g.entries[j + 2]])
  return out
}

function decodeAll (parts: Uint8Array[], limits: CodecLimits = DEFAULT_CODEC_LIMITS): DeltaMessage[] {
  return parts.map(p => {
    const r = decodeDelta(p, limits)
    if (!r.ok) throw new Error(`part of ${p.byteLength} bytes rejected: ${r.reason}`)
    return r.msg
  })
}

const isSafeNat = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

/** Independent check of everything a decoded message promises; returns the first problem. */
function problemOf (msg: DeltaMessage, limits: CodecLimits): string | undefined {
  if (!isSafeNat(msg.incarnation)) return 'incarnation'
  if (!isSafeNat(msg.seq) || (msg.seq as number) < 1) return 'seq'
  if (!Number.isFinite(msg.sentAtMs) || msg.sentAtMs < 0) return 'sentAtMs'
  if (!Array.isArray(msg.groups) || msg.groups.length > limits.maxGroups) return 'groups'
  let total = 0
  for (const g of msg.groups) {
    if (typeof g.limit !== 'string' || g.limit.length === 0 || g.limit.length > limits.maxLimitNameLength) return 'limit'
    if (typeof g.slotMs !== 'number' || !Number.isFinite(g.slotMs) || g.slotMs <= 0) return 'slotMs'
    if (!Array.isArray(g.entries) || g.entries.length % 3 !== 0) return 'entries'
    total += g.entries.length / 3
    let lo = Infinity
    let hi = -Infinity
    for (let j = 0; j < g.entries.length; j += 3) {
      const [h, e, c] = g.entries.slice(j, j + 3)
      if (!isSafeNat(h) || h >= 2 ** 53) return `hash ${h}`
      if (!isSafeNat(e)) return `epoch ${e}`
      if (!isSafeNat(c) || c < 1) return `count ${c}`
      lo = Math.min(lo, e)
      hi = Math.max(hi, e)
    }
    if (hi - lo > MAX_SPAN) return 'span'
  }
  return total > limits.maxEntries ? 'total entries' : undefined
}

function expectRejected (bytes: Uint8Array, limits: CodecLimits = DEFAULT_CODEC_LIMITS): string {
  const r = decodeDelta(bytes, limits)
  expect(r.ok).toBe(false)
  if (r.ok) return ''
  expect(typeof r.reason).toBe('string')
  expect(r.reason.length).toBeGreaterThan(0)
  return r.reason
}

/** A valid wire message with one group, for tweaking one field at a time. */
function wire (fields: { version?: unknown, incarnation?: unknown, seq?: unknown, sentAtMs?: unknown, groups?: unknown[] } = {}): unknown[] {
  return [
    'version' in fields ? fields.version : CODEC_VERSION,
    'incarnation' in fields ? fields.incarnation : 3,
    'seq' in fields ? fields.seq : 4,
    'sentAtMs' in fields ? fields.sentAtMs : 1000,
    fields.groups ?? [['api', 1000, 50, [7, 0, 2, 8, 1, 5]]]
  ]
}
const group = (entries: unknown[], limit: unknown = 'api', slotMs: unknown = 1000, base: unknown = 50): unknown[] => [limit, slotMs, base, entries]

// --- round trip ------------------------------------------------------------------

describe('codec round trip', () => {
  it('decodeDelta(encodeDelta(m)) gives back every group and entry', () => {
    fc.assert(fc.property(messageArb(6, 20), msg => {
      const parts = encodeDelta(msg)
      const kept = msg.groups.filter(g => g.entries.length > 0)
      expect(parts).toHaveLength(kept.length === 0 ? 0 : 1)
      for (const d of decodeAll(parts)) {
        expect(d.incarnation).toBe(msg.incarnation)
        expect(d.seq).toBe(msg.seq)
        expect(d.sentAtMs).toBe(msg.sentAtMs)
        expect(d.groups).toEqual(kept)
        expect(problemOf(d, DEFAULT_CODEC_LIMITS)).toBeUndefined()
      }
    }), { numRuns: 300 })
  })

  it('an empty delta, or one whose groups are all empty, encodes to no message', () => {
    expect(encodeDelta({ incarnation: 1, sentAtMs: 5, groups: [] })).toEqual([])
    expect(encodeDelta({ incarnation: 1, sentAtMs: 5, groups: [{ limit: 'a', slotMs: 1000, entries: [] }, { limit: 'b', slotMs: 10, entries: [] }] })).toEqual([])
  })

  it('does not modify the input delta', () => {
    fc.assert(fc.property(messageArb(4, 10), msg => {
      const copy = structuredClone(msg)
      encodeDelta(msg, 1200)
      expect(msg).toEqual(copy)
    }), { numRuns: 50 })
  })

  it('decodes a message that sits inside a larger buffer', () => {
    const bytes = encodeDelta({ incarnation: 2, sentAtMs: 9, groups: [{ limit: 'a', slotMs: 1000, entries: [1, 2, 3] }] })[0]
    const big = new Uint8Array(bytes.byteLength + 10)
    big.set(bytes, 5)
    const r = decodeDelta(big.subarray(5, 5 + bytes.byteLength))
    expect(r).toEqual({ ok: true, msg: { incarnation: 2, seq: 1, sentAtMs: 9, groups: [{ limit: 'a', slotMs: 1000, entries: [1, 2, 3] }] } })
  })

  it('refuses to encode a seq that is not a positive safe integer', () => {
    const groups = [{ limit: 'a', slotMs: 1000, entries: [1, 2, 3] }]
    for (const seq of [0, -1, 1.5, NaN, 2 ** 53]) expect(() => encodeDelta({ incarnation: 1, seq, sentAtMs: 0, groups })).toThrow(RangeError)
  })

  it('refuses to encode a group spanning 65536 epochs or more', () => {
    const g = { limit: 'a', slotMs: 1000, entries: [1, 10, 1, 2, 10 + 65536, 1] }
    expect(() => encodeDelta({ incarnation: 0, sentAtMs: 0, groups: [g] })).toThrow(RangeError)
  })
})

// --- splitting -------------------------------------------------------------------

describe('codec splitting', () => {
  it('every message fits maxMessageBytes and the parts hold exactly the input, in order', () => {
    fc.assert(fc.property(messageArb(5, 120), fc.integer({ min: 900, max: 6000 }), (msg, max) => {
      const parts = encodeDelta(msg, max)
      const limits = { ...DEFAULT_CODEC_LIMITS, maxMessageBytes: max }
      for (const p of parts) expect(p.byteLength).toBeLessThanOrEqual(max)
      const decoded = decodeAll(parts, limits)
      // Split parts take consecutive seqs from the delta's own: a receiver sees each one missing.
      expect(decoded.map(d => d.seq)).toEqual(decoded.map((_, i) => (msg.seq as number) + i))
      for (const d of decoded) {
        expect(d.incarnation).toBe(msg.incarnation)
        expect(d.sentAtMs).toBe(msg.sentAtMs)
        expect(d.groups.length).toBeGreaterThan(0)
        for (const g of d.groups) expect(g.entries.length).toBeGreaterThan(0)
      }
      expect(flatten(decoded.flatMap(d => d.groups))).toEqual(flatten(msg.groups))
    }), { numRuns: 200 })
  })

  it('splits small budgets into many messages, each within the limit', () => {
    const entries = Array.from({ length: 600 }, (_, j) => [MAX_SAFE - j, 1_000_000 + (j % 500), MAX_SAFE - 7 * j]).flat()
    const msg = { incarnation: MAX_SAFE, sentAtMs: 1.5e12 + 0.25, groups: [{ limit: 'é'.repeat(20), slotMs: 0.1, entries }] }
    const parts = encodeDelta(msg, 300)
    expect(parts.length).toBeGreaterThan(10)
    for (const p of parts) expect(p.byteLength).toBeLessThanOrEqual(300)
    expect(flatten(decodeAll(parts, { ...DEFAULT_CODEC_LIMITS, maxMessageBytes: 300 }).flatMap(d => d.groups))).toEqual(flatten(msg.groups))
  })

  it('throws RangeError when maxMessageBytes cannot hold a single entry', () => {
    const msg = { incarnation: 0, sentAtMs: 0, groups: [{ limit: 'a'.repeat(50), slotMs: 1, entries: [1, 1, 1] }] }
    expect(() => encodeDelta(msg, 100)).toThrow(RangeError)
  })

  it('never puts more groups in a message than a default decoder accepts', () => {
    const groups = Array.from({ length: DEFAULT_CODEC_LIMITS.maxGroups + 904 }, (_, k) => ({ limit: `l${k}`, slotMs: 1000, entries: [k, 5, 1] }))
    const parts = encodeDelta({ incarnation: 1, sentAtMs: 0, groups })
    expect(flatten(decodeAll(parts).flatMap(d => d.groups))).toEqual(flatten(groups))
  })

  it('never puts more entries in a message than a decoder with the same maxMessageBytes accepts', () => {
    const n = DEFAULT_CODEC_LIMITS.maxEntries + 1000
    const entries = new Array<number>(n * 3)
    for (let j = 0; j < n; j++) {
      entries[3 * j] = j
      entries[3 * j + 1] = j % 100
      entries[3 * j + 2] = 1
    }
    const max = 16 << 20
    const parts = encodeDelta({ incarnation: 1, sentAtMs: 0, groups: [{ limit: 'big', slotMs: 1000, entries }] }, max)
    const decoded = decodeAll(parts, { ...DEFAULT_CODEC_LIMITS, maxMessageBytes: max })
    expect(decoded.reduce((a, d) => a + d.groups[0].entries.length, 0)).toBe(n * 3)
  })
})

// --- fuzz ------------------------------------------------------------------------

/** decodeDelta must not throw, and must either reject with a reason or return a valid message. */
function checkDecode (bytes: Uint8Array, limits: CodecLimits = DEFAULT_CODEC_LIMITS): void {
  const r = decodeDelta(bytes, limits)
  if (r.ok) expect(problemOf(r.msg, limits)).toBeUndefined()
  else expect(r.reason.length).toBeGreaterThan(0)
}

type Mutation = { t: 'flip', at: number, bit: number } | { t: 'set', at: number, v: number } | { t: 'truncate', at: number }
  | { t: 'extend', bytes: Uint8Array } | { t: 'insert', at: number, v: number } | { t: 'delete', at: number }

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ t: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ t: fc.constant('set' as const), at: fc.nat(), v: fc.oneof(fc.nat(255), fc.constantFrom(0xc0, 0xc1, 0xc4, 0xc7, 0xcb, 0xcf, 0xd3, 0xd4, 0xdc, 0xdd, 0xde, 0x80, 0x94, 0xff)) }),
  fc.record({ t: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ t: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ t: fc.constant('insert' as const), at: fc.nat(), v: fc.nat(255) }),
  fc.record({ t: fc.constant('delete' as const), at: fc.nat() })
)

function mutate (src: Uint8Array, ms: Mutation[]): Uint8Array {
  let b = Uint8Array.from(src)
  for (const m of ms) {
    const at = b.length === 0 ? 0 : ('at' in m ? m.at % b.length : 0)
    if (m.t === 'flip' && b.length > 0) b[at] ^= 1 << m.bit
    else if (m.t === 'set' && b.length > 0) b[at] = m.v
    else if (m.t === 'truncate') b = b.slice(0, at)
    else if (m.t === 'extend') b = Uint8Array.from([...b, ...m.bytes])
    else if (m.t === 'insert') b = Uint8Array.from([...b.slice(0, at), m.v, ...b.slice(at)])
    else if (m.t === 'delete') b = Uint8Array.from([...b.slice(0, at), ...b.slice(at + 1)])
  }
  return b
}

/** msgpack values of the wrong and the edge kinds, for structured fuzzing. */
const oddValueArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, -1, 0, 1, 1.5, -0.5, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 53 - 1, 2 ** 64, -(2 ** 63), 65535, 65536, ''),
  fc.integer(), fc.maxSafeNat(), fc.double(), fc.string({ maxLength: 5 }),
  fc.array(fc.nat(3), { maxLength: 4 })
)
const maybe = <T>(good: fc.Arbitrary<T>): fc.Arbitrary<unknown> => fc.oneof({ weight: 4, arbitrary: good }, { weight: 1, arbitrary: oddValueArb })
const wireGroupArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(maybe(limitArb), maybe(slotMsArb), maybe(fc.oneof(fc.nat(100), fc.constant(MAX_SAFE), fc.constant(MAX_SAFE - 65535))), fc.oneof({ weight: 5, arbitrary: fc.array(maybe(fc.oneof(fc.nat(65535), fc.maxSafeNat())), { maxLength: 12 }) }, { weight: 1, arbitrary: oddValueArb })) },
  { weight: 1, arbitrary: oddValueArb }
)
const wireMessageArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(maybe(fc.constant(CODEC_VERSION)), maybe(fc.maxSafeNat()), maybe(fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.maxSafeNat())), maybe(fc.nat()), fc.oneof({ weight: 5, arbitrary: fc.array(wireGroupArb, { maxLength: 4 }) }, { weight: 1, arbitrary: oddValueArb })) },
  { weight: 1, arbitrary: fc.array(oddValueArb, { maxLength: 6 }) },
  { weight: 1, arbitrary: oddValueArb }
)
const tightLimits: CodecLimits = { maxMessageBytes: 200, maxGroups: 2, maxEntries: 5, maxLimitNameLength: 8 }

describe('codec fuzz', () => {
  it('arbitrary bytes: never throws; rejects with a reason or returns a valid message', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), bytes => checkDecode(bytes)), { numRuns: 2000 })
  })

  it('arbitrary bytes behind a plausible header: same', () => {
    fc.assert(fc.property(fc.constantFrom([0x95, 0x02], [0x95, 0x02, 0x00, 0x01, 0x00], [0x95, 0x02, 0x03, 0x04, 0xcd, 0x03, 0xe8, 0x91, 0x94]), fc.uint8Array({ maxLength: 60 }), (head, tail) => {
      checkDecode(Uint8Array.from([...head, ...tail]))
    }), { numRuns: 2000 })
  })

  it('mutated valid messages (flipped, set, truncated, extended, inserted, deleted bytes): same', () => {
    fc.assert(fc.property(messageArb(3, 6), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), fc.boolean(), (msg, ms, tight) => {
      const parts = encodeDelta(msg)
      const src = parts[0] ?? encode(wire())
      checkDecode(mutate(src, ms), tight ? tightLimits : DEFAULT_CODEC_LIMITS)
    }), { numRuns: 2000 })
  })

  it('well-formed msgpack of the wrong shapes and edge values: same', () => {
    fc.assert(fc.property(wireMessageArb, fc.boolean(), (value, tight) => {
      checkDecode(encode(value), tight ? tightLimits : DEFAULT_CODEC_LIMITS)
    }), { numRuns: 3000 })
  })
})

// --- malformed messages ------------------------------------------------------------

describe('codec rejects malformed messages', () => {
  it('accepts the baseline message the cases below tweak', () => {
    expect(decodeDelta(encode(wire()))).toEqual({ ok: true, msg: { incarnation: 3, seq: 4, sentAtMs: 1000, groups: [{ limit: 'api', slotMs: 1000, entries: [7, 50, 2, 8, 51, 5] }] } })
  })

  it.each<[string, unknown]>([
    ['version 1 (no seq)', [1, 3, 1000, [['api', 1000, 50, [7, 0, 2]]]]],
    ['version 1 with a seq', wire({ version: 1 })],
    ['version 3', wire({ version: 3 })],
    ['zero seq', wire({ seq: 0 })],
    ['negative seq', wire({ seq: -1 })],
    ['fractional seq', wire({ seq: 1.5 })],
    ['unsafe seq', wire({ seq: 2 ** 53 })],
    ['seq as a string', wire({ seq: '4' })],
    ['nil seq', wire({ seq: null })],
    ['version 0', wire({ version: 0 })],
    ['version as a string', wire({ version: '1' })],
    ['negative incarnation', wire({ incarnation: -1 })],
    ['fractional incarnation', wire({ incarnation: 1.5 })],
    ['unsafe incarnation', wire({ incarnation: 2 ** 53 })],
    ['negative sentAtMs', wire({ sentAtMs: -1 })],
    ['NaN sentAtMs', wire({ sentAtMs: NaN })],
    ['infinite sentAtMs', wire({ sentAtMs: Infinity })],
    ['groups not an array', wire({ groups: 5 as unknown as unknown[] })],
    ['group of 3 elements', wire({ groups: [['api', 1000, 50]] })],
    ['non-integer count', wire({ groups: [group([7, 0, 1.5])] })],
    ['zero count', wire({ groups: [group([7, 0, 0])] })],
    ['negative count', wire({ groups: [group([7, 0, -3])] })],
    ['count as a string', wire({ groups: [group([7, 0, '3'])] })],
    ['hash of 2^53', wire({ groups: [group([2 ** 53, 0, 1])] })],
    ['hash of 2^64', wire({ groups: [group([2 ** 64, 0, 1])] })],
    ['negative hash', wire({ groups: [group([-7, 0, 1])] })],
    ['entries not triples', wire({ groups: [group([7, 0, 1, 8])] })],
    ['entries not an array', wire({ groups: [group(7 as unknown as unknown[])] })],
    ['epoch offset of 65536', wire({ groups: [group([7, 65536, 1])] })],
    ['negative epoch offset', wire({ groups: [group([7, -1, 1])] })],
    ['fractional epoch offset', wire({ groups: [group([7, 0.5, 1])] })],
    ['negative base epoch', wire({ groups: [group([7, 0, 1], 'api', 1000, -1)] })],
    ['epoch past 2^53 (base + offset)', wire({ groups: [group([7, 65535, 1], 'api', 1000, MAX_SAFE)] })],
    ['zero slotMs', wire({ groups: [group([7, 0, 1], 'api', 0)] })],
    ['infinite slotMs', wire({ groups: [group([7, 0, 1], 'api', Infinity)] })],
    ['empty limit name', wire({ groups: [group([7, 0, 1], '')] })],
    ['limit name too long', wire({ groups: [group([7, 0, 1], 'x'.repeat(DEFAULT_CODEC_LIMITS.maxLimitNameLength + 1))] })],
    ['limit name not a string', wire({ groups: [group([7, 0, 1], 42)] })],
    ['a map at the top', { version: 2, incarnation: 0, seq: 1, sentAtMs: 0, groups: [] }],
    ['a map as a group', wire({ groups: [{ limit: 'api', entries: [] }] })],
    ['a map as an entry', wire({ groups: [group([{ h: 7 }, 0, 1])] })],
    ['binary as a limit name', wire({ groups: [group([7, 0, 1], new Uint8Array([97]))] })],
    ['binary as entries', wire({ groups: [group(new Uint8Array([7, 0, 1]) as unknown as unknown[])] })],
    ['an ext value as a count', wire({ groups: [group([7, 0, new ExtData(5, new Uint8Array([1]))])] })],
    ['a timestamp ext as sentAtMs', wire({ sentAtMs: new Date(1000) })],
    ['an array of 4', [2, 0, 1, []]],
    ['an array of 6', [2, 0, 1, 0, [], 0]],
    ['a bare number', 1],
    ['nil', null]
  ])('%s', (_what, value) => {
    expectRejected(encode(value))
  })

  it('an oversized message', () => {
    const bytes = encode(wire())
    expect(expectRejected(bytes, { ...DEFAULT_CODEC_LIMITS, maxMessageBytes: bytes.byteLength - 1 })).toMatch(/exceeds/)
    expect(decodeDelta(bytes, { ...DEFAULT_CODEC_LIMITS, maxMessageBytes: bytes.byteLength }).ok).toBe(true)
    expectRejected(new Uint8Array(DEFAULT_CODEC_LIMITS.maxMessageBytes + 1))
  })

  it('too many groups', () => {
    const bytes = encode(wire({ groups: [group([1, 0, 1]), group([2, 0, 1]), group([3, 0, 1])] }))
    expect(expectRejected(bytes, { ...DEFAULT_CODEC_LIMITS, maxGroups: 2 })).toMatch(/groups/)
    expect(decodeDelta(bytes, { ...DEFAULT_CODEC_LIMITS, maxGroups: 3 }).ok).toBe(true)
  })

  it('too many entries across groups', () => {
    const bytes = encode(wire({ groups: [group([1, 0, 1, 2, 0, 1]), group([3, 0, 1])] }))
    expect(expectRejected(bytes, { ...DEFAULT_CODEC_LIMITS, maxEntries: 2 })).toMatch(/entries/)
    expect(decodeDelta(bytes, { ...DEFAULT_CODEC_LIMITS, maxEntries: 3 }).ok).toBe(true)
  })

  it('a limit name longer than a custom limit', () => {
    const bytes = encode(wire({ groups: [group([1, 0, 1], 'abcdefghi')] }))
    expectRejected(bytes, { ...DEFAULT_CODEC_LIMITS, maxLimitNameLength: 8 })
    expect(decodeDelta(bytes, { ...DEFAULT_CODEC_LIMITS, maxLimitNameLength: 9 }).ok).toBe(true)
  })

  it('empty input, trailing bytes and non-bytes', () => {
    expectRejected(new Uint8Array(0))
    expectRejected(Uint8Array.from([...encode(wire()), 0x00]))
    expectRejected('not bytes' as unknown as Uint8Array)
  })
})
