import { describe, expect, it, vi } from 'vitest'
import { chaosRealCommand, loadRealScenario } from '../../chaos/real/cli.js'
import { netnsUnavailable } from '../../chaos/real/netns.js'
import { planFleet, selectNodes } from '../../chaos/real/plan.js'
import { seededRandom } from '../../membership/random.js'
import { MeshlimitError } from '../../src/errors.js'
import { scenario } from './helpers.js'

function io (): { out: string[], err: string[], io: { out: (l: string) => void, err: (l: string) => void, env: Record<string, string> } } {
  const out: string[] = []
  const err: string[] = []
  return { out, err, io: { out: l => { out.push(l) }, err: l => { err.push(l) }, env: { CHAOS_PROGRESS: '0' } } }
}

describe('real mode: the fleet plan', () => {
  it('resizes a simulator scenario over its regions, rescales its load, and keeps its timeline', () => {
    const s = scenario('split-brain')
    const p = planFleet(s, { nodes: 5, rate: 400, durationMs: 20_000 })
    expect(p.scenario.regions.map(r => r.nodes)).toEqual([2, 2, 1])
    expect(p.initial).toBe(5)
    expect(Array.from(p.regionOf)).toEqual([0, 0, 1, 1, 2])
    expect(p.scenario.workload.clients.reduce((a, c) => a + c.ratePerSec, 0)).toBeCloseTo(400)
    expect(p.scenario.durationMs).toBe(20_000)
    expect(p.scenario.events).toEqual(s.events)
    // One counters topic for the mesh topology; one per region otherwise.
    expect(p.labelOf).toEqual(['all', 'all', 'all', 'all', 'all'])
    expect(Array.from(p.groupOf)).toEqual([0, 0, 0, 0, 0])
    const r = planFleet(scenario('hot-key-zipf'), { nodes: 3 })
    expect(r.labelOf).toEqual(['us', 'eu', 'ap'])
    expect(Array.from(r.groupOf)).toEqual([0, 1, 2])
  })

  it('scales joins with the fleet and gives them the indexes after the initial nodes', () => {
    const p = planFleet(scenario('join-churn'), { nodes: 4 })
    const joined = [...p.joinNodes.values()].flat()
    expect(joined.length).toBeGreaterThan(0)
    expect(Math.min(...joined)).toBe(4)
    expect(p.size).toBe(4 + joined.length)
  })

  it('refuses what real processes cannot do, naming the field and a fix', () => {
    const refusal = (f: () => unknown): MeshlimitError => {
      try {
        f()
      } catch (err) {
        if (err instanceof MeshlimitError) return err
        throw err
      }
      throw new Error('not refused')
    }
    expect(refusal(() => planFleet(scenario('lossy'))).message).toMatch(/loss, duplication or reordering.*Fix: run this scenario in the simulator/)
    expect(refusal(() => planFleet(scenario('steady-3x30'))).message).toMatch(/more than real mode's 64/)
    expect(refusal(() => planFleet(scenario('split-brain'), { nodes: 4, durationMs: 6000 })).message).toMatch(/ends before some event/)
    expect(refusal(() => planFleet(scenario('split-brain'), { nodes: 4, quietMs: 1000 })).message).toMatch(/shortest window/)
  })

  it('selects nodes as the simulator does, and at least one for a percentage of a small fleet', () => {
    const p = planFleet(scenario('crash-restart-storm'), { nodes: 4 })
    const all = [0, 1, 2, 3]
    expect(selectNodes(p, all, 'all', seededRandom(1))).toEqual(all)
    expect(selectNodes(p, all, 'region:eu', seededRandom(1))).toEqual([2, 3])
    expect(selectNodes(p, all, 'nodes:1-2', seededRandom(1))).toEqual([1, 2])
    expect(selectNodes(p, all, 'fraction:0-0.5', seededRandom(1))).toEqual([0, 1])
    expect(selectNodes(p, all, 'random:10%', seededRandom(1))).toHaveLength(1)
    expect(selectNodes(p, [0, 2], 'random:5', seededRandom(1))).toEqual([0, 2])
  })
})

describe('npm run chaos:real (without starting nodes)', () => {
  it('loads scenarios from chaos/real/scenarios and chaos/scenarios, with the policy document as written', () => {
    const smoke = loadRealScenario('real-smoke')
    expect(smoke.scenario.name).toBe('real-smoke')
    expect(smoke.policies.policies[0].id).toBe('per-user')
    expect(loadRealScenario('split-brain').scenario.regions).toHaveLength(3)
  })

  it('answers usage errors with exit code 2 and the usage', async () => {
    for (const argv of [['--nodes', '0'], ['--bogus'], ['no-such-scenario'], ['real-smoke', '--rate', '-1']]) {
      const t = io()
      expect(await chaosRealCommand.run(argv, t.io)).toBe(2)
      expect(t.err.join('\n')).toMatch(/chaos:real:/)
    }
    const t = io()
    expect(await chaosRealCommand.run(['lossy'], t.io)).toBe(2)
    expect(t.err.join('\n')).toMatch(/cannot inject/)
    const h = io()
    expect(await chaosRealCommand.run(['--help'], h.io)).toBe(0)
    expect(h.out.join('\n')).toMatch(/--netns/)
  })

  it('says why the namespace mode is unavailable to a process that is not root', () => {
    const spy = vi.spyOn(process, 'getuid').mockReturnValue(1000)
    try {
      expect(netnsUnavailable()).toMatch(process.platform === 'linux' ? /need root/ : /need Linux/)
    } finally {
      spy.mockRestore()
    }
  })
})
