import { describe, expect, it } from 'vitest'
import { createLoopbackNetwork, VirtualClock } from '../../src/index.js'
import { createMeshNode, type MeshNode } from '../../src/mesh.js'
import { advance } from '../helpers/wait.js'

const T0 = 1_800_000_000_000
const POLICIES = { policies: [{ id: 'p', key: 'user', limits: [{ id: 'w', limit: 1000, window: '60s', slots: 6 }] }] }

/** Units node `n` holds from `writer` (any incarnation) for user "u". */
function heldFrom (n: MeshNode, writer: MeshNode): number {
  let sum = 0
  for (const [rep, pairs] of n.limiter.inspect('p/w', 'u', true)?.replicas ?? []) {
    if (!rep.startsWith(`${writer.peerId}@`)) continue
    for (let i = 1; i < pairs.length; i += 2) sum += pairs[i]
  }
  return sum
}

/**
 * Re-publication and background pulls are off, so only the pull rounds of the mesh node
 * can carry counts to a node that missed them.
 */
async function fleet (n: number, clock: VirtualClock, drop: (from: string, to: string) => boolean, syncOnStart = false): Promise<{ nodes: MeshNode[], start: (i: number) => Promise<MeshNode> }> {
  const net = createLoopbackNetwork({ clock, latencyMs: 2, drop: (_t, from, to) => drop(from, to) })
  let incarnation = 0
  const start = async (i: number): Promise<MeshNode> => {
    const started = createMeshNode({
      policies: POLICIES,
      clock,
      transport: net.connect(`n${i}`),
      incarnation: ++incarnation,
      syncOnStart,
      syncTimeoutMs: 200,
      flushIntervalMs: 20,
      republishIntervalMs: 0,
      antiEntropy: { pullIntervalMs: 0, requestTimeoutMs: 100 },
      membership: { heartbeatIntervalMs: 100 }
    })
    // Start-up waits on the virtual clock: move it while the node starts.
    let done = false
    void started.finally(() => { done = true })
    while (!done) {
      clock.advance(10)
      await new Promise(resolve => setImmediate(resolve))
    }
    return await started
  }
  const nodes: MeshNode[] = []
  for (let i = 0; i < n; i++) nodes.push(await start(i))
  return { nodes, start }
}

const run = async (clock: VirtualClock, ms: number): Promise<void> => { await advance(clock, ms, 10) }

describe('mesh pull rounds', () => {
  it('after a heal, a node pulls from members that come back, and so gets the counts of a node that died during the cut', async () => {
    const clock = new VirtualClock(T0)
    let cut = false
    let dead = false
    const side = (p: string): number => p === 'n2' ? 1 : 0
    const { nodes } = await fleet(3, clock, (from, to) => (dead && (from === 'n1' || to === 'n1')) || (cut && side(from) !== side(to)))
    const [n0, n1, n2] = nodes
    await run(clock, 500)
    cut = true
    // n1 admits while n2 is cut off: n0 hears it, n2 does not.
    for (let i = 0; i < 5; i++) expect(n1.limiter.check({ user: 'u' }).allowed).toBe(true)
    await run(clock, 600)
    expect(heldFrom(n0, n1)).toBe(5)
    expect(heldFrom(n2, n1)).toBe(0)
    expect(n2.membership.member(n0.peerId)?.state).not.toBe('alive')
    // n1 dies before the heal: nothing it could re-send, nobody to pull its counts from but n0.
    dead = true
    cut = false
    await run(clock, 1500)
    expect(n2.membership.member(n0.peerId)?.state).toBe('alive')
    expect(heldFrom(n2, n1)).toBe(5)
    expect(n2.antiEntropy.stats.pagesPulled).toBeGreaterThan(0)
    await Promise.all(nodes.map(async n => await n.stop()))
  })

  it('a node that stays reachable is not pulled from again, and a young node pulls once more from members it hears first', async () => {
    const clock = new VirtualClock(T0)
    const { nodes, start } = await fleet(2, clock, () => false)
    await run(clock, 11_000)
    const pulled = nodes.map(n => n.antiEntropy.stats.pagesPulled)
    await run(clock, 2000)
    // Steady mesh: no pull rounds.
    expect(nodes.map(n => n.antiEntropy.stats.pagesPulled)).toEqual(pulled)
    for (let i = 0; i < 3; i++) nodes[0].limiter.check({ user: 'u' })
    // A newcomer without a start-up pull still catches up: it hears n0 and n1 first while young.
    const late = await start(2)
    await run(clock, 1500)
    expect(heldFrom(late, nodes[0])).toBe(3)
    expect(late.antiEntropy.stats.pagesPulled).toBeGreaterThan(0)
    // Older nodes do not pull from the newcomer.
    expect(nodes.map(n => n.antiEntropy.stats.pagesPulled)).toEqual(pulled)
    await Promise.all([...nodes, late].map(async n => await n.stop()))
  })

  it('pulls only from its own region: a global limit never holds another region twice (per node and as an aggregate)', async () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 2 })
    const policies = { policies: [{ id: 'g', key: 'user', scope: 'global' as const, limits: [{ id: 'w', algorithm: 'fixed-window' as const, limit: 1_000_000, window: '1h' }] }] }
    const start = async (name: string, region: string): Promise<MeshNode> => {
      const started = createMeshNode({
        policies,
        region,
        clock,
        transport: net.connect(name),
        incarnation: 1,
        syncTimeoutMs: 1000,
        flushIntervalMs: 20,
        membership: { heartbeatIntervalMs: 100 },
        aggregates: { intervalMs: 100 }
      })
      let done = false
      void started.finally(() => { done = true })
      while (!done) {
        clock.advance(10)
        await new Promise(resolve => setImmediate(resolve))
      }
      return await started
    }
    // The foreign node starts first, so it is the first peer the newcomer could pull from.
    const us = await start('us-0', 'us')
    const eu = await start('eu-0', 'eu')
    await run(clock, 500)
    for (let i = 0; i < 7; i++) us.limiter.check({ user: 'u' })
    for (let i = 0; i < 2; i++) eu.limiter.check({ user: 'u' })
    await run(clock, 1000)
    const late = await start('eu-1', 'eu')
    await run(clock, 2000)
    for (const n of [us, eu, late]) {
      const names = [...(n.limiter.inspect('g/w', 'u', true)?.replicas?.keys() ?? [])]
      const foreign = n.region === 'eu' ? 'us-0@' : 'eu-'
      expect(names.filter(r => r.startsWith(foreign)), `${n.peerId} holds ${names.join(', ')}`).toEqual([])
      // Every node counts 9 uses: its region per node, the other region once, as an aggregate.
      expect(1_000_000 - n.limiter.peek({ user: 'u' }).remaining).toBe(9)
    }
    expect(late.startupSync?.peers).toBe(1)
    await Promise.all([us, eu, late].map(async n => await n.stop()))
  })
})

