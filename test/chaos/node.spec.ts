import { describe, expect, it } from 'vitest'
import { createSimNetwork } from '../../chaos/sim/network.js'
import { createSimNode, SIM_EPOCH_MS, type SimNode } from '../../chaos/sim/node.js'
import type { MeshOptions } from '../../chaos/scenario.js'
import { createScheduler } from '../../chaos/sim/scheduler.js'
import { validatePolicies } from '../../src/policy/validate.js'
import { seededRandom } from '../../membership/random.js'

const policies = validatePolicies({ policies: [{ id: 'p', key: 'user', limits: [{ id: 'w', limit: 1000, window: '10s' }] }] })

function fleet (n: number) {
  const sched = createScheduler()
  const counters: number[] = []
  const net = createSimNetwork({
    scheduler: sched,
    spec: { intraRegion: { dist: 'fixed', ms: 1 }, interRegion: { dist: 'fixed', ms: 1 }, loss: 0, duplicate: 0, reorder: 0, reorderDelayMs: 0, uplinkBytesPerSec: 1e12, overheadBytesPerMessage: 0 },
    regionOf: new Int32Array(n),
    rnd: seededRandom(1),
    observer: { published (from, topic) { if (topic.includes('/counters/')) counters.push(from) } }
  })
  const make = (i: number, offset = 0, mesh: MeshOptions = { syncOnStart: false }) => createSimNode({ index: i, peerId: `n${i}`, region: 'r', meshRegion: 'r', scheduler: sched, network: net, clockOffsetMs: offset, policies, flushIntervalMs: 100, limiter: {}, mesh })
  /** A node that has finished starting (start-up needs no simulated time without a pull). */
  const start = async (i: number, offset = 0): Promise<SimNode> => {
    const node = make(i, offset)
    await node.started
    return node
  }
  /** Runs the scheduler to `t` (timers set during start-up yield once; this test needs no continuations then). */
  const run = (t: number): void => { while (!sched.runUntil(t)); }
  return { sched, net, make, start, counters, run }
}

const total = (node: SimNode): number => node.limiter.inspect('p/w', 'u')?.totals.reduce((a, b) => a + b, 0) ?? 0

describe('simulated node', () => {
  it('runs a mesh node on a skewed clock whose timers die with the incarnation', async () => {
    const f = fleet(2)
    const a = await f.start(0, 250)
    expect(a.clock.now()).toBe(SIM_EPOCH_MS + 250)
    f.run(1000)
    expect(a.clock.now()).toBe(SIM_EPOCH_MS + 1250)
    expect(a.replica).toBe(`n0@${SIM_EPOCH_MS + 250}`)
    expect(a.mesh.membership.stats.heartbeatsSent).toBeGreaterThan(0)
    a.crash()
    expect(a.running).toBe(false)
    expect(a.ready).toBe(false)
    const before = f.sched.executed
    f.run(5000)
    // Its flush, sweep, heartbeat and aggregate timers no longer run.
    expect(f.sched.executed).toBe(before)
  })

  it('a graceful stop flushes the last counts; a crash loses them', async () => {
    const f = fleet(3)
    const a = await f.start(0)
    const b = await f.start(1)
    const c = await f.start(2)
    f.run(10)
    for (let k = 0; k < 3; k++) a.limiter.check({ user: 'u' })
    b.stop()
    for (let k = 0; k < 5; k++) c.limiter.check({ user: 'u' })
    c.crash()
    a.stop()
    f.run(50)
    const d = await f.start(1)
    f.run(60)
    // d is b's peer restarted: a later incarnation, and a blank view (no start-up pull here).
    expect(d.replica).not.toBe(b.replica)
    expect(total(d)).toBe(0)
    expect(f.counters).toEqual([0])
  })

  it('peers learn each other\'s counts within a flush interval plus latency', async () => {
    const f = fleet(2)
    const a = await f.start(0)
    const b = await f.start(1)
    for (let k = 0; k < 7; k++) a.limiter.check({ user: 'u' })
    f.run(99)
    expect(total(b)).toBe(0)
    f.run(102)
    expect(total(b)).toBe(7)
    expect(b.limiter.inspect('p/w', 'u', true)?.replicas?.get(a.replica)).toEqual([Math.floor((SIM_EPOCH_MS) / 1000), 7])
  })

  it('a node that starts pulls what its peers hold before it serves', async () => {
    const f = fleet(3)
    const a = await f.start(0)
    for (let k = 0; k < 4; k++) a.limiter.check({ user: 'u' })
    f.run(150)
    const b = f.make(1, 0, {})
    expect(b.ready).toBe(false)
    let done = false
    void b.started.then(() => { done = true })
    // It waits two flush intervals (in-flight messages land), then pulls (one round trip of
    // 1 ms each way): run the scheduler, yielding as the run loop does.
    for (let t = 151; t <= 400 && !done; t++) {
      while (!f.sched.runUntil(t)) await new Promise(resolve => setImmediate(resolve))
      await new Promise(resolve => setImmediate(resolve))
    }
    expect(done).toBe(true)
    expect(b.ready).toBe(true)
    expect(b.mesh.startupSync).toMatchObject({ peers: 1, failed: 0 })
    expect(total(b)).toBe(4)
  })
})
