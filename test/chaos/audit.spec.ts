import { describe, expect, it } from 'vitest'
import { decodeDelta, encodeDelta } from '../../gossip/codec.js'
import type { MessageHandler, Transport } from '../../gossip/transport.js'
import { validateScenario } from '../../chaos/scenario.js'
import { runScenario } from '../../chaos/sim/run.js'
import type { Summary } from '../../chaos/summary.js'
import { scenario } from './helpers.js'

/**
 * The audits must catch what the network model does not explain: these runs inject
 * faults below the limiter (through the transport it is given) and expect violations.
 */
const SMALL = validateScenario({
  name: 'small',
  duration: '4s',
  regions: [{ name: 'us', nodes: 8 }],
  network: { intraRegion: { dist: 'fixed', ms: 2 } },
  gossip: { topology: 'mesh', flushInterval: '50ms' },
  policies: { policies: [{ id: 'p', key: 'user', limits: [{ id: 'w', limit: 50, window: '1s' }] }] },
  workload: { keys: 20, clients: [{ name: 'c', ratePerSec: 600 }] },
  measure: { auditEvery: '500ms', auditKeys: 8 }
})

/** Wraps each handler the limiter subscribes with `tamper`. */
function tampering (tamper: (node: number, h: MessageHandler) => MessageHandler): (node: number, t: Transport) => Transport {
  return (node, t) => ({ ...t, peerId: t.peerId, subscribe: (topic, h) => { t.subscribe(topic, tamper(node, h)) } })
}

const kinds = (s: Summary): string[] => s.violations.map(v => `${v.invariant}${v.needs !== undefined ? `:${v.needs}` : ''}`)

describe('audits catch faults the model does not explain', () => {
  it('odd shapes hold too: fixed window, a node-scoped policy, sticky routing, an empty region, restarts', async () => {
    const { summary } = await runScenario(validateScenario({
      duration: '3s',
      regions: [{ name: 'a', nodes: 5, share: 1 }, { name: 'b', nodes: 0, share: 1 }],
      gossip: { topology: 'mesh', flushInterval: '50ms' },
      policies: {
        policies: [
          { id: 'fw', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 20, window: '500ms' }] },
          { id: 'vip', key: 'user', match: { user: 'hot' }, scope: 'node', limits: [{ id: 'w', limit: 5, window: '1s' }] }
        ]
      },
      workload: { keys: 30, hotKeys: [{ key: 'hot', share: 0.2 }], spread: 'sticky', clients: [{ name: 'c', ratePerSec: 400 }] },
      events: [{ at: '1s', crash: { nodes: 'random:2', restartAfter: '300ms' } }]
    }))
    expect(summary.violations).toEqual([])
    expect(summary.unserved).toBeGreaterThan(200)
    expect(summary.requests).toBeGreaterThan(200)
  })

  it('the clean run holds every invariant', async () => {
    const { summary } = await runScenario(SMALL)
    expect(summary.violations).toEqual([])
    expect(summary.countsLost).toBe(0)
  })

  it('a message the limiter silently never merged is a lost count, not blamed on anti-entropy', async () => {
    let seen = 0
    const { summary } = await runScenario(SMALL, {
      wrapTransport: tampering((node, h) => (data, from) => node === 3 && ++seen % 5 === 0 ? 'accept' : h(data, from))
    })
    const lost = summary.violations.find(v => v.invariant === 'no-count-lost')
    expect(lost, kinds(summary).join()).toBeDefined()
    expect(lost?.needs).toBeUndefined()
  })

  it('a forged count (one more than admitted) breaks view-not-above-truth', async () => {
    const { summary } = await runScenario(SMALL, {
      wrapTransport: tampering((node, h) => (data, from) => {
        if (node !== 5) return h(data, from)
        const r = decodeDelta(data)
        if (!r.ok) return h(data, from)
        for (const g of r.msg.groups) for (let j = 2; j < g.entries.length; j += 3) g.entries[j] += 1
        return h(encodeDelta(r.msg)[0], from)
      })
    })
    expect(kinds(summary)).toContain('view-not-above-truth')
  })

  it('nodes that never hear each other over-admit beyond the bound', async () => {
    const { summary } = await runScenario(SMALL, { wrapTransport: tampering(() => () => 'accept') })
    expect(kinds(summary)).toContain('over-admission-within-bound')
    expect(summary.overAdmissionMaxPct).toBeGreaterThan(summary.boundPct)
  })

  it('clock skew beyond maxClockSkewMs: rejected messages are blamed on skew, not on anti-entropy', async () => {
    const s = scenario('clock-skew')
    const { summary } = await runScenario({ ...s, limiter: { maxClockSkewMs: 500 } }, { durationMs: 5000 })
    expect(summary.messages.rejected).toBeGreaterThan(0)
    expect(summary.lagging.clockSkew).toBeGreaterThan(0)
    const lost = summary.violations.find(v => v.invariant === 'no-count-lost')
    expect(lost).toBeDefined()
    expect(lost?.needs).toBeUndefined()
  })

  it('denials the truth would have admitted are counted as false denials', async () => {
    // Clocks up to 1 s apart: a node whose clock runs behind still counts peers' older slots.
    const { summary } = await runScenario(scenario('clock-skew'), { durationMs: 5000 })
    expect(summary.falseDenialPct).toBeGreaterThan(1)
    // The simple rule (no local shares) on a clean network denies only what the truth denies.
    const { summary: clean } = await runScenario({ ...SMALL, limiter: { localShares: false } })
    expect(clean.falseDenialPct).toBe(0)
    expect(clean.underLimitFalseDenialPct).toBe(0)
  })
})
