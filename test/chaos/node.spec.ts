import { describe, expect, it } from 'vitest'
import { createSimNetwork } from '../../chaos/sim/network.js'
import { createSimNode, SIM_EPOCH_MS } from '../../chaos/sim/node.js'
import { createScheduler } from '../../chaos/sim/scheduler.js'
import { validatePolicies } from '../../src/policy/validate.js'
import { seededRandom } from '../../membership/random.js'

const policies = validatePolicies({ policies: [{ id: 'p', key: 'user', limits: [{ id: 'w', limit: 1000, window: '10s' }] }] })

function fleet (n: number) {
  const sched = createScheduler()
  const net = createSimNetwork({
    scheduler: sched,
    spec: { intraRegion: { dist: 'fixed', ms: 1 }, interRegion: { dist: 'fixed', ms: 1 }, loss: 0, duplicate: 0, reorder: 0, reorderDelayMs: 0, uplinkBytesPerSec: 1e12, overheadBytesPerMessage: 0 },
    regionOf: new Int32Array(n),
    rnd: seededRandom(1)
  })
  const make = (i: number, offset = 0) => createSimNode({ index: i, peerId: `n${i}`, region: 'r', scheduler: sched, network: net, clockOffsetMs: offset, policies, topic: 't', flushIntervalMs: 100, limiter: {} })
  return { sched, net, make }
}

const total = (node: ReturnType<ReturnType<typeof fleet>['make']>): number => node.limiter.inspect('p/w', 'u')?.totals.reduce((a, b) => a + b, 0) ?? 0

describe('simulated node', () => {
  it('runs the real limiter on a skewed clock whose timers die with the incarnation', () => {
    const f = fleet(2)
    const a = f.make(0, 250)
    expect(a.clock.now()).toBe(SIM_EPOCH_MS + 250)
    f.sched.runUntil(1000)
    expect(a.clock.now()).toBe(SIM_EPOCH_MS + 1250)
    expect(a.replica).toBe(`n0@${SIM_EPOCH_MS + 250}`)
    a.crash()
    expect(a.running).toBe(false)
    const before = f.sched.executed
    f.sched.runUntil(5000)
    // Its flush and sweep timers no longer run.
    expect(f.sched.executed).toBe(before)
  })

  it('a graceful stop flushes the last counts; a crash loses them', () => {
    const f = fleet(3)
    const a = f.make(0)
    const b = f.make(1)
    const c = f.make(2)
    f.sched.runUntil(10)
    for (let k = 0; k < 3; k++) a.limiter.check({ user: 'u' })
    b.stop()
    for (let k = 0; k < 5; k++) c.limiter.check({ user: 'u' })
    c.crash()
    a.stop()
    f.sched.runUntil(50)
    const d = f.make(1)
    f.sched.runUntil(60)
    // d is b's peer restarted: a later incarnation, blank view; b had sent nothing.
    expect(d.replica).not.toBe(b.replica)
    expect(total(d)).toBe(0)
    expect(f.net.stats.published).toBe(1)
  })

  it('peers learn each other\'s counts within a flush interval plus latency', () => {
    const f = fleet(2)
    const a = f.make(0)
    const b = f.make(1)
    for (let k = 0; k < 7; k++) a.limiter.check({ user: 'u' })
    f.sched.runUntil(99)
    expect(total(b)).toBe(0)
    f.sched.runUntil(102)
    expect(total(b)).toBe(7)
    expect(b.limiter.inspect('p/w', 'u', true)?.replicas?.get(a.replica)).toEqual([Math.floor((SIM_EPOCH_MS) / 1000), 7])
  })
})
