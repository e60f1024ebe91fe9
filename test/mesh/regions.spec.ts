import { describe, expect, it } from 'vitest'
import { encodeAggregate } from '../../gossip/codec.js'
import { createLoopbackNetwork, seededRandom, VirtualClock, type PolicyDocument } from '../../src/index.js'
import { createMeshNode, type MeshNode } from '../../src/mesh.js'

const T0 = 1_800_000_000_000
/** Large limits never deny, so totals are exact. */
const policies: PolicyDocument = {
  policies: [
    { id: 'global', key: 'user', scope: 'global', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 1_000_000, window: '1h' }] },
    { id: 'regional', key: 'apiKey', scope: 'region', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 1_000_000, window: '1h' }] }
  ]
}

const used = (n: MeshNode, policy: 'global' | 'regional', k: string): number => {
  const d = n.limiter.peek({ user: k, apiKey: k }, 1)
  const s = d.limits.find(l => l.policy === policy)
  if (s === undefined) throw new Error(`no ${policy}`)
  return s.limit - s.remaining
}

async function regions (perRegion: number, names: string[]): Promise<{ clock: VirtualClock, nodes: MeshNode[], net: ReturnType<typeof createLoopbackNetwork> }> {
  const clock = new VirtualClock(T0)
  const net = createLoopbackNetwork({ clock, latencyMs: 5 })
  const nodes: MeshNode[] = []
  for (const region of names) {
    for (let i = 0; i < perRegion; i++) {
      nodes.push(await createMeshNode({
        policies,
        region,
        clock,
        transport: net.connect(`${region}-${i}`),
        incarnation: 1,
        syncOnStart: false,
        flushIntervalMs: 20,
        membership: { heartbeatIntervalMs: 100 },
        aggregates: { intervalMs: 100 }
      }))
    }
  }
  clock.advance(500)
  return { clock, nodes, net }
}

describe('multi-region scopes', () => {
  it('a global limit converges across regions, a region limit only within its region', async () => {
    const { clock, nodes } = await regions(3, ['eu', 'us', 'ap'])
    const rnd = seededRandom(3)
    const global = new Map<string, number>()
    const regional = new Map<string, number>()
    for (let r = 0; r < 3000; r++) {
      clock.advance(Math.floor(rnd() * 3))
      const node = nodes[Math.floor(rnd() * nodes.length)]
      const k = `k${Math.floor(rnd() * 20)}`
      expect(node.limiter.check({ user: k, apiKey: k }).allowed).toBe(true)
      global.set(k, (global.get(k) ?? 0) + 1)
      regional.set(`${node.region}/${k}`, (regional.get(`${node.region}/${k}`) ?? 0) + 1)
    }
    clock.advance(2000)
    for (const n of nodes) {
      for (const [k, total] of global) expect(used(n, 'global', k)).toBe(total)
      for (const k of global.keys()) expect(used(n, 'regional', k)).toBe(regional.get(`${n.region}/${k}`) ?? 0)
    }
    await Promise.all(nodes.map(async n => await n.stop()))
  })

  it('per-key state stays O(nodes in the region + regions), and only two publishers per region cross regions', async () => {
    const { clock, nodes } = await regions(4, ['eu', 'us'])
    for (const n of nodes) n.limiter.check({ user: 'hot', apiKey: 'hot' })
    clock.advance(2000)
    for (const n of nodes) {
      const rt = (n.limiter as unknown as { runtimes: Map<string, { primary: { find: (k: string) => number, writersOf: (i: number) => number } }> }).runtimes.get('global/w')
      const i = rt?.primary.find('hot') as number
      // Its own region's 4 nodes, plus one column for the other region.
      expect(rt?.primary.writersOf(i)).toBe(4 + 1)
    }
    const publishers = nodes.filter(n => n.aggregator.isPublisher())
    expect(publishers).toHaveLength(4)
    expect(nodes.filter(n => !n.aggregator.isPublisher()).every(n => n.aggregator.stats.published === 0)).toBe(true)
    await Promise.all(nodes.map(async n => await n.stop()))
  })

  it('a mesh of one region publishes no aggregates (nobody else would take them)', async () => {
    const { clock, nodes } = await regions(3, ['eu'])
    for (const n of nodes) n.limiter.check({ user: 'hot', apiKey: 'hot' })
    clock.advance(2000)
    expect(nodes.filter(n => n.aggregator.isPublisher())).toHaveLength(2)
    expect(nodes.every(n => n.aggregator.stats.published === 0)).toBe(true)
    await Promise.all(nodes.map(async n => await n.stop()))
  })

  it('a starting node pulls its own region\'s counters only (another region\'s peers refuse the pull)', async () => {
    const { clock, nodes, net } = await regions(3, ['us', 'eu'])
    for (const n of nodes) for (let k = 0; k < (n.region === 'us' ? 5 : 2); k++) n.limiter.check({ user: 'k', apiKey: 'k' })
    clock.advance(1000)
    const starting = createMeshNode({ policies, region: 'eu', clock, transport: net.connect('eu-new'), incarnation: 1, flushIntervalMs: 20, membership: { heartbeatIntervalMs: 100 }, aggregates: { intervalMs: 100 } })
    let node: MeshNode | undefined
    void starting.then(n => { node = n })
    for (let t = 0; t < 200 && node === undefined; t++) {
      clock.advance(5)
      await new Promise(resolve => setImmediate(resolve))
    }
    if (node === undefined) throw new Error('the new node did not finish starting within 1 s')
    expect(node.startupSync?.peers).toBe(3)
    // Without another node's traffic since, what it holds came from the pull.
    expect(used(node, 'regional', 'k')).toBe(3 * 2)
    expect(used(node, 'global', 'k')).toBe(3 * 5 + 3 * 2)
    await Promise.all([...nodes, node].map(async n => await n.stop()))
  })

  it('rejects an aggregate whose sender is not in the region it names, and ignores its own region', async () => {
    const { clock, nodes, net } = await regions(2, ['eu', 'us'])
    const victim = nodes[0]
    const epoch = Math.floor(T0 / 3_600_000)
    const forged = (region: string): Uint8Array => encodeAggregate({ region, sentAtMs: clock.now(), groups: [{ limit: 'global/w', slotMs: 3_600_000, entries: [12345, epoch, 1000] }] })[0]
    // A us node claiming to speak for ap, and an eu node claiming us.
    const usNode = nodes[2]
    usNode.transport.publish(victim.topics.aggregates, forged('ap'))
    nodes[1].transport.publish(victim.topics.aggregates, forged('us'))
    clock.advance(10)
    expect(victim.aggregator.stats.rejected).toBe(2)
    expect(net.stats.rejectedFrom.get(usNode.peerId)).toBeGreaterThan(0)
    // The victim's own region is never taken from an aggregate.
    nodes[1].transport.publish(victim.topics.aggregates, forged('eu'))
    clock.advance(10)
    expect(victim.aggregator.stats.ignored).toBeGreaterThan(0)
    expect(victim.aggregator.stats.merged).toBe(0)
    await Promise.all(nodes.map(async n => await n.stop()))
  })
})
