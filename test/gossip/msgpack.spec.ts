import { encode } from '@msgpack/msgpack'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeBounded, type DecodeBounds } from '../../gossip/msgpack.js'

const wide: DecodeBounds = { maxStrLength: 1 << 16, maxBinLength: 1 << 16, maxArrayLength: 1 << 16, maxMapLength: 1 << 16, maxExtLength: 0 }

describe('decodeBounded', () => {
  it('never throws: arbitrary bytes decode or come back as an "undecodable" reason', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), bytes => {
      const d = decodeBounded(bytes, wide)
      if (!d.ok) expect(d.reason).toMatch(/^undecodable: /)
    }), { numRuns: 2000 })
  })

  it('round-trips values within its bounds', () => {
    const value = fc.letrec(tie => ({
      v: fc.oneof({ depthSize: 'small' }, fc.integer(), fc.double({ noNaN: true }).map(x => Object.is(x, -0) ? 0 : x) /* msgpack writes -0 as the integer 0 */, fc.string(), fc.boolean(), fc.constant(null), fc.array(tie('v'), { maxLength: 5 }))
    })).v
    fc.assert(fc.property(value, v => {
      const d = decodeBounded(encode(v), wide)
      expect(d.ok && d.raw).toEqual(v)
    }), { numRuns: 2000 })
  })

  it('refuses what exceeds a bound, naming the cause', () => {
    const bounds: DecodeBounds = { ...wide, maxArrayLength: 3, maxStrLength: 4, maxBinLength: 0 }
    expect(decodeBounded(encode([1, 2, 3]), bounds)).toEqual({ ok: true, raw: [1, 2, 3] })
    const long = decodeBounded(encode([1, 2, 3, 4]), bounds)
    expect(long.ok).toBe(false)
    expect(!long.ok && long.reason).toMatch(/^undecodable: .*array length/i)
    expect(decodeBounded(encode('abcde'), bounds).ok).toBe(false)
    expect(decodeBounded(encode(new Uint8Array(1)), bounds).ok).toBe(false)
    expect(decodeBounded(new Uint8Array([0x92, 0x01]), bounds).ok).toBe(false)
  })
})
