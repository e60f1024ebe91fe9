import { describe, expect, it } from 'vitest'
import { runScenario } from '../../chaos/sim/run.js'
import { scenario } from './helpers.js'

describe('RunOptions.keyReport', () => {
  it('per-key figures add up to the summary, and leave the run unchanged', async () => {
    const s = scenario('hot-key-zipf')
    const plain = await runScenario(s, { durationMs: 2000 })
    const r = await runScenario(s, { durationMs: 2000, keyReport: true })
    expect(plain.keys).toBeUndefined()
    expect(JSON.stringify(r.summary)).toBe(JSON.stringify(plain.summary))
    const keys = r.keys ?? []
    expect(keys.length).toBeGreaterThan(0)
    const seconds = 2
    const offered = keys.reduce((n, k) => n + k.offeredPerSec * seconds, 0)
    const admitted = keys.reduce((n, k) => n + k.admittedPerSec * seconds, 0)
    // Every request a node checked belongs to one key (the summary counts unserved ones apart).
    expect(Math.round(offered)).toBe(r.summary.requests)
    expect(Math.round(admitted)).toBe(r.summary.admitted)
    // Sorted by offered rate; the hot key leads, per region.
    for (let j = 1; j < keys.length; j++) expect(keys[j - 1].offeredPerSec).toBeGreaterThanOrEqual(keys[j].offeredPerSec)
    expect(keys[0].key).toBe('hot')
    // The worst key's excess is the summary's.
    expect(Math.max(...keys.map(k => k.maxExcessPct))).toBeCloseTo(r.summary.overAdmissionMaxPct, 1)
    for (const k of keys) {
      expect(k.steadyMaxExcessPct).toBeLessThanOrEqual(k.maxExcessPct + 1e-9)
      expect(k.falseDenialPct).toBeGreaterThanOrEqual(0)
      expect(k.falseDenialPct).toBeLessThanOrEqual(100)
    }
  })
})
