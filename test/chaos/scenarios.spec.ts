import { describe, expect, it } from 'vitest'
import { stalenessMs } from '../../chaos/sim/bounds.js'
import { runScenario } from '../../chaos/sim/run.js'
import type { Summary, Violation } from '../../chaos/summary.js'
import { scenario } from './helpers.js'

/**
 * The CI subset: shipped scenarios, seeded, some shortened, asserting the invariants.
 * Every scenario must be free of violations except those listed here as waiting for
 * anti-entropy (re-publication and pulls): when the lead adds it, these lists must
 * shrink to nothing, and this test says so by failing.
 */
const NEEDS_ANTI_ENTROPY: Record<string, string[]> = {
  // Gap repair (gossip/repair.ts) requests each lost copy from its sender: 589 -> 9 units
  // missing at the final audit (seed 1, 15 s). The audit comes 500 ms after the last
  // request, and a cross-region repair whose request or answer is lost again (every
  // request leg is lost at 20% here) may not finish by then. Convergence samples are
  // checked against real views every flush (repair answers pass no gossip observer):
  // 83.9% -> 0.69% never at 15 s, 2.63% in this 6 s run. docs/chaos.md has the details.
  lossy: ['no-count-lost', 'convergence']
  // lossy-relay holds: relay redundancy plus re-publication repair every loss.
  // crash-restart-storm and join-churn hold: a starting node pulls a snapshot before it serves.
}

/** Most false denials of clients under their limit strict-partition may cost (measured 53.5%: docs/accuracy.md). */
const STRICT_UNDER_LIMIT_DENIAL_MAX_PCT = 60

const RUNS: Array<{ name: string, durationMs?: number }> = [
  { name: 'steady-3x30', durationMs: 4000 },
  { name: 'split-brain' },
  { name: 'minority-partition' },
  { name: 'lossy', durationMs: 6000 },
  { name: 'lossy-relay', durationMs: 6000 },
  { name: 'crash-restart-storm', durationMs: 9000 },
  { name: 'clock-skew', durationMs: 6000 },
  { name: 'hot-key-zipf', durationMs: 5000 },
  { name: 'join-churn' },
  { name: 'strict-partition' }
]

function check (sum: Summary): void {
  const pending = NEEDS_ANTI_ENTROPY[sum.scenario] ?? []
  const hard = sum.violations.filter((v: Violation) => !pending.includes(v.invariant))
  expect(hard, JSON.stringify(hard)).toEqual([])
  for (const inv of pending) {
    const v = sum.violations.find(x => x.invariant === inv)
    expect(v, `${sum.scenario}: ${inv} now holds; remove it from NEEDS_ANTI_ENTROPY`).toBeDefined()
    expect(v?.needs).toBe('anti-entropy')
  }
  // The figures behind the invariants, checked directly too.
  expect(sum.overAdmissionMaxPct).toBeLessThanOrEqual(sum.boundPct)
  expect(sum.worstKey).not.toBeNull()
  expect(sum.worstKey?.overAdmissionPct ?? Infinity).toBeLessThanOrEqual(sum.worstKey?.boundPct ?? -1)
  if (!pending.includes('no-count-lost')) expect(sum.countsLost).toBe(0)
  expect(sum.admitted + sum.denied).toBe(sum.requests)
}

describe('chaos scenarios (seeded CI subset)', () => {
  for (const run of RUNS) {
    it(`${run.name} holds its invariants`, async () => {
      const { summary } = await runScenario(scenario(run.name), { durationMs: run.durationMs })
      check(summary)
      if (run.name === 'split-brain' || run.name === 'minority-partition') {
        // Each side admits on its own while cut off, and views converge after the heal.
        expect(summary.overAdmissionMaxPct).toBeGreaterThan(20)
        expect(summary.convergenceAfterHealMs).toHaveLength(1)
        expect(summary.convergenceAfterHealMs[0]).not.toBeNull()
        expect(summary.messages.cut).toBeGreaterThan(0)
      }
      if (run.name === 'crash-restart-storm') expect(summary.countsLostAtCrash).toBeGreaterThan(0)
      if (run.name === 'lossy-relay') {
        // Redundant mesh paths: far fewer samples stall than under direct fan-out.
        expect(summary.unconvergedPct).toBeLessThan(5)
        expect(summary.messages.copies).toBeGreaterThan(4 * summary.messages.delivered)
      }
      if (run.name === 'lossy') {
        expect(summary.messages.lost).toBeGreaterThan(0)
        expect(summary.messages.duplicated).toBeGreaterThan(0)
        expect(summary.lagging.dropped).toBeGreaterThan(0)
      }
      if (run.name === 'clock-skew') expect(summary.messages.rejected).toBe(0)
      if (run.name === 'strict-partition') {
        // Escrowed rights: never a unit over the limit in any window, partitions included.
        expect(summary.boundPct).toBe(0)
        expect(summary.overAdmissionMaxPct).toBe(0)
        expect(summary.worstKey?.overAdmissionPct).toBe(0)
        expect(summary.messages.cut).toBeGreaterThan(0)
        expect(summary.partitionDetectedMaxPct).toBe(0)
        // The price is paid in denials while rights travel; reported, and bounded here so a
        // regression shows (docs/accuracy.md has the measured figure).
        expect(summary.underLimitFalseDenialPct).not.toBeNull()
        expect(summary.underLimitFalseDenialPct ?? Infinity).toBeLessThanOrEqual(STRICT_UNDER_LIMIT_DENIAL_MAX_PCT)
      }
      if (run.name === 'steady-3x30' || run.name === 'hot-key-zipf') {
        // Issue 5: local shares deny clients under their limit at most 1% of the time.
        expect(summary.underLimitFalseDenialPct).not.toBeNull()
        expect(summary.underLimitFalseDenialPct ?? Infinity).toBeLessThanOrEqual(1)
      }
      if (run.name === 'steady-3x30') {
        expect(summary.convergenceP99Ms).not.toBeNull()
        expect(summary.unconvergedPct).toBe(0)
        // Once traffic stops, views hold everything within one staleness horizon (10 ms polls).
        expect(summary.convergenceAfterTrafficMs).not.toBeNull()
        expect(summary.convergenceAfterTrafficMs ?? Infinity).toBeLessThanOrEqual(stalenessMs(scenario(run.name), true) + 10)
      }
    })
  }

  it('the same scenario and seed give byte-identical JSON; another seed differs', async () => {
    const s = scenario('crash-restart-storm')
    const a = JSON.stringify((await runScenario(s, { durationMs: 5000, seed: 7 })).summary)
    const b = JSON.stringify((await runScenario(s, { durationMs: 5000, seed: 7 })).summary)
    const c = JSON.stringify((await runScenario(s, { durationMs: 5000, seed: 8 })).summary)
    expect(b).toBe(a)
    expect(c).not.toBe(a)
  })
})
