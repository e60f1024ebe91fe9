import { encode } from '@msgpack/msgpack'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DEFAULT_REPAIR_LIMITS, decodeRepairAnswer, decodeRepairRequest, encodeRepairAnswer, encodeRepairRequest, REPAIR_VERSION } from '../../gossip/repair-codec.js'

const MAX_SAFE = Number.MAX_SAFE_INTEGER

/** Ascending disjoint inclusive ranges of seqs >= 1. */
const rangesArb = fc.array(fc.tuple(fc.integer({ min: 1, max: 1000 }), fc.nat(1000)), { minLength: 1, maxLength: DEFAULT_REPAIR_LIMITS.maxRanges }).map(steps => {
  const out: number[] = []
  let at = 0
  for (const [gap, len] of steps) {
    const from = at + gap
    out.push(from, from + len)
    at = from + len
  }
  return out
})

describe('repair codec', () => {
  it('requests round-trip (property)', () => {
    fc.assert(fc.property(fc.oneof(fc.nat(5), fc.maxSafeNat()), rangesArb, (incarnation, ranges) => {
      expect(decodeRepairRequest(encodeRepairRequest({ incarnation, ranges }))).toEqual({ incarnation, ranges })
    }), { numRuns: 300 })
  })

  it('answers round-trip (property)', () => {
    fc.assert(fc.property(fc.maxSafeNat(), fc.maxSafeNat(), fc.boolean(), fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), (incarnation, lastSeq, snapshot, messages) => {
      const r = decodeRepairAnswer(encodeRepairAnswer({ incarnation, lastSeq, snapshot, messages }))
      expect(r).toEqual({ ok: true, answer: { incarnation, lastSeq, snapshot, messages } })
    }), { numRuns: 300 })
  })

  it('arbitrary bytes never throw; decoded values are in range', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), bytes => {
      const req = decodeRepairRequest(bytes)
      if (req !== undefined) {
        expect(Number.isSafeInteger(req.incarnation)).toBe(true)
        expect(req.ranges.length % 2).toBe(0)
      }
      const a = decodeRepairAnswer(bytes)
      if (!a.ok) expect(a.reason.length).toBeGreaterThan(0)
      else for (const m of a.answer.messages) expect(m).toBeInstanceOf(Uint8Array)
    }), { numRuns: 3000 })
  })

  it.each<[string, unknown]>([
    ['no ranges', [REPAIR_VERSION, 1, []]],
    ['an odd range list', [REPAIR_VERSION, 1, [1, 2, 3]]],
    ['seq 0', [REPAIR_VERSION, 1, [0, 2]]],
    ['a reversed range', [REPAIR_VERSION, 1, [5, 2]]],
    ['overlapping ranges', [REPAIR_VERSION, 1, [1, 5, 5, 6]]],
    ['descending ranges', [REPAIR_VERSION, 1, [7, 8, 1, 2]]],
    ['an unsafe seq', [REPAIR_VERSION, 1, [1, 2 ** 53]]],
    ['a fractional seq', [REPAIR_VERSION, 1, [1.5, 2]]],
    ['a negative incarnation', [REPAIR_VERSION, -1, [1, 2]]],
    ['too many ranges', [REPAIR_VERSION, 1, Array.from({ length: 2 * DEFAULT_REPAIR_LIMITS.maxRanges + 2 }, (_, i) => i + 1)]],
    ['another version', [2, 1, [1, 2]]],
    ['a map', { incarnation: 1, ranges: [1, 2] }]
  ])('rejects a request with %s', (_what, value) => {
    expect(decodeRepairRequest(encode(value))).toBeUndefined()
  })

  it.each<[string, unknown]>([
    ['a string message', [REPAIR_VERSION, 1, 2, false, ['x']]],
    ['a non-boolean snapshot flag', [REPAIR_VERSION, 1, 2, 1, []]],
    ['a negative lastSeq', [REPAIR_VERSION, 1, -2, false, []]],
    ['an unsafe incarnation', [REPAIR_VERSION, MAX_SAFE + 1, 2, false, []]],
    ['four elements', [REPAIR_VERSION, 1, 2, false]],
    ['another version', [9, 1, 2, false, []]]
  ])('rejects an answer with %s', (_what, value) => {
    expect(decodeRepairAnswer(encode(value)).ok).toBe(false)
  })

  it('rejects an answer over its byte or message bounds', () => {
    const bytes = encodeRepairAnswer({ incarnation: 1, lastSeq: 3, snapshot: false, messages: [new Uint8Array(100), new Uint8Array(100)] })
    expect(decodeRepairAnswer(bytes, { ...DEFAULT_REPAIR_LIMITS, maxAnswerBytes: bytes.byteLength - 1 }).ok).toBe(false)
    expect(decodeRepairAnswer(bytes, { ...DEFAULT_REPAIR_LIMITS, maxMessages: 1 }).ok).toBe(false)
    expect(decodeRepairAnswer(bytes, { ...DEFAULT_REPAIR_LIMITS, maxAnswerBytes: bytes.byteLength, maxMessages: 2 }).ok).toBe(true)
  })
})
