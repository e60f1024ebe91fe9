import { describe, expect, it } from 'vitest'
import type { Verdict } from '../../gossip/transport.js'
import { seededRandom } from '../../membership/random.js'
import { createSimNetwork, type SimNetwork } from '../../chaos/sim/network.js'
import { createScheduler, type Scheduler } from '../../chaos/sim/scheduler.js'
import type { NetworkSpec } from '../../chaos/scenario.js'

const BASE: NetworkSpec = {
  intraRegion: { dist: 'fixed', ms: 2 },
  interRegion: { dist: 'fixed', ms: 50 },
  loss: 0,
  duplicate: 0,
  reorder: 0,
  reorderDelayMs: 0,
  uplinkBytesPerSec: 1e12,
  overheadBytesPerMessage: 0
}

interface Net {
  sched: Scheduler
  net: SimNetwork
  got: Array<{ to: number, from: string, at: number, data: Uint8Array }>
  owners: Array<{ dead: boolean }>
  drops: string[]
}

/** `regions[i]` is node i's region; every node subscribes to topic "t". */
function setup (spec: Partial<NetworkSpec>, regions: number[], seed = 1, delivery: 'direct' | 'mesh' = 'direct'): Net {
  const sched = createScheduler()
  const drops: string[] = []
  const net = createSimNetwork({
    scheduler: sched,
    delivery,
    spec: { ...BASE, ...spec },
    regionOf: Int32Array.from(regions),
    rnd: seededRandom(seed),
    observer: { dropped: (from, to, why) => drops.push(`${from}->${to}:${why}`) }
  })
  const got: Net['got'] = []
  const owners = regions.map(() => ({ dead: false }))
  regions.forEach((_, i) => {
    const t = net.attach(i, `n${i}`, owners[i])
    t.subscribe('t', (data, from): Verdict => { got.push({ to: i, from, at: sched.now, data }); return 'accept' })
  })
  return { sched, net, got, owners, drops }
}

function transport (n: Net, i: number): ReturnType<SimNetwork['attach']> {
  n.net.detach(i)
  return n.net.attach(i, `n${i}`, n.owners[i])
}

describe('simulated network', () => {
  it('delivers one copy to every other subscriber after the link latency, the same bytes to all', () => {
    const n = setup({}, [0, 0, 1])
    const bytes = new Uint8Array([1, 2, 3])
    // Re-attach node 0 to get a handle on its transport (it subscribes again).
    const t0 = transport(n, 0)
    t0.subscribe('t', () => 'accept')
    t0.publish('t', bytes)
    n.sched.runUntil(100)
    expect(n.got.map(g => [g.to, g.from, Math.round(g.at * 1e6) / 1e6])).toEqual([[1, 'n0', 2], [2, 'n0', 50]])
    expect(n.got.every(g => g.data === bytes)).toBe(true)
    expect(n.net.stats.delivered).toBe(2)
  })

  it('loses about the configured share of copies and reports each to the observer', () => {
    const n = setup({ loss: 0.2 }, Array(11).fill(0))
    const t0 = transport(n, 0)
    for (let k = 0; k < 1000; k++) t0.publish('t', new Uint8Array([k & 255]))
    n.sched.runUntil(10)
    const lost = n.net.stats.droppedLoss
    expect(lost + n.got.length).toBe(10_000)
    expect(lost / 10_000).toBeGreaterThan(0.18)
    expect(lost / 10_000).toBeLessThan(0.22)
    expect(n.drops).toHaveLength(lost)
  })

  it('duplicates and holds back copies so later ones overtake them', () => {
    const n = setup({ duplicate: 0.3, reorder: 0.5, reorderDelayMs: 40 }, [0, 0])
    const t0 = transport(n, 0)
    for (let k = 0; k < 200; k++) {
      t0.publish('t', new Uint8Array([k]))
      n.sched.runUntil(n.sched.now + 1)
    }
    n.sched.runUntil(1000)
    const order = n.got.map(g => g.data[0])
    expect(order.length).toBe(200 + n.net.stats.duplicated)
    expect(n.net.stats.duplicated).toBeGreaterThan(30)
    expect(order.some((x, i) => i > 0 && x < order[i - 1])).toBe(true)
    expect(new Set(order).size).toBe(200)
  })

  it('cuts every link between partition groups until healed', () => {
    const n = setup({}, [0, 0, 0, 0])
    const t0 = transport(n, 0)
    n.net.partition(Int32Array.from([0, 0, 1, 1]))
    expect(n.net.connected(0, 1)).toBe(true)
    expect(n.net.connected(0, 2)).toBe(false)
    expect(t0.peers()).toEqual(['n1'])
    t0.publish('t', new Uint8Array([1]))
    n.sched.runUntil(10)
    expect(n.got.map(g => g.to)).toEqual([1])
    expect(n.drops).toEqual(['0->2:partition', '0->3:partition'])
    n.net.heal()
    t0.publish('t', new Uint8Array([2]))
    n.sched.runUntil(20)
    expect(n.got.filter(g => g.data[0] === 2).map(g => g.to)).toEqual([1, 2, 3])
  })

  it('loses copies in flight to a node that crashes', () => {
    const n = setup({}, [0, 1])
    const t0 = transport(n, 0)
    t0.publish('t', new Uint8Array([1]))
    n.sched.runUntil(10)
    n.owners[1].dead = true
    n.net.detach(1)
    n.sched.runUntil(100)
    expect(n.got).toHaveLength(0)
  })

  it('queues copies on the sender uplink: each takes its bytes over the bandwidth', () => {
    const n = setup({ uplinkBytesPerSec: 1000, overheadBytesPerMessage: 10 }, [0, 0, 0])
    const t0 = transport(n, 0)
    t0.publish('t', new Uint8Array(90))
    n.sched.runUntil(1000)
    // 100 wire bytes per copy at 1000 B/s: 100 ms each, then 2 ms of latency.
    expect(n.got.map(g => g.at)).toEqual([102, 202])
    expect(n.net.stats.bytesSent[0]).toBe(200)
    expect(n.net.stats.payloadBytesSent[0]).toBe(180)
    expect(n.net.maxTransitMs).toBe(202)
  })

  it('answers requests after a round trip, and fails them on timeout, unknown protocol, handler error or cut link', async () => {
    const n = setup({}, [0, 1])
    const a = transport(n, 0)
    const b = transport(n, 1)
    b.handle('echo', (data, from) => new Uint8Array([...data, from === 'n0' ? 1 : 0]))
    b.handle('slow', async data => await Promise.resolve(data))
    b.handle('boom', () => { throw new Error('handler failed') })
    const run = async <T>(p: Promise<T>): Promise<T> => {
      // Drive simulated time, letting promise continuations run between events.
      let settled = false
      p.then(() => { settled = true }, () => { settled = true })
      while (!settled) {
        // runUntil returns early right after a request settles; let the continuation run first.
        n.sched.runUntil(n.sched.now + 1000)
        await new Promise(resolve => setImmediate(resolve))
      }
      return await p
    }
    const start = n.sched.now
    expect([...await run(a.request('n1', 'echo', new Uint8Array([7]), 1000))]).toEqual([7, 1])
    expect(n.sched.now - start).toBeCloseTo(100, 6)
    expect([...await run(a.request('n1', 'slow', new Uint8Array([9]), 1000))]).toEqual([9])
    await expect(run(a.request('n1', 'nope', new Uint8Array(0), 1000))).rejects.toThrow(/does not handle nope/)
    await expect(run(a.request('n1', 'boom', new Uint8Array(0), 1000))).rejects.toThrow(/handler failed/)
    n.net.partition(Int32Array.from([0, 1]))
    const before = n.sched.now
    await expect(run(a.request('n1', 'echo', new Uint8Array(0), 300))).rejects.toThrow(/timed out after 300 ms/)
    expect(n.sched.now - before).toBeCloseTo(300, 6)
    expect(n.net.requestsInFlight).toBe(0)
  })

  describe('mesh relay (gossipsub-like)', () => {
    it('hands every subscriber each message exactly once, over several hops, each node uploading about D copies', () => {
      const n = setup({}, Array(40).fill(0), 1, 'mesh')
      const t0 = transport(n, 0)
      t0.subscribe('t', () => 'accept')
      for (let k = 0; k < 20; k++) t0.publish('t', new Uint8Array([k]))
      n.sched.runUntil(1000)
      expect(n.got).toHaveLength(20 * 39)
      for (let k = 0; k < 20; k++) expect(new Set(n.got.filter(g => g.data[0] === k).map(g => g.to)).size).toBe(39)
      // Some nodes hear it only after two or more 2 ms hops.
      expect(Math.max(...n.got.map(g => g.at))).toBeGreaterThan(4)
      expect(n.net.stats.duplicatesSuppressed).toBeGreaterThan(0)
      const copiesPerMessage = n.net.stats.copiesSent / 20
      expect(copiesPerMessage).toBeGreaterThan(39)
      expect(copiesPerMessage).toBeLessThan(40 * 12)
    })

    it('absorbs most loss through redundant paths, and reports every node that never got a message', () => {
      const direct = setup({ loss: 0.2 }, Array(30).fill(0))
      const mesh = setup({ loss: 0.2 }, Array(30).fill(0), 1, 'mesh')
      for (const n of [direct, mesh]) {
        const t0 = transport(n, 0)
        for (let k = 0; k < 200; k++) t0.publish('t', new Uint8Array([k & 255]))
        n.sched.runUntil(1000)
      }
      const missed = (n: Net): number => 200 * 29 - n.got.length
      expect(missed(direct) / (200 * 29)).toBeGreaterThan(0.15)
      expect(missed(mesh) / (200 * 29)).toBeLessThan(0.05)
      // Each node that missed a message is reported once for it, from the message's origin.
      expect(mesh.drops).toHaveLength(missed(mesh))
      expect(mesh.drops.every(d => d.startsWith('0->'))).toBe(true)
    })

    it('does not forward what a node rejected', () => {
      const n = setup({}, Array(12).fill(0), 1, 'mesh')
      // Re-attach nodes 1..11 with a handler that rejects: nothing spreads past the first hop.
      for (let i = 1; i < 12; i++) transport(n, i).subscribe('t', () => 'reject')
      const t0 = transport(n, 0)
      t0.publish('t', new Uint8Array([1]))
      n.sched.runUntil(100)
      expect(n.net.stats.delivered).toBeLessThanOrEqual(12)
      expect(n.net.stats.rejected).toBe(n.net.stats.delivered)
      expect(n.drops.length).toBe(11 - n.net.stats.delivered)
    })
  })
})
