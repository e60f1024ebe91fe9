import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseDuration } from '../../src/policy/duration.js'

const UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

describe('parseDuration', () => {
  it.each([
    ['250ms', 250], ['10s', 10_000], ['1m', 60_000], ['1h', 3_600_000], ['1d', 86_400_000],
    ['1.5m', 90_000], ['0.25s', 250], ['0ms', 0], ['007s', 7000], [' 2s ', 2000], ['2 s', 2000], ['\t3m\n', 180_000]
  ])('reads %j as %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms)
  })

  it('rounds fractions of a millisecond to the nearest millisecond', () => {
    expect(parseDuration('1.4ms')).toBe(1)
    expect(parseDuration('1.6ms')).toBe(2)
    expect(parseDuration('0.0001s')).toBe(0)
  })

  it.each(['', ' ', '1', '60', 'ms', 's1', '1 minute', '1min', '-1s', '+1s', '1e3ms', '.5s', '1.s', '1,5s', '1S', '1MS', '1mss', '1w', '1y', 'Infinityms', 'NaNs', '1s2', '1s 2s', '0x10s', '１s'])(
    'rejects %j', text => {
      expect(parseDuration(text)).toBeUndefined()
    })

  it('rejects a number too large to be finite', () => {
    expect(parseDuration('9'.repeat(400) + 'ms')).toBeUndefined()
    expect(parseDuration('9'.repeat(305) + 'd')).toBeUndefined()
  })

  it('multiplies any whole number by its unit', () => {
    fc.assert(fc.property(fc.nat({ max: 1_000_000 }), fc.constantFrom(...Object.keys(UNITS) as Array<keyof typeof UNITS>), (n, unit) => {
      expect(parseDuration(`${n}${unit}`)).toBe(n * UNITS[unit])
    }))
  })
})
