import { describe, expect, it } from 'vitest'
import { createWorkload, KeyPopularity, peakFactor, profileFactor } from '../../chaos/sim/workload.js'
import { seededRandom } from '../../membership/random.js'
import type { RegionSpec, WorkloadSpec } from '../../chaos/scenario.js'

const REGIONS: RegionSpec[] = [{ name: 'a', nodes: 2, share: 3 }, { name: 'b', nodes: 2, share: 1 }]

function spec (over: Partial<WorkloadSpec> = {}): WorkloadSpec {
  return { field: 'user', keys: 100, popularity: 'zipf', zipfS: 1, hotKeys: [], spread: 'uniform', clients: [{ name: 'c', ratePerSec: 1000, profile: { type: 'steady' }, regions: undefined }], ...over }
}

describe('workload', () => {
  it('draws Zipf ranks with their weights', () => {
    const pop = new KeyPopularity(50, 'zipf', 1)
    const rnd = seededRandom(5)
    const counts = new Array<number>(50).fill(0)
    const n = 200_000
    for (let i = 0; i < n; i++) counts[pop.draw(rnd)]++
    let total = 0
    for (let r = 0; r < 50; r++) {
      total += pop.weight(r)
      expect(Math.abs(counts[r] / n - pop.weight(r))).toBeLessThan(0.006)
    }
    expect(total).toBeCloseTo(1, 9)
    expect(pop.weight(0) / pop.weight(9)).toBeCloseTo(10, 9)
  })

  it('sends hot keys their share and splits the rest by popularity; shares add up to 1', () => {
    const w = createWorkload(spec({ hotKeys: [{ key: 'hot', share: 0.25 }] }), REGIONS, 1000)
    const rnd = seededRandom(9)
    let hot = 0
    for (let i = 0; i < 100_000; i++) if (w.drawKey(rnd) === 'hot') hot++
    expect(hot / 100_000).toBeGreaterThan(0.24)
    expect(hot / 100_000).toBeLessThan(0.26)
    let sum = w.keyShare('hot')
    for (let r = 0; r < 100; r++) sum += w.keyShare(`k${r}`)
    expect(sum).toBeCloseTo(1, 9)
  })

  it('routes requests to regions by share, within the regions a client names', () => {
    const w = createWorkload(spec({ clients: [{ name: 'x', ratePerSec: 1, profile: { type: 'steady' }, regions: undefined }, { name: 'y', ratePerSec: 1, profile: { type: 'steady' }, regions: ['b'] }] }), REGIONS, 1000)
    expect(w.regionWeights(spec().clients[0])).toEqual([0.75, 0.25])
    const rnd = seededRandom(2)
    let a = 0
    for (let i = 0; i < 40_000; i++) if (w.drawRegion(0, rnd) === 0) a++
    expect(a / 40_000).toBeCloseTo(0.75, 1)
    for (let i = 0; i < 100; i++) expect(w.drawRegion(1, rnd)).toBe(1)
  })

  it('follows rate profiles: bursts, ramps, and the mean rate over a run', () => {
    const burst = { type: 'burst' as const, periodMs: 1000, burstMs: 100, factor: 5 }
    expect(profileFactor(burst, 50, 10_000)).toBe(5)
    expect(profileFactor(burst, 150, 10_000)).toBe(1)
    expect(peakFactor(burst)).toBe(5)
    const ramp = { type: 'ramp' as const, from: 0, to: 2 }
    expect(profileFactor(ramp, 5000, 10_000)).toBe(1)
    expect(peakFactor(ramp)).toBe(2)
    // Thinning: a 1000/s burst profile averages (0.1 x 5 + 0.9 x 1) x 1000 = 1400/s.
    const w = createWorkload(spec({ clients: [{ name: 'c', ratePerSec: 1000, profile: burst, regions: undefined }] }), REGIONS, 20_000)
    const rnd = seededRandom(4)
    let n = 0
    let inBurst = 0
    for (let t = w.nextArrival(0, 0, 20_000, rnd); t !== Infinity; t = w.nextArrival(0, t, 20_000, rnd)) {
      n++
      if (t % 1000 < 100) inBurst++
    }
    expect(n / 20).toBeGreaterThan(1340)
    expect(n / 20).toBeLessThan(1460)
    expect(inBurst / n).toBeCloseTo(500 / 1400, 1)
  })
})
