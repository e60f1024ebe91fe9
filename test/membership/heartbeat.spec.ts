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

  it('refuses malformed heartbeats and accepts the exact boundaries', () => {
    for (const [why, bytes] of MALFORMED) expect(decodeHeartbeat(bytes), why).toBeUndefined()
    const edge = { incarnation: 0, region: 'r'.repeat(64), weight: 1e6, policyVersion: Number.MAX_SAFE_INTEGER, sentAtMs: 0 }
    expect(decodeHeartbeat(encodeHeartbeat(edge))).toEqual(edge)
    expect(decodeHeartbeat(encodeHeartbeat({ ...edge, weight: Number.MIN_VALUE }))?.weight).toBe(Number.MIN_VALUE)
  })
})

