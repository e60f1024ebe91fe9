import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseScenario, validateScenario } from '../../chaos/scenario.js'
import { MeshlimitError } from '../../src/errors.js'

const MIN = {
  duration: '5s',
  regions: [{ name: 'us', nodes: 3 }],
  policies: { policies: [{ id: 'p', key: 'user', limits: [{ limit: 10, window: '1s' }] }] },
  workload: { clients: [{ name: 'c', ratePerSec: 100 }] }
}

function fails (over: Record<string, unknown>, field: string): void {
  try {
    validateScenario({ ...MIN, ...over })
  } catch (err) {
    expect(err).toBeInstanceOf(MeshlimitError)
    const e = err as MeshlimitError
    expect(e.code).toBe('MESHLIMIT_OPTION_INVALID')
    expect(e.field).toBe(field)
    expect(e.message).toMatch(/Fix: /)
    return
  }
  throw new Error(`no error for ${JSON.stringify(over)}`)
}

describe('scenario files', () => {
  it('fills every default', () => {
    const s = validateScenario(MIN, 'mini')
    expect(s.name).toBe('mini')
    expect(s.seed).toBe(1)
    expect(s.durationMs).toBe(5000)
    expect(s.quietMs).toBe(500)
    expect(s.gossip).toEqual({ topology: 'region', flushIntervalMs: 100, delivery: 'direct', meshDegree: 6 })
    expect(s.network.loss).toBe(0)
    expect(s.workload.popularity).toBe('zipf')
    expect(s.limits.get('p/0')?.slotsPerWindow).toBe(10)
    expect(s.limits.get('p/0')?.slotMs).toBe(100)
  })

  it('refuses bad input with the field and a fix', () => {
    fails({ regions: [] }, 'scenario.regions')
    fails({ regions: [{ name: 'us', nodes: -1 }] }, 'scenario.regions[0].nodes')
    fails({ regions: [{ name: 'us', nodes: 1 }, { name: 'us', nodes: 1 }] }, 'scenario.regions[1].name')
    fails({ duration: 'soon' }, 'scenario.duration')
    fails({ network: { loss: 1.5 } }, 'scenario.network.loss')
    fails({ network: { intraRegion: { dist: 'pareto' } } }, 'scenario.network.intraRegion.dist')
    fails({ gossip: { topology: 'star' } }, 'scenario.gossip.topology')
    fails({ gossip: { flushInterval: 100, typo: 1 } }, 'scenario.gossip.typo')
    fails({ events: [{ at: '1s', partition: [['region:mars']] }] }, 'scenario.events[0].partition[0][0]')
    fails({ events: [{ at: '1s', crash: 'everyone' }] }, 'scenario.events[0].crash.nodes')
    fails({ events: [{ at: '1s', heal: true, crash: 'all' }] }, 'scenario.events[0]')
    fails({ events: [{ at: '9s', heal: true }] }, 'scenario.events')
    fails({ workload: { clients: [] } }, 'scenario.workload.clients')
    fails({ workload: { hotKeys: [{ key: 'a', share: 0.7 }, { key: 'b', share: 0.7 }], clients: [{ ratePerSec: 1 }] } }, 'scenario.workload.hotKeys')
    fails({ policies: { policies: [{ id: 'p', key: 'user', limits: [{ algorithm: 'token-bucket', ratePerSecond: 1, burst: 1 }] }] } }, 'scenario.policies.policies[0].limits[0].algorithm')
    fails({ policies: { policies: [{ id: 'p', key: 'user', limits: [{ limit: 1, window: '1s' }, { limit: 2, window: '1m' }] }] } }, 'scenario.policies.policies[0].limits')
    fails({ quiet: '2s' }, 'scenario.quiet')
  })

  it('reports YAML syntax errors as scenario errors', () => {
    expect(() => parseScenario('regions: [')).toThrow(MeshlimitError)
  })

  it('every shipped scenario parses', () => {
    const dir = join(import.meta.dirname, '../../chaos/scenarios')
    const files = readdirSync(dir).filter(f => f.endsWith('.yaml'))
    expect(files.length).toBeGreaterThanOrEqual(9)
    for (const f of files) {
      const s = parseScenario(readFileSync(join(dir, f), 'utf8'))
      expect(s.name).toBe(f.replace(/\.yaml$/, ''))
      expect(s.description.length).toBeGreaterThan(20)
    }
  })
})
