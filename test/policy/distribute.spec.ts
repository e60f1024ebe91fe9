import { encode } from '@msgpack/msgpack'
import { describe, expect, it } from 'vitest'
import { createLoopbackNetwork, type LoopbackNetwork } from '../../gossip/loopback.js'
import { topicsOf } from '../../gossip/topics.js'
import type { Transport } from '../../gossip/transport.js'
import { VirtualClock } from '../../membership/clock.js'
import { seededRandom } from '../../membership/random.js'
import { createLimiter, type Limiter } from '../../src/index.js'
import { ErrorCode } from '../../src/errors.js'
import { contentHash, encodeBundle, generateOperatorKey, signBundle } from '../../src/policy/bundle.js'
import { createPolicyDistributor, type PolicyDistributor, type PolicyDistributorInit } from '../../src/policy/distribute.js'
import { decodePolicyMessage } from '../../src/policy/wire.js'
import { DENY_ALL_POLICIES, createPolicyManager, type PolicyManager } from '../../src/policy/manager.js'
import type { PolicyDocument } from '../../src/policy/types.js'
import { thrown } from './helpers.js'
import { advance } from '../helpers/wait.js'

const T0 = 1_800_000_000_000
const OPERATOR = generateOperatorKey()
const ROGUE = generateOperatorKey()
const TOPIC = topicsOf('test').policies

function doc (version: number, limit: number): PolicyDocument {
  return { version, policies: [{ id: 'per-user', key: 'user', limits: [{ id: 'minute', limit, window: '1m' }] }] }
}

function bundle (version: number, limit: number, key = OPERATOR): Uint8Array {
  return encodeBundle(signBundle(doc(version, limit), key))
}

interface Node {
  id: string
  transport: Transport
  limiter: Limiter
  manager: PolicyManager
  dist: PolicyDistributor
  /** Virtual time at which each version was installed. */
  installedAt: Map<number, number>
}

interface Mesh {
  clock: VirtualClock
  net: LoopbackNetwork
  nodes: Node[]
  add: (id: string, opts?: Partial<PolicyDistributorInit> & { initialBundle?: Uint8Array }) => Node
}

function mesh (n: number, opts: { latencyMs?: number, drop?: (topic: string, from: string, to: string) => boolean, dist?: Partial<PolicyDistributorInit> } = {}): Mesh {
  const clock = new VirtualClock(T0)
  const net = createLoopbackNetwork({ clock, latencyMs: opts.latencyMs ?? 5, drop: opts.drop })
  const nodes: Node[] = []
  const add = (id: string, o: Partial<PolicyDistributorInit> & { initialBundle?: Uint8Array } = {}): Node => {
    const transport = net.connect(id)
    // Fail closed until a bundle arrives.
    const limiter = createLimiter({ clock, policies: DENY_ALL_POLICIES })
    const manager = createPolicyManager({ trustedKeys: [OPERATOR.text], limiter, clock, initialBundle: o.initialBundle })
    const installedAt = new Map<number, number>()
    manager.on('update', b => installedAt.set(b.version, clock.now()))
    const dist = createPolicyDistributor({ transport, clock, manager, topic: TOPIC, announceIntervalMs: 1000, pullTimeoutMs: 500, startupTimeoutMs: 3000, startupRetryMs: 200, random: seededRandom(nodes.length + 1), ...opts.dist, ...o })
    const node = { id, transport, limiter, manager, dist, installedAt }
    nodes.push(node)
    return node
  }
  for (let i = 0; i < n; i++) add(`n${i}`)
  return { clock, net, nodes, add }
}

/** Advances virtual time in small steps, letting promise callbacks run between them. */
const run = advance

/** Runs until every node runs `version` (or `limitMs` passes); returns the elapsed virtual ms. */
async function until (m: Mesh, version: number, limitMs: number): Promise<number> {
  const start = m.clock.now()
  while (m.clock.now() - start < limitMs) {
    if (m.nodes.every(n => n.manager.version === version)) return m.clock.now() - start
    await run(m.clock, 5)
  }
  throw new Error(`not every node ran version ${version} within ${limitMs} ms: ${m.nodes.map(n => `${n.id}=${n.manager.version}`).join(' ')}`)
}

async function startAll (m: Mesh): Promise<void> {
  for (const n of m.nodes) void n.dist.start()
  await run(m.clock, 10)
}

describe('policy distribution: push and pull', () => {
  it('a pushed bundle reaches every node in one gossip hop', async () => {
    const m = mesh(8)
    await startAll(m)
    expect(m.nodes[3].limiter.check({ user: 'u' }).allowed).toBe(false)
    m.nodes[0].manager.offer(bundle(1, 5), 'admin')
    const took = await until(m, 1, 1000)
    expect(took).toBeLessThanOrEqual(10)
    expect(m.nodes.every(n => n.manager.hash === contentHash(doc(1, 5)))).toBe(true)
    expect(m.nodes[3].limiter.check({ user: 'u' }).allowed).toBe(true)
    expect(m.nodes[0].dist.stats.bundlesPublished).toBe(1)
    // Received bundles are not published again: gossipsub forwards them.
    expect(m.nodes.slice(1).every(n => n.dist.stats.bundlesPublished === 0)).toBe(true)
  })

  it('nodes that missed the push catch up from announcements and pulls', async () => {
    // Every bundle message to odd nodes is lost.
    const m = mesh(6, { drop: (topic, _from, to) => topic === TOPIC && Number(to.slice(1)) % 2 === 1 && dropBundles })
    let dropBundles = true
    await startAll(m)
    m.nodes[0].manager.offer(bundle(1, 5), 'admin')
    await run(m.clock, 50)
    expect(m.nodes.map(n => n.manager.version)).toEqual([1, 0, 1, 0, 1, 0])
    // Announcements get through again: the odd nodes pull.
    dropBundles = false
    const took = await until(m, 1, 5000)
    expect(took).toBeLessThan(1300)
    expect(m.nodes[1].manager.current?.source).toBe('pull')
    expect(m.nodes[1].limiter.check({ user: 'u' }).remaining).toBe(4)
  })

  it('a joiner pulls the current bundle before it is ready, and enforces its fallback until then', async () => {
    const m = mesh(4)
    await startAll(m)
    m.nodes[0].manager.offer(bundle(3, 7), 'admin')
    await until(m, 3, 1000)
    const joiner = m.add('late')
    expect(joiner.limiter.check({ user: 'u' }).allowed).toBe(false)
    const ready = joiner.dist.start()
    await run(m.clock, 50)
    const outcome = await ready
    expect(outcome).toMatchObject({ outcome: 'pulled', version: 3, hash: contentHash(doc(3, 7)) })
    expect(outcome.waitedMs).toBeLessThanOrEqual(20)
    expect(joiner.limiter.check({ user: 'u' }).remaining).toBe(6)
  })

  it('a restarted node with a saved bundle learns it is up to date, or pulls the newer one', async () => {
    const m = mesh(3)
    await startAll(m)
    m.nodes[0].manager.offer(bundle(2, 5), 'admin')
    await until(m, 2, 1000)
    const same = m.add('same', { initialBundle: bundle(2, 5) })
    const older = m.add('older', { initialBundle: bundle(1, 5) })
    const [a, b] = [same.dist.start(), older.dist.start()]
    await run(m.clock, 50)
    expect((await a).outcome).toBe('up-to-date')
    expect(await b).toMatchObject({ outcome: 'pulled', version: 2 })
  })

  it('startup ends with "empty" when peers have no bundle, and "timeout" when no peer answers', async () => {
    const m = mesh(3)
    await startAll(m)
    // The first node to start asked peers that were not serving yet: it asks again 200 ms later.
    await run(m.clock, 300)
    const outcomes = await Promise.all(m.nodes.map(async n => await n.dist.ready))
    expect(outcomes.map(o => o.outcome)).toEqual(['empty', 'empty', 'empty'])
    const alone = mesh(1)
    const ready = alone.nodes[0].dist.start()
    await run(alone.clock, 3100, 50)
    expect(await ready).toMatchObject({ outcome: 'timeout', version: 0, hash: undefined, waitedMs: 3000 })
    // Still fail-closed: the fallback stays until a bundle arrives.
    expect(alone.nodes[0].limiter.check({ user: 'u' }).allowed).toBe(false)
  })

  it('a bundle pushed during the startup wait ends it', async () => {
    const alone = mesh(1)
    const ready = alone.nodes[0].dist.start()
    await run(alone.clock, 100)
    alone.nodes[0].manager.offer(bundle(1, 5), 'file')
    expect(await ready).toMatchObject({ outcome: 'received', version: 1 })
  })

  it('concurrent pushes of one version converge on the larger hash everywhere', async () => {
    const m = mesh(6)
    await startAll(m)
    const a = bundle(4, 10)
    const b = bundle(4, 11)
    const best = contentHash(doc(4, 10)) > contentHash(doc(4, 11)) ? contentHash(doc(4, 10)) : contentHash(doc(4, 11))
    m.nodes[0].manager.offer(a, 'admin')
    m.nodes[5].manager.offer(b, 'admin')
    await run(m.clock, 3000)
    expect(new Set(m.nodes.map(n => n.manager.hash))).toEqual(new Set([best]))
  })

  it('observe() (a membership heartbeat) triggers a pull', async () => {
    const m = mesh(2, { dist: { announceIntervalMs: 0 } })
    await startAll(m)
    m.net.disconnect('n1')
    m.nodes[0].manager.offer(bundle(1, 5), 'admin')
    await run(m.clock, 20)
    // A node that knows no peers yet (no startup pull), and hears no announcements.
    const back = { ...m.net.connect('n1b'), peers: () => [] }
    const mgr = createPolicyManager({ trustedKeys: [OPERATOR.text], limiter: createLimiter({ clock: m.clock, policies: DENY_ALL_POLICIES }), clock: m.clock })
    const d = createPolicyDistributor({ transport: back, clock: m.clock, manager: mgr, topic: TOPIC, announceIntervalMs: 0, startupTimeoutMs: 0 })
    void d.start()
    await run(m.clock, 20)
    expect(mgr.version).toBe(0)
    d.observe('n0', 1, contentHash(doc(1, 5)))
    await run(m.clock, 20)
    expect(mgr.version).toBe(1)
    d.stop()
  })
})

describe('policy distribution: bad messages', () => {
  it('forged, invalid, untrusted and malformed messages are rejected (peer scoring); nodes keep the good bundle', async () => {
    const m = mesh(3)
    await startAll(m)
    m.nodes[0].manager.offer(bundle(2, 5), 'admin')
    await until(m, 2, 1000)
    m.nodes[1].limiter.check({ user: 'u' })
    const evil = m.net.connect('evil')
    const tampered = encodeBundle({ ...signBundle(doc(9, 5), OPERATOR), content: doc(9, 5000) })
    const messages = [
      encode([1, bundle(9, 5000, ROGUE)]),
      encode([1, tampered]),
      encode([1, new TextEncoder().encode('{"not":"a bundle"}')]),
      new Uint8Array([0xc1, 0x00]),
      encode([2, 3, new Uint8Array(5)]),
      encode([3]),
      encode({ a: 1 })
    ]
    for (const msg of messages) evil.publish(TOPIC, msg)
    await run(m.clock, 50)
    // Each of the 3 nodes rejected each message.
    expect(m.net.stats.rejectedFrom.get('evil')).toBe(messages.length * 3)
    expect(m.nodes.every(n => n.manager.version === 2)).toBe(true)
    expect(m.nodes[1].limiter.check({ user: 'u' }).remaining).toBe(3)
    expect(m.nodes[1].manager.stats.rejected).toEqual({ [ErrorCode.BUNDLE_UNTRUSTED_KEY]: 1, [ErrorCode.BUNDLE_BAD_SIGNATURE]: 1, [ErrorCode.BUNDLE_MALFORMED]: 1 })
  })

  it('older bundles (a lagging peer re-publishing) are ignored, not rejected, and the laggard is told', async () => {
    const m = mesh(3)
    await startAll(m)
    m.nodes[0].manager.offer(bundle(2, 5), 'admin')
    await until(m, 2, 1000)
    const laggard = m.net.connect('lag')
    laggard.publish(TOPIC, encode([1, bundle(1, 5)]))
    const heard: number[] = []
    laggard.subscribe(TOPIC, data => {
      const msg = decodePolicyMessage(data, 1 << 21)
      if (msg?.kind === 'announce') heard.push(m.clock.now())
      return 'accept'
    })
    const at = m.clock.now()
    laggard.publish(TOPIC, encode([2, 1, Buffer.from(contentHash(doc(1, 5)), 'hex')]))
    await run(m.clock, 400)
    expect(m.net.stats.rejectedFrom.get('lag')).toBeUndefined()
    // One node answers the old announcement within a quarter interval (others suppress theirs).
    expect(heard.filter(t => t - at <= 260).length).toBe(1)
  })

  it('an announcement of a version nobody can serve costs a bounded number of pulls', async () => {
    const m = mesh(2)
    await startAll(m)
    m.nodes[0].manager.offer(bundle(1, 5), 'admin')
    await until(m, 1, 1000)
    const liar = m.net.connect('liar')
    liar.handle(`/${TOPIC}/pull/1.0.0`, () => encode([1, bundle(1, 5)]))
    const before = m.nodes[1].dist.stats.pulls
    for (let i = 0; i < 100; i++) liar.publish(TOPIC, encode([2, 99, new Uint8Array(32).fill(7)]))
    await run(m.clock, 100)
    // One pull per node: repeated announcements while a pull is in flight add nothing.
    expect(m.nodes[1].dist.stats.pulls - before).toBeLessThanOrEqual(2)
    expect(m.nodes[1].manager.version).toBe(1)
  })

  it('serves pulls: nothing, not newer, or the bundle; malformed requests fail', async () => {
    const m = mesh(1)
    await startAll(m)
    const asker = m.net.connect('asker')
    const ask = async (req: Uint8Array): Promise<unknown> => {
      const p = asker.request('n0', `/${TOPIC}/pull/1.0.0`, req, 1000)
      await run(m.clock, 20)
      return decodePolicyMessage(await p, 1 << 21)
    }
    expect(await ask(encode([1, 0, new Uint8Array(0)]))).toEqual({ kind: 'none' })
    const b = bundle(3, 5)
    m.nodes[0].manager.offer(b, 'admin')
    expect(await ask(encode([1, 0, new Uint8Array(0)]))).toEqual({ kind: 'bundle', bytes: b })
    expect(await ask(encode([1, 3, Buffer.from(contentHash(doc(3, 5)), 'hex')]))).toEqual({ kind: 'not-newer' })
    expect(await ask(encode([1, 2, Buffer.from(contentHash(doc(3, 5)), 'hex')]))).toEqual({ kind: 'bundle', bytes: b })
    const bad = asker.request('n0', `/${TOPIC}/pull/1.0.0`, encode(['x']), 1000)
    void run(m.clock, 20)
    await expect(bad).rejects.toThrow(/malformed policy pull request/)
  })

  it('refuses bad options', () => {
    const clock = new VirtualClock(T0)
    const transport = createLoopbackNetwork().connect('x')
    const manager = createPolicyManager({ trustedKeys: [OPERATOR.text], limiter: createLimiter({ clock, policies: DENY_ALL_POLICIES }), clock })
    expect(thrown(() => createPolicyDistributor({ transport, clock, manager, topic: '' }))).toMatchObject({ code: ErrorCode.OPTION_INVALID, field: 'topic' })
    expect(thrown(() => createPolicyDistributor({ transport, clock, manager: undefined as unknown as PolicyManager, topic: TOPIC }))).toMatchObject({ code: ErrorCode.OPTION_INVALID, field: 'manager' })
    expect(thrown(() => createPolicyDistributor({ transport, clock, manager, topic: TOPIC, pullTimeoutMs: 0 }))).toMatchObject({ code: ErrorCode.OPTION_INVALID, field: 'pullTimeoutMs' })
  })
})

describe('policy distribution: time until every node runs a new version (virtual time)', () => {
  // Loopback with 5 ms per hop, announcements every 1 s (jittered), drops from a seeded source.
  for (const [nodes, dropRate, bound] of [[20, 0, 10], [20, 0.3, 3000], [50, 0.1, 3000], [50, 0.5, 5000]] as const) {
    it(`${nodes} nodes, ${dropRate * 100}% of messages and pulls lost: all converge within ${bound} ms`, async () => {
      const rnd = seededRandom(42 + nodes)
      const m = mesh(nodes, { drop: () => rnd() < dropRate })
      await startAll(m)
      const t0 = m.clock.now()
      m.nodes[0].manager.offer(bundle(1, 5), 'admin')
      const took = await until(m, 1, 20_000)
      expect(took).toBeLessThanOrEqual(bound)
      const times = m.nodes.map(n => (n.installedAt.get(1) as number) - t0).sort((a, b) => a - b)
      expect(times[times.length - 1]).toBe(took)
    })
  }
})
