import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadRealScenario } from '../../chaos/real/cli.js'
import { netnsUnavailable } from '../../chaos/real/netns.js'
import { runReal, type RealSummary } from '../../chaos/real/run.js'
import { buildChild } from './real-build.js'

/**
 * The real mode's CI runs: chaos/real/scenarios/real-smoke.yaml on 4 OS processes,
 * each a libp2p mesh node on TCP (127.0.0.1, or a network namespace of its own), with
 * a 2/2 partition, a heal, a SIGKILL and a restart; about 23 s each. Both runs live in
 * this one file so that they never run at the same time. REAL_KEEP=<dir> keeps a run's
 * folder (node logs at debug level, identity files, the mesh key) to diagnose a failure.
 */

let build: ReturnType<typeof buildChild>
beforeAll(() => { build = buildChild() })
afterAll(() => { build?.remove() })

async function smoke (netns: boolean): Promise<{ summary: RealSummary, progress: string[] }> {
  const { scenario, policies } = loadRealScenario('real-smoke')
  const progress: string[] = []
  const keep = process.env.REAL_KEEP
  const diagnose = keep === undefined ? {} : { keepDir: join(keep, netns ? 'netns' : 'gater'), logLevel: 'debug' }
  const { summary } = await runReal(scenario, policies, { netns, childModule: build.childModule, ...diagnose, onProgress: line => { progress.push(line) } })
  return { summary, progress }
}

/** What both modes must show: the invariants, and the figures behind them. */
function check ({ summary: s, progress }: { summary: RealSummary, progress: string[] }): void {
  const why = `${JSON.stringify(s.violations)}\n${progress.join('\n')}`
  expect(s.real.nodeFailures, why).toEqual([])
  expect(s.real.formedMs, why).not.toBeNull()
  expect(s.violations, why).toEqual([])
  // Traffic went through the limiters, and contention made them deny.
  expect(s.requests).toBeGreaterThan(1000)
  expect(s.admitted + s.denied).toBe(s.requests)
  expect(s.denied).toBeGreaterThan(0)
  // No count lost after the quiet period; over-admission within its bound.
  expect(s.countsLost, why).toBe(0)
  expect(s.overAdmissionMaxPct).toBeLessThanOrEqual(s.boundPct)
  expect(s.worstKey?.overAdmissionPct ?? Infinity).toBeLessThanOrEqual(s.worstKey?.boundPct ?? -1)
  // The partition happened (membership saw it) and healed; views converged after the heal.
  expect(s.real.partitions).toHaveLength(1)
  expect(s.real.partitions[0].sides).toEqual([[0, 1], [2, 3]])
  expect(s.real.partitions[0].detectedMs, why).not.toBeNull()
  expect(s.real.partitions[0].rejoinedMs, why).not.toBeNull()
  expect(s.convergenceAfterHealMs).toHaveLength(1)
  expect(s.convergenceAfterHealMs[0], why).not.toBeNull()
  expect(s.convergenceAfterTrafficMs, why).not.toBeNull()
  // The SIGKILLed node came back with its peer id, as a new incarnation, and caught up.
  expect(s.real.restarts).toHaveLength(1)
  const r = s.real.restarts[0]
  expect(r.node).toBe(1)
  expect(r.after, why).not.toBeNull()
  const [beforeId, beforeInc] = r.before.split('@')
  const [afterId, afterInc] = (r.after as string).split('@')
  expect(afterId).toBe(beforeId)
  expect(afterId).toBe(r.peerId)
  expect(Number(afterInc)).toBeGreaterThan(Number(beforeInc))
  expect(r.startupSync?.peers ?? 0).toBeGreaterThan(0)
  expect(r.startupSync?.merged ?? 0).toBeGreaterThan(0)
  expect(r.caughtUpMs, why).not.toBeNull()
  expect(s.real.processes).toBe(5)
  expect(s.bytesPerNodePerSec).toBeGreaterThan(0)
}

describe('chaos real mode (real-smoke: 4 processes, partition, heal, SIGKILL and restart)', () => {
  it('gater mode: libp2p connection gater and hang-up on 127.0.0.1', async () => {
    const run = await smoke(false)
    check(run)
    expect(run.summary.real.mode).toBe('gater')
    expect(run.summary.real.wireBytesPerNodePerSec).toBeNull()
  }, 120_000)

  const why = netnsUnavailable()
  it.skipIf(why !== undefined)(`netns mode: every node in a network namespace, the cut a routing rule${why === undefined ? '' : ` (skipped: ${why})`}`, async () => {
    const run = await smoke(true)
    check(run)
    expect(run.summary.real.mode).toBe('netns')
    expect(run.summary.real.wireBytesPerNodePerSec ?? 0).toBeGreaterThan(0)
    expect(run.progress.join('\n')).toMatch(/blackhole routing rules/)
  }, 120_000)
})
