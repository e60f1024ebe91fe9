import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { floorOf, normalQuantile, quantile, sampler, stream, TRUNCATE_AT, type Distribution } from '../../chaos/sim/random.js'
import { parseScenario } from '../../chaos/scenario.js'
import { seededRandom } from '../../membership/random.js'

/** Empirical p-quantile of n draws. */
function empirical (d: Distribution, p: number, n = 40_000): number {
  const draw = sampler(d, seededRandom(7))
  const xs = Array.from({ length: n }, draw).sort((a, b) => a - b)
  return xs[Math.floor(p * n)]
}

describe('distributions', () => {
  it('a log-normal floor (minMs) raises every draw below it and leaves the rest as they were', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 31 }), fc.double({ min: 0.5, max: 59, noNaN: true }), (seed, minMs) => {
      const plain = sampler({ dist: 'lognormal', medianMs: 60, p99Ms: 120 }, seededRandom(seed))
      const floored = sampler({ dist: 'lognormal', medianMs: 60, p99Ms: 120, minMs }, seededRandom(seed))
      for (let j = 0; j < 50; j++) {
        const x = plain()
        expect(floored()).toBe(x < minMs ? minMs : x)
      }
    }))
    const d: Distribution = { dist: 'lognormal', medianMs: 60, p99Ms: 120, minMs: 20 }
    expect(floorOf(d)).toBe(20)
    expect(quantile(d, 1e-9)).toBe(20)
    expect(floorOf({ dist: 'uniform', minMs: 3, maxMs: 9 })).toBe(3)
    expect(floorOf({ dist: 'fixed', ms: 7 })).toBe(7)
    expect(floorOf({ dist: 'lognormal', medianMs: 60, p99Ms: 120 })).toBe(0)
  })

  it('a scenario takes network.interRegion.minMs up to the median, and refuses more', () => {
    const text = (minMs: number): string => `name: f\nduration: 1s\nregions: [ { name: a, nodes: 1 } ]\nnetwork: { interRegion: { dist: lognormal, medianMs: 60, p99Ms: 120, minMs: ${minMs} } }\npolicies: { policies: [ { id: p, key: user, limits: [ { id: s, limit: 5, window: 1s } ] } ] }\nworkload: { field: user, clients: [ { name: c, ratePerSec: 1 } ] }`
    expect(parseScenario(text(20)).network.interRegion).toEqual({ dist: 'lognormal', medianMs: 60, p99Ms: 120, minMs: 20 })
    expect(() => parseScenario(text(61))).toThrow(/network\.interRegion\.minMs/)
  })

  it('normalQuantile matches known values', () => {
    expect(normalQuantile(0.5)).toBeCloseTo(0, 8)
    expect(normalQuantile(0.975)).toBeCloseTo(1.959963985, 6)
    expect(normalQuantile(0.99)).toBeCloseTo(2.326347874, 6)
    expect(normalQuantile(0.0001)).toBeCloseTo(-3.719016485, 5)
    expect(() => normalQuantile(1)).toThrow(RangeError)
  })

  it('a log-normal has the median and 99th percentile it was given, and never exceeds its truncation', () => {
    const d: Distribution = { dist: 'lognormal', medianMs: 10, p99Ms: 80 }
    expect(empirical(d, 0.5)).toBeGreaterThan(9.5)
    expect(empirical(d, 0.5)).toBeLessThan(10.5)
    expect(empirical(d, 0.99)).toBeGreaterThan(72)
    expect(empirical(d, 0.99)).toBeLessThan(88)
    const cap = quantile(d, 1)
    expect(cap).toBeCloseTo(quantile(d, TRUNCATE_AT), 9)
    const draw = sampler(d, seededRandom(3))
    for (let i = 0; i < 200_000; i++) expect(draw()).toBeLessThanOrEqual(cap)
  })

  it('uniform and fixed draws stay within their quantiles 0 and 1', () => {
    fc.assert(fc.property(fc.double({ min: 0, max: 100, noNaN: true }), fc.double({ min: 0, max: 100, noNaN: true }), fc.integer(), (a, b, seed) => {
      const d: Distribution = { dist: 'uniform', minMs: Math.min(a, b), maxMs: Math.max(a, b) }
      const draw = sampler(d, seededRandom(seed))
      for (let i = 0; i < 50; i++) {
        const x = draw()
        expect(x).toBeGreaterThanOrEqual(quantile(d, 0))
        expect(x).toBeLessThanOrEqual(quantile(d, 1))
      }
    }))
    expect(sampler({ dist: 'fixed', ms: 4 }, seededRandom(1))()).toBe(4)
  })

  it('streams are independent per name and reproducible per seed', () => {
    const a = stream(1, 'network')
    const b = stream(1, 'network')
    const c = stream(1, 'workload')
    const xa = [a(), a(), a()]
    expect([b(), b(), b()]).toEqual(xa)
    expect([c(), c(), c()]).not.toEqual(xa)
  })
})
