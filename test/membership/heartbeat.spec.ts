import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeHeartbeat, encodeHeartbeat } from '../../membership/membership.js'
import { MALFORMED, assertValidHeartbeat, validHeartbeat } from './helpers.js'

describe('heartbeat codec', () => {
  it('round-trips every valid heartbeat (property)', () => {
    fc.assert(fc.property(validHeartbeat, h => {
      expect(decodeHeartbeat(encodeHeartbeat(h))).toEqual(h)
    }), { numRuns: 500 })
  })

  it('never throws on arbitrary bytes, and whatever it accepts is valid (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), bytes => {
      const h = decodeHeartbeat(bytes)
      if (h !== undefined) assertValidHeartbeat(h)
    }), { numRuns: 2000 })
  })

  it('never throws on mutated heartbeats, and whatever it accepts is valid (property)', () => {
    let accepted = 0
    fc.assert(fc.property(validHeartbeat, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean(), (h, at, value, cut) => {
      const bytes = encodeHeartbeat(h)
      const i = at % bytes.length
      const mutated = cut ? bytes.slice(0, i) : bytes.map((b, j) => j === i ? value : b)
      const d = decodeHeartbeat(mutated)
      if (d !== undefined) {
        accepted++
        assertValidHeartbeat(d)
      }
    }), { numRuns: 1000 })
    expect(accepted).toBeGreaterThan(0)
  })

  it('round-trips the seq of the last counter message, alone or with a policy hash or a goodbye (property)', () => {
    fc.assert(fc.property(validHeartbeat, fc.oneof(fc.nat(10), fc.maxSafeNat()), fc.option(fc.constant('ab'.repeat(16)), { nil: undefined }), fc.boolean(), (h, counterSeq, policyHash, leaving) => {
      const full = { ...h, counterSeq, ...(policyHash === undefined ? {} : { policyHash }), ...(leaving ? { leaving: true } : {}) }
      const d = decodeHeartbeat(encodeHeartbeat(full))
      expect(d).toEqual(full)
      if (d !== undefined) assertValidHeartbeat(d)
    }), { numRuns: 300 })
  })

  it('refuses a counter seq that is not a non-negative safe integer, or that comes without a boolean eighth field', async () => {
    const { encode } = await import('@msgpack/msgpack')
    const base = [1, 1, 'eu', 1, 0, 1000, null]
    expect(decodeHeartbeat(encode([...base, false, 7]))?.counterSeq).toBe(7)
    for (const bad of [[...base, false, -1], [...base, false, 1.5], [...base, false, 2 ** 53], [...base, false, '7'], [...base, null, 7], [...base, 0, 7]]) {
      expect(decodeHeartbeat(encode(bad)), JSON.stringify(bad)).toBeUndefined()
    }
  })

  it('refuses malformed heartbeats and accepts the exact boundaries', () => {
    for (const [why, bytes] of MALFORMED) expect(decodeHeartbeat(bytes), why).toBeUndefined()
    const edge = { incarnation: 0, region: 'r'.repeat(64), weight: 1e6, policyVersion: Number.MAX_SAFE_INTEGER, sentAtMs: 0 }
    expect(decodeHeartbeat(encodeHeartbeat(edge))).toEqual(edge)
    expect(decodeHeartbeat(encodeHeartbeat({ ...edge, weight: Number.MIN_VALUE }))?.weight).toBe(Number.MIN_VALUE)
  })
})

