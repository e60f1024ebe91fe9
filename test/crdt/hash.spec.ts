import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { HASH_LIMIT, hashString } from '../../crdt/hash.js'

const seedArb = fc.integer()
const keyArb = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ maxLength: 20, unit: 'grapheme' }), fc.string({ maxLength: 20, unit: 'binary' }))

describe('hashString range and determinism', () => {
  it('HASH_LIMIT is 2^53', () => {
    expect(HASH_LIMIT).toBe(2 ** 53)
  })

  it('is a non-negative safe integer below 2^53', () => {
    fc.assert(fc.property(fc.string({ maxLength: 64, unit: 'binary' }), seedArb, (s, seed) => {
      const h = hashString(s, seed)
      expect(Number.isSafeInteger(h)).toBe(true)
      expect(h).toBeGreaterThanOrEqual(0)
      expect(h).toBeLessThan(HASH_LIMIT)
    }), { numRuns: 500 })
  })

  it('is deterministic and defaults to seed 0', () => {
    fc.assert(fc.property(keyArb, seedArb, (s, seed) => {
      expect(hashString(s, seed)).toBe(hashString(String(s), seed))
      expect(hashString(s)).toBe(hashString(s, 0))
    }))
  })

  it('keeps its values across releases (every node of a mesh must agree on them)', () => {
    const golden: Array<[string, number, number]> = [
      ['', 852363440714058, 3127343975152665],
      ['a', 2237650166704847, 3941530563708463],
      ['user:42', 1386267088550808, 2082415506932558],
      ['ratelimit/api-key:abc', 1838341311922142, 2080246790580540],
      ['\u{1F600}', 3778653344942074, 6354713840370168]
    ]
    for (const [s, h0, h12345] of golden) {
      expect(hashString(s)).toBe(h0)
      expect(hashString(s, 12345)).toBe(h12345)
    }
  })

  it('uses the high bits: about half the hashes are >= 2^52', () => {
    let high = 0
    for (let i = 0; i < 10_000; i++) if (hashString(`user:${i}`) >= 2 ** 52) high++
    expect(high).toBeGreaterThan(4_600)
    expect(high).toBeLessThan(5_400)
  })

  it('hashes the empty string and lone surrogates without throwing', () => {
    expect(hashString('')).not.toBe(hashString('', 1))
    expect(hashString('\ud800')).not.toBe(hashString('\udc00'))
  })
})

describe('hashString seeds', () => {
  it('a different seed gives a different hash', () => {
    fc.assert(fc.property(keyArb, seedArb, seedArb, (s, a, b) => {
      fc.pre(a !== b)
      expect(hashString(s, a)).not.toBe(hashString(s, b))
    }), { numRuns: 500 })
  })

  it('neighbouring seeds do not give related hashes', () => {
    const a = hashString('api-key:42', 1)
    const b = hashString('api-key:42', 2)
    // Differing bits of two independent 53-bit values: about 26, rarely below 10.
    let x = Math.abs(a - b)
    let bits = 0
    for (let i = 0; i < 53; i++, x = Math.floor(x / 2)) bits += x % 2
    expect(bits).toBeGreaterThan(5)
  })
})

describe('hashString collisions', () => {
  it('100k distinct short strings give 100k distinct hashes (and seed 7 too)', () => {
    const inputs: string[] = []
    for (let i = 0; i < 50_000; i++) inputs.push(`k${i}`)
    for (let i = 0; i < 50_000; i++) inputs.push(String.fromCharCode(97 + (i % 26), 97 + ((i / 26 | 0) % 26), 97 + ((i / 676 | 0) % 26), 48 + (i / 17576 | 0)))
    expect(new Set(inputs).size).toBe(100_000)
    for (const seed of [0, 7]) {
      const seen = new Set<number>()
      for (const s of inputs) seen.add(hashString(s, seed))
      expect(seen.size).toBe(100_000)
    }
  })

  it('strings that differ in one unit, order or length hash differently', () => {
    fc.assert(fc.property(fc.string({ minLength: 1, maxLength: 20 }), fc.nat(), fc.integer({ min: 1, max: 0xffff }), (s, at, delta) => {
      const i = at % s.length
      const t = s.slice(0, i) + String.fromCharCode((s.charCodeAt(i) + delta) & 0xffff) + s.slice(i + 1)
      expect(hashString(t)).not.toBe(hashString(s))
      expect(hashString(s + '\0')).not.toBe(hashString(s))
    }), { numRuns: 500 })
    expect(hashString('ab')).not.toBe(hashString('ba'))
  })

  it('spreads the low 32 bits (the hash-table bucket) evenly', () => {
    const buckets = new Array<number>(1024).fill(0)
    for (let i = 0; i < 100_000; i++) buckets[hashString(`ip:10.0.${i >> 8}.${i & 255}`) & 1023]++
    // Mean 97.7, standard deviation about 9.9.
    expect(Math.max(...buckets)).toBeLessThan(150)
    expect(Math.min(...buckets)).toBeGreaterThan(50)
  })
})
