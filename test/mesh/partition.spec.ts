import { describe, expect, it } from 'vitest'
import { createLoopbackNetwork, VirtualClock, type PartitionMode } from '../../src/index.js'
import { createMeshNode, type MeshNode } from '../../src/mesh.js'

const T0 = 1_800_000_000_000

/** Four mesh nodes of one region on `net`, a fixed window of 100/s per user (`onPartition` as given). */
async function fourNodes (clock: VirtualClock, net: ReturnType<typeof createLoopbackNetwork>, onPartition?: PartitionMode): Promise<MeshNode[]> {
  const nodes: MeshNode[] = []
  for (let i = 0; i < 4; i++) {
    nodes.push(await createMeshNode({
      policies: { policies: [{ id: 'p', key: 'user', onPartition, limits: [{ id: 'w', algorithm: 'fixed-window', limit: 100, window: '1s' }] }] },
      clock,
      transport: net.connect(`n${i}`),
      incarnation: 1,
      syncOnStart: false,
      flushIntervalMs: 20,
      membership: { heartbeatIntervalMs: 100 }
    }))
  }
  return nodes
}

/** For `seconds` seconds, one request per 5 ms on every serving node for one hot key; admissions per second. */
function perSecond (clock: VirtualClock, serving: MeshNode[], seconds: number): number[] {
  const out: number[] = []
  for (let s = 0; s < seconds; s++) {
    let admitted = 0
    for (let t = 0; t < 1000; t += 5) {
      clock.advance(5)
      for (const n of serving) if (n.limiter.check({ user: 'hot' }).allowed) admitted++
    }
    out.push(admitted)
  }
  return out
}

/**
 * Four nodes of one region, split 2/2 by dropping every message across the cut (the
 * membership then marks the other side suspect after 3 heartbeats), then healed.
 * Every node receives one request per 5 ms for one hot key: 800/s against 100/s.
 */
async function scenario (mode: PartitionMode): Promise<{ during: number[], after: number[] }> {
  const clock = new VirtualClock(T0)
  let cut = false
  const side = (peer: string): number => Number(peer.slice(1)) < 2 ? 0 : 1
  const net = createLoopbackNetwork({ clock, latencyMs: 5, drop: (_t, from, to) => cut && side(from) !== side(to) })
  const nodes = await fourNodes(clock, net, mode)
  clock.advance(T0 % 1000 === 0 ? 1000 : 1000 - (T0 % 1000))
  perSecond(clock, nodes, 3)
  cut = true
  // The first second after the cut is detection (suspect after 300 ms of silence).
  const during = perSecond(clock, nodes, 6).slice(1)
  cut = false
  perSecond(clock, nodes, 2)
  const after = perSecond(clock, nodes, 3)
  await Promise.all(nodes.map(async n => await n.stop()))
  return { during, after }
}

describe('partitions', () => {
  it('onPartition "share": the two sides together never exceed the limit, and it recovers after heal', async () => {
    const { during, after } = await scenario('share')
    for (const s of during) expect(s).toBeLessThanOrEqual(100)
    for (const s of during) expect(s).toBeGreaterThanOrEqual(90)
    // After healing the partition cap holds a few slots, until both sides' histories agree.
    for (const s of after) expect(s).toBeLessThanOrEqual(102)
    for (const s of after) expect(s).toBeGreaterThanOrEqual(95)
  })

  it('onPartition "closed": denies while part of the scope is unreachable', async () => {
    const { during, after } = await scenario('closed')
    for (const s of during) expect(s).toBe(0)
    for (const s of after) expect(s).toBeGreaterThanOrEqual(95)
    for (const s of after) expect(s).toBeLessThanOrEqual(105)
  })

  it('onPartition "open": each side enforces the limit on its own (at most sides x limit)', async () => {
    const { during, after } = await scenario('open')
    for (const s of during) {
      expect(s).toBeGreaterThan(150)
      expect(s).toBeLessThanOrEqual(2 * 100 + 10)
    }
    for (const s of after) expect(s).toBeLessThanOrEqual(102)
  })
})

describe('healing', () => {
  it('after a heal, nodes pull the other side\'s counts (anti-entropy), with no re-publication to wait for', async () => {
    const clock = new VirtualClock(T0)
    let cut = false
    const side = (peer: string): number => Number(peer.slice(1)) < 2 ? 0 : 1
    const net = createLoopbackNetwork({ clock, latencyMs: 5, drop: (_t, from, to) => cut && side(from) !== side(to) })
    const nodes: MeshNode[] = []
    for (let i = 0; i < 4; i++) {
      nodes.push(await createMeshNode({
        policies: { policies: [{ id: 'p', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 1_000_000, window: '1h' }] }] },
        clock,
        transport: net.connect(`n${i}`),
        incarnation: 1,
        syncOnStart: false,
        republishIntervalMs: 0,
        flushIntervalMs: 20,
        membership: { heartbeatIntervalMs: 100 }
      }))
    }
    clock.advance(500)
    cut = true
    clock.advance(1000)
    // Each side counts on its own while cut off.
    nodes.forEach((n, i) => { for (let k = 0; k < i + 1; k++) n.limiter.check({ user: 'u' }) })
    clock.advance(200)
    const used = (n: MeshNode): number => { const d = n.limiter.peek({ user: 'u' }); return d.limit - d.remaining }
    expect(nodes.map(used)).toEqual([3, 3, 7, 7])
    cut = false
    // Heartbeats mark the other side alive again within a beat; the pull follows.
    for (let t = 0; t < 40 && !nodes.every(n => used(n) === 10); t++) {
      clock.advance(10)
      await new Promise(resolve => setImmediate(resolve))
    }
    expect(nodes.map(used)).toEqual([10, 10, 10, 10])
    expect(nodes.every(n => n.antiEntropy.stats.pagesPulled > 0)).toBe(true)
    await Promise.all(nodes.map(async n => await n.stop()))
  })
})

describe('leaving', () => {
  /**
   * Four nodes of one region on a hot key (each offered 200/s against 100/s); then n3
   * goes away, gracefully (stop(): a goodbye) or by crashing (its messages dropped,
   * nothing said). Returns what the three survivors admit per second afterwards.
   */
  async function afterDeparture (graceful: boolean): Promise<number[]> {
    const clock = new VirtualClock(T0)
    let crashed = false
    const net = createLoopbackNetwork({ clock, latencyMs: 5, drop: (_t, from) => crashed && from === 'n3' })
    const nodes = await fourNodes(clock, net)
    const survivors = nodes.slice(0, 3)
    clock.advance(T0 % 1000 === 0 ? 1000 : 1000 - (T0 % 1000))
    perSecond(clock, nodes, 2)
    if (graceful) await nodes[3].stop()
    else crashed = true
    // The first second covers detection of a crash (suspect after 300 ms of silence).
    const after = perSecond(clock, survivors, 7).slice(1)
    await Promise.all(survivors.map(async n => await n.stop()))
    if (!graceful) await nodes[3].stop()
    return after
  }

  it('a node that stops gracefully is forgotten at once, so the others regain the whole limit; a crash leaves them at their shares until it is forgotten', async () => {
    // Seconds 2 to 7 after the departure. Gracefully: the partition cap never engages,
    // and local shares release the leaver's part as its demand history fades (a few s).
    const graceful = await afterDeparture(true)
    for (const s of graceful) expect(s).toBeLessThanOrEqual(102)
    for (const s of graceful.slice(3)) expect(s).toBeGreaterThanOrEqual(95)
    // A crash looks like a partition: each survivor holds its quarter (75 in all) until
    // the member is forgotten (dead after 1 s, forgotten 6 s later with these timings).
    const crash = await afterDeparture(false)
    for (const s of crash) expect(s).toBeLessThanOrEqual(76)
  })
})
