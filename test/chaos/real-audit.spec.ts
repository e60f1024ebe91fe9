import { describe, expect, it } from 'vitest'
import { finalAudit, lagging, type AuditSetup, type Incarnation, type Snapshot } from '../../chaos/real/audit.js'
import type { ViewOf } from '../../chaos/real/protocol.js'
import { parseScenario } from '../../chaos/scenario.js'
import { LimitTruth } from '../../chaos/sim/truth.js'
import { hashString } from '../../crdt/hash.js'

/**
 * The real mode's audits on views made by hand: each invariant must catch its breach
 * (an audit that cannot fail proves nothing), and excuse only what it says it excuses.
 */

const SCENARIO = parseScenario(`
duration: 5s
regions: [ { name: a, nodes: 2 }, { name: b, nodes: 1 } ]
policies: { policies: [ { id: p, key: user, scope: global, limits: [ { id: w, limit: 100, window: 10s, slots: 10 } ] } ] }
workload: { clients: [ { name: c, ratePerSec: 10 } ] }
`)
const META = [...SCENARIO.limits.values()][0]
const SLOT = META.slotMs
const E = 1_800_000_000
const NOW = (E + 3) * SLOT

/** Nodes 0 and 1 in region a (group 0), node 2 in region b (group 1). */
function setup (opts: { aggregated?: boolean, cut?: [number, number], crashed?: number } = {}): AuditSetup {
  const reps: Incarnation[] = [0, 1, 2].map(i => ({
    node: i,
    group: i < 2 ? 0 : 1,
    region: i < 2 ? 'a' : 'b',
    key: `peer${i}@1`,
    readyAt: 0,
    crashedAt: opts.crashed === i ? 1 : undefined
  }))
  const truth = new LimitTruth(META.name, 64, key => hashString(key, 0))
  return {
    metas: [META],
    truths: [truth],
    reps,
    repIndex: new Map(reps.map((r, i) => [r.key, i])),
    pastSlots: () => 11,
    futureSlots: () => 1,
    aggregated: () => opts.aggregated ?? false,
    cut: (x, y) => opts.cut !== undefined && ((x === opts.cut[0] && y === opts.cut[1]) || (x === opts.cut[1] && y === opts.cut[0]))
  }
}

function view (cells: Record<string, Array<[number, number]>>): ViewOf {
  return { firstEpoch: E - 10, head: E + 3, totals: [], replicas: Object.entries(cells).map(([rep, pairs]) => [rep, pairs.flat()]) }
}

function snap (node: number, rep: number, v: ViewOf | null, now = NOW): Snapshot {
  return { node, rep, now, views: [new Map([['u', v]])] }
}

describe('real mode: final audit', () => {
  it('passes views that hold exactly what was admitted', () => {
    const s = setup()
    s.truths[0].admit('u', E, 0, 3)
    s.truths[0].admit('u', E + 1, 1, 2)
    const v = view({ 'peer0@1': [[E, 3]], 'peer1@1': [[E + 1, 2]] })
    const a = finalAudit(s, [snap(0, 0, v), snap(1, 1, v)])
    expect([...a.tally.broken.keys()]).toEqual([])
    expect(a.countsLost).toBe(0)
    expect(a.countsLostAtCrash).toBe(0)
  })

  it('catches a node whose own count differs, and a count above what was admitted', () => {
    const s = setup()
    s.truths[0].admit('u', E, 0, 3)
    s.truths[0].admit('u', E, 1, 1)
    const a = finalAudit(s, [snap(0, 0, view({ 'peer0@1': [[E, 2]], 'peer1@1': [[E, 1]] })), snap(1, 1, view({ 'peer0@1': [[E, 4]], 'peer1@1': [[E, 1]] }))])
    expect(a.tally.broken.get('own-count-exact')?.detail).toMatch(/node 0 holds 2 of its own cell/)
    expect(a.tally.broken.get('view-not-above-truth')?.detail).toMatch(/holds 4 .* only 3 were admitted/)
  })

  it('catches counts nobody admitted, and counts from another gossip group', () => {
    const s = setup()
    s.truths[0].admit('u', E, 0, 1)
    const a = finalAudit(s, [snap(0, 0, view({ 'peer0@1': [[E, 1]], 'ghost@9': [[E, 5]] })), snap(2, 2, view({ 'peer0@1': [[E, 1]] }))])
    const d = a.tally.broken.get('view-not-above-truth')
    expect(d?.count).toBe(2)
    expect(d?.detail).toMatch(/ghost@9/)
  })

  it('counts a missing count as lost, unless a cut in force explains it', () => {
    const s = setup()
    s.truths[0].admit('u', E + 1, 1, 4)
    const views = [snap(0, 0, view({ 'peer1@1': [[E + 1, 1]] })), snap(1, 1, view({ 'peer1@1': [[E + 1, 4]] }))]
    const lost = finalAudit(s, views)
    expect(lost.countsLost).toBe(3)
    expect(lost.tally.broken.get('no-count-lost')?.detail).toMatch(/node 0 holds 1 of 4/)
    const cut = finalAudit(setup({ cut: [0, 1] }), [])
    expect(cut.countsLost).toBe(0)
    const s2 = setup({ cut: [0, 1] })
    s2.truths[0].admit('u', E + 1, 1, 4)
    const excused = finalAudit(s2, views)
    expect(excused.tally.broken.has('no-count-lost')).toBe(false)
    expect(excused.tally.lag.partitioned).toBe(1)
  })

  it('expects of a SIGKILLed replica only what reached the mesh; the rest died with it', () => {
    const s = setup({ crashed: 1 })
    s.truths[0].admit('u', E, 1, 5)
    // Node 0 heard 4 of the dead node's 5; node 2 is in another group. Nothing is lost.
    const ok = finalAudit(s, [snap(0, 0, view({ 'peer1@1': [[E, 4]] }))])
    expect(ok.countsLost).toBe(0)
    expect(ok.countsLostAtCrash).toBe(1)
    // A second node of the group holds less than what reached the first: lost.
    s.reps.push({ node: 3, group: 0, region: 'a', key: 'peer3@1', readyAt: 0, crashedAt: undefined })
    const bad = finalAudit(s, [snap(0, 0, view({ 'peer1@1': [[E, 4]] })), snap(3, 3, view({ 'peer1@1': [[E, 2]] }))])
    expect(bad.countsLost).toBe(2)
  })

  it('ignores cells outside a node\'s range (expired, or too far ahead)', () => {
    const s = setup()
    s.truths[0].admit('u', E - 20, 1, 7)
    s.truths[0].admit('u', E + 10, 1, 7)
    const a = finalAudit(s, [snap(0, 0, view({}))])
    expect(a.countsLost).toBe(0)
    expect([...a.tally.broken.keys()]).toEqual([])
  })

  it('audits region aggregates of global limits against their region\'s total', () => {
    const s = setup({ aggregated: true })
    s.truths[0].admit('u', E, 0, 2)
    s.truths[0].admit('u', E, 1, 3)
    s.truths[0].admit('u', E, 2, 4)
    const a = finalAudit(s, [
      snap(0, 0, view({ 'peer0@1': [[E, 2]], 'peer1@1': [[E, 3]], 'region:b@0': [[E, 4]] })),
      snap(2, 2, view({ 'peer2@1': [[E, 4]], 'region:a@0': [[E, 4]] }))
    ])
    // Node 2 holds 4 of region a's 5; nothing above the truth.
    expect(a.countsLost).toBe(1)
    expect(a.missing[0]).toMatch(/node 2 holds 4 of 5 in region a's aggregate/)
    expect(a.tally.broken.has('view-not-above-truth')).toBe(false)
    const over = finalAudit(s, [snap(2, 2, view({ 'peer2@1': [[E, 4]], 'region:a@0': [[E, 6]], 'region:b@0': [[E, 1]] }))])
    const d = over.tally.broken.get('view-not-above-truth')
    expect(d?.count).toBe(2)
  })
})

describe('real mode: convergence probe', () => {
  it('counts cells a view lacks against what was expected, skipping cuts, other groups and unexpected cells', () => {
    const s = setup()
    s.truths[0].admit('u', E, 0, 3)
    s.truths[0].admit('u', E, 1, 2)
    s.truths[0].admit('u', E, 2, 9)
    const views = [snap(0, 0, view({ 'peer0@1': [[E, 3]] })), snap(1, 1, view({ 'peer0@1': [[E, 1]], 'peer1@1': [[E, 2]] }))]
    const all = (): number => 5
    expect(lagging(s, views, [['u']], all)).toBe(2)
    expect(lagging(s, views, [['u']], all, 1)).toBe(1)
    expect(lagging(s, views, [['u']], () => undefined)).toBe(0)
    expect(lagging(setup({ cut: [0, 1] }), [], [['u']], all)).toBe(0)
    const s2 = setup({ cut: [0, 1] })
    s2.truths[0].admit('u', E, 0, 3)
    s2.truths[0].admit('u', E, 1, 2)
    expect(lagging(s2, views, [['u']], all)).toBe(0)
  })
})
