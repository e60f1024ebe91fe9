import { describe, expect, it } from 'vitest'
import { detectionMs, keyBound, partitionModeBound, relayHops, stalenessMs, strictBound, Z, type BoundContext } from '../../chaos/sim/bounds.js'
import { validateScenario, type Scenario } from '../../chaos/scenario.js'

function scen (over: Record<string, unknown> = {}): Scenario {
  return validateScenario({
    duration: '5s',
    regions: [{ name: 'a', nodes: 10 }, { name: 'b', nodes: 10 }],
    network: { intraRegion: { dist: 'fixed', ms: 5 }, interRegion: { dist: 'fixed', ms: 50 } },
    gossip: { topology: 'mesh', flushInterval: '100ms' },
    policies: { policies: [{ id: 'p', key: 'user', limits: [{ limit: 100, window: '1s' }] }] },
    workload: { clients: [{ name: 'c', ratePerSec: 1000 }] },
    ...over
  })
}

const oneSide = (s: Scenario): BoundContext => ({ scenario: s, nodesPerRegion: [10, 10], phases: [{ sides: [{ nodesByRegion: [10, 10], spansRegions: true }] }], startsPerWindow: 0, crashesPerWindow: 0 })
const load = (ratePerRegion: number) => ({ peakRateByRegion: [ratePerRegion, ratePerRegion], servingByRegion: [10, 10] })

describe('over-admission bound of the simple rule', () => {
  it('staleness term: (n-1)/n R S plus the Poisson spread, capped by (n-1) L and by what was offered', () => {
    const s = scen()
    expect(stalenessMs(s, true)).toBe(150)
    expect(stalenessMs(s, false)).toBe(105)
    const R = 1000
    const b = keyBound(oneSide(s), 100, 1000, 100, load(R / 2))
    const expected = R * 0.15 * 19 / 20 + Z * Math.sqrt(R * 0.15)
    expect(b.staleness).toBeCloseTo(expected, 9)
    expect(b.partition).toBe(0)
    expect(b.total).toBeCloseTo(expected, 9)
    // A key offered less than its limit cannot be over-admitted at all.
    expect(keyBound(oneSide(s), 100, 1000, 100, load(10)).total).toBe(0)
  })

  it('a partition adds a limit per extra side that has traffic', () => {
    const s = scen()
    const ctx: BoundContext = { ...oneSide(s), phases: [{ sides: [{ nodesByRegion: [10, 0], spansRegions: false }, { nodesByRegion: [0, 10], spansRegions: false }] }] }
    const b = keyBound(ctx, 100, 1000, 100, load(500))
    expect(b.sides).toBe(2)
    expect(b.partition).toBe(100)
  })

  it('loss, skew and churn each add their term', () => {
    const base = keyBound(oneSide(scen()), 100, 1000, 100, load(500)).total
    const lossy = keyBound(oneSide(scen({ network: { loss: 0.2, intraRegion: 5, interRegion: 50 } })), 100, 1000, 100, load(500))
    expect(lossy.loss).toBeGreaterThan(100 * 0.2 / 0.8)
    const skewed = keyBound(oneSide(scen({ clocks: { skew: { dist: 'uniform', minMs: -100, maxMs: 100 } } })), 100, 1000, 100, load(500))
    expect(skewed.skew).toBeCloseTo(100 * (200 + 100) / 1000, 9)
    const tooSkewed = keyBound(oneSide(scen({ clocks: { skew: { dist: 'uniform', minMs: -400, maxMs: 400 } } })), 100, 1000, 100, load(500))
    expect(tooSkewed.skew).toBeCloseTo(100 * 900 / 1000 + 100, 9)
    const churn = keyBound({ ...oneSide(scen({ mesh: { syncOnStart: false } })), startsPerWindow: 2, crashesPerWindow: 1 }, 100, 1000, 100, load(500))
    // r = 1000/s over 20 nodes = 50/s: a blank view admits min(L, r W) = 50, a crash loses r F = 5.
    expect(churn.churn).toBeCloseTo(2 * 50 + 5, 9)
    // A node that pulls a snapshot before serving does not start blank: only the crash term is left.
    expect(keyBound({ ...oneSide(scen()), startsPerWindow: 2, crashesPerWindow: 1 }, 100, 1000, 100, load(500)).churn).toBeCloseTo(5, 9)
    for (const b of [lossy, skewed, churn]) expect(b.total).toBeGreaterThan(base)
  })

  it('under mesh relay, staleness counts the largest latency once per hop of the mesh diameter', () => {
    const s = scen({ gossip: { topology: 'mesh', flushInterval: '100ms', delivery: 'relay', meshDegree: 6 } })
    expect(relayHops(s, 30)).toBe(4)
    expect(relayHops(s, 2)).toBe(1)
    expect(relayHops(scen(), 30)).toBe(1)
    expect(stalenessMs(s, true, 30)).toBe(100 + 4 * 50)
    expect(stalenessMs(s, false, 30)).toBe(100 + 4 * 5)
  })
})

describe('bounds of the mesh modes', () => {
  it('a global limit on the region topology crosses regions in aggregates: flush + intra + aggregate interval + inter', () => {
    const s = scen({ gossip: { topology: 'region', flushInterval: '100ms' }, mesh: { aggregateInterval: '250ms' } })
    expect(stalenessMs(s, true, 20, true)).toBe(100 + 5 + 250 + 50)
    expect(stalenessMs(s, false, 20, true)).toBe(105)
  })

  it('partitions are detected within suspectAfter + half a heartbeat + the debounce; each mode has its own bound', () => {
    expect(detectionMs(scen())).toBe(3000 + 500 + 20 + 1)
    expect(detectionMs(scen({ mesh: { heartbeatInterval: '200ms', suspectAfter: '600ms' } }))).toBe(600 + 100 + 20 + 1)
    expect(partitionModeBound('closed', 80, 30, 0)).toBe(0)
    expect(partitionModeBound('open', 80, 30, 0)).toBe(80)
    expect(partitionModeBound('share', 80, 30, 0)).toBeCloseTo(Z * Math.sqrt(30) / 2, 9)
    expect(partitionModeBound('share', 80, 4, 0)).toBe(4)
  })

  it('strict limits: nothing over without skew, a whole limit with it', () => {
    expect(strictBound(scen(), 100).total).toBe(0)
    expect(strictBound(scen({ clocks: { skew: { dist: 'uniform', minMs: -10, maxMs: 10 } } }), 100).total).toBe(100)
  })
})
