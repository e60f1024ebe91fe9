import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ATTACHED, compareEnvelopes, FleetView, routeWindow, SERVING, type Envelope } from '../../chaos/sim/exchange.js'
import { parallelReason, runParallel, type ParallelOptions, type ParallelResult } from '../../chaos/sim/parallel.js'
import { parseScenario, type Scenario } from '../../chaos/scenario.js'
import { runScenario } from '../../chaos/sim/run.js'
import { buildChild } from './real-build.js'
import { scenario } from './helpers.js'

/** A small 3-region fleet with a region-scoped limit; `events` and `extra` YAML appended. */
function fleet (name: string, events = '', extra = ''): Scenario {
  return parseScenario(fleetText(name, events, extra), name)
}

function fleetText (name: string, events = '', extra = ''): string {
  return `
name: ${name}
seed: 11
duration: 3s
regions:
  - { name: us, nodes: 6, share: 0.5 }
  - { name: eu, nodes: 5, share: 0.3 }
  - { name: ap, nodes: 4, share: 0.2 }
network:
  intraRegion: { dist: lognormal, medianMs: 1, p99Ms: 5 }
  interRegion: { dist: lognormal, medianMs: 60, p99Ms: 120, minMs: 20 }
gossip: { topology: region, flushInterval: 100ms }
policies:
  policies:
    - { id: per-user, key: user, scope: region, limits: [ { id: sec, limit: 20, window: 1s } ] }
workload:
  field: user
  keys: 200
  popularity: zipf
  clients:
    - { name: web, ratePerSec: 800 }
${extra}
${events === '' ? '' : `events:\n${events}`}
`
}

/** Two regions, no inter-region latency floor. */
const NO_FLOOR = `
name: nofloor
duration: 1s
regions: [ { name: a, nodes: 2 }, { name: b, nodes: 2 } ]
policies: { policies: [ { id: p, key: user, scope: region, limits: [ { id: s, limit: 5, window: 1s } ] } ] }
workload: { field: user, clients: [ { name: c, ratePerSec: 10 } ] }
`

const env = (k: number, at: number, from: number, seq: number, to: number): Envelope => k === 0
  ? { k: 'pub', at, from, seq, topic: 't', data: new Uint8Array(0) }
  : { k: 'req', at, from, seq, to, id: seq, protocol: 'p', data: new Uint8Array(0) }

describe('window exchange', () => {
  // Nodes 0-9 in unit 0, 10-19 in unit 1, 20-29 in unit 2.
  const unitOf = Array.from({ length: 30 }, (_, i) => Math.floor(i / 10))
  const envelopes = fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 29 }), fc.integer({ min: 0, max: 29 })), { maxLength: 40 })
    .map(xs => {
      // Per-unit outboxes in sending order, seq as the units' outboxes set it.
      const boxes: Envelope[][] = [[], [], []]
      for (const [k, at, from, to] of xs) {
        const box = boxes[unitOf[from]]
        box.push(env(k, at, from, box.length, to))
      }
      return boxes
    })

  it('routes publishes to every other unit and legs to their target, in one order whatever the outbox order', () => {
    fc.assert(fc.property(envelopes, fc.integer({ min: 0, max: 5 }), (boxes, rot) => {
      const inboxes = routeWindow(boxes, unitOf, 3)
      const shuffled = routeWindow([boxes[rot % 3], boxes[(rot + 1) % 3], boxes[(rot + 2) % 3]], unitOf, 3)
      expect(shuffled).toEqual(inboxes)
      inboxes.forEach((box, u) => {
        for (let j = 1; j < box.length; j++) expect(compareEnvelopes(box[j - 1], box[j])).toBeLessThan(0)
        for (const e of box) {
          if (e.k === 'pub') expect(unitOf[e.from]).not.toBe(u)
          else expect(unitOf[e.to]).toBe(u)
        }
      })
      const pubs = boxes.flat().filter(e => e.k === 'pub').length
      const legs = boxes.flat().length - pubs
      expect(inboxes.flat().length).toBe(2 * pubs + legs)
    }))
  })

  it('keeps the last state of each node from the notes, in order', () => {
    const v = new FleetView(4)
    v.apply([1, ATTACHED, 1, 1, SERVING, 1, 2, ATTACHED, 1])
    v.apply([1, SERVING, 0, 3, SERVING, 1])
    expect([...v.attached]).toEqual([0, 1, 1, 0])
    expect(v.alive()).toEqual([3])
  })
})

describe('parallel runner', () => {
  it('says why a scenario cannot run in parallel, and falls back to the single-threaded runner', async () => {
    expect(parallelReason(fleet('ok'))).toBeUndefined()
    expect(parallelReason(scenario('steady-3x30'))).toMatch(/topology is mesh/)
    expect(parallelReason(parseScenario(fleetText('global').replace('scope: region', 'scope: global')))).toMatch(/global-scope/)
    expect(parallelReason(parseScenario(NO_FLOOR))).toMatch(/minMs/)
    const s = parseScenario('name: one\nduration: 1s\nregions: [{ name: a, nodes: 3 }]\npolicies: { policies: [ { id: p, key: user, scope: region, limits: [ { id: s, limit: 5, window: 1s } ] } ] }\nworkload: { field: user, clients: [ { name: c, ratePerSec: 50 } ] }')
    const r = await runParallel(s, { threads: 2, durationMs: 500 })
    expect(r.fallback).toMatch(/one region/)
    expect(r.threads).toBe(1)
    expect(r.summary.requests).toBeGreaterThan(0)
  })

  it('holds the invariants on a shortened bench-like fleet, with the traffic and gossip of the single-threaded runner', async () => {
    const { summary, threads } = await runParallel(fleet('bench-like'), { threads: 1 })
    expect(threads).toBe(1)
    expect(summary.violations).toEqual([])
    expect(summary.countsLost).toBe(0)
    expect(summary.overAdmissionMaxPct).toBeLessThanOrEqual(summary.boundPct)
    // Other random streams, same model: the same load within Poisson noise (2,400 requests,
    // sd about 2%), the same messages (heartbeats crossing regions included).
    const single = (await runScenario(fleet('bench-like'))).summary
    expect(Math.abs(summary.requests / single.requests - 1)).toBeLessThan(0.08)
    expect(Math.abs(summary.messages.published / single.messages.published - 1)).toBeLessThan(0.05)
    expect(Math.abs(summary.messages.delivered / single.messages.delivered - 1)).toBeLessThan(0.05)
    expect(summary.bytesPerNodePerSec / single.bytesPerNodePerSec).toBeGreaterThan(0.9)
    expect(summary.bytesPerNodePerSec / single.bytesPerNodePerSec).toBeLessThan(1.1)
  })

  it('holds the invariants across a cross-region partition and its heal', async () => {
    const s = fleet('cut', '  - { at: 1s, partition: [ ["region:us"], ["region:eu", "region:ap", "nodes:0-1"] ] }\n  - { at: 2500ms, heal: true }\n', 'measure: { auditEvery: 500ms }')
    const { summary } = await runParallel(s, { threads: 1, durationMs: 5000 })
    expect(summary.violations).toEqual([])
    expect(summary.countsLost).toBe(0)
    expect(summary.messages.cut).toBeGreaterThan(0)
    expect(summary.convergenceAfterHealMs).toHaveLength(1)
    expect(summary.convergenceAfterHealMs[0]).not.toBeNull()
    expect(summary.overAdmissionMaxPct).toBeLessThanOrEqual(summary.boundPct)
  })
})

describe('parallel runner on worker threads', () => {
  let build: ReturnType<typeof buildChild>
  let run: (s: Scenario, o: ParallelOptions) => Promise<ParallelResult>
  let parse: typeof parseScenario
  beforeAll(async () => {
    build = buildChild()
    const dir = build.childModule.replace(/real\/child\.js$/, '')
    run = (await import(`${dir}sim/parallel.js`) as typeof import('../../chaos/sim/parallel.js')).runParallel
    parse = (await import(`${dir}scenario.js`) as typeof import('../../chaos/scenario.js')).parseScenario
  })
  afterAll(() => { build?.remove() })

  it('gives a byte-identical summary with 1, 2 and 3 threads (same seed), crashes and a cut included', async () => {
    const events = '  - { at: 500ms, crash: { nodes: "random:2", restartAfter: 700ms } }\n  - { at: 1s, partition: [ ["region:eu"] ] }\n  - { at: 2s, heal: true }\n'
    // The built modules (those the workers load) parse the scenario.
    const s = (): Scenario => parse(fleetText('det', events), 'det')
    const one = await run(s(), { threads: 1 })
    const two = await run(s(), { threads: 2 })
    const three = await run(s(), { threads: 3 })
    expect(two.threads).toBe(2)
    expect(three.threads).toBe(3)
    expect(JSON.stringify(two.summary)).toBe(JSON.stringify(one.summary))
    expect(JSON.stringify(three.summary)).toBe(JSON.stringify(one.summary))
    expect(one.markers.map(m => m.kind)).toEqual(['crash', 'partition', 'restart', 'heal'])
    expect(one.summary.violations).toEqual([])
  }, 60_000)
})
