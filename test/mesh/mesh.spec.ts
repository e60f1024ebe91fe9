import { encode } from '@msgpack/msgpack'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterEach, describe, expect, it } from 'vitest'
import { generateSwarmKey } from '../../gossip/psk.js'
import type { Libp2pTransport } from '../../gossip/libp2p.js'
import { createMeshNode, type MeshNode } from '../../src/mesh.js'
import { seededRandom, type Limiter, type PolicyDocument } from '../../src/index.js'
import { connectAll, eventually, FAST, startMesh } from './helpers.js'

/** Limits large enough never to deny: every request is admitted and totals are exact. */
const policies: PolicyDocument = {
  policies: [
    { id: 'fixed', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 1_000_000, window: '1h' }] },
    { id: 'slide', key: 'apiKey', limits: [{ id: 'w', limit: 1_000_000, window: '1h' }] }
  ]
}

const used = (l: Limiter, k: string): number => {
  const d = l.peek({ user: k }, 1)
  return d.limit - d.remaining
}

let nodes: MeshNode[] = []
afterEach(async () => {
  await Promise.all(nodes.map(async n => await n.stop()))
  nodes = []
})

function drive (targets: MeshNode[], seed: number, requests: number, keys: number, truth = new Map<string, number>()): Map<string, number> {
  const rnd = seededRandom(seed)
  for (let r = 0; r < requests; r++) {
    const node = targets[Math.floor(rnd() * targets.length)]
    const k = `k${Math.floor(rnd() * keys)}`
    const cost = 1 + Math.floor(rnd() * 3)
    expect(node.limiter.check({ user: k, apiKey: k }, cost).allowed).toBe(true)
    truth.set(k, (truth.get(k) ?? 0) + cost)
  }
  return truth
}

const converged = (all: MeshNode[], truth: Map<string, number>): boolean =>
  [...truth].every(([k, total]) => all.every(n => used(n.limiter, k) === total))

describe('mesh over libp2p (TCP loopback)', () => {
  it('5 nodes: traffic spread over them converges to exactly what was admitted', async () => {
    const psk = generateSwarmKey()
    nodes = await startMesh(5, { policies }, psk)
    const truth = drive(nodes, 1, 2000, 50)
    await eventually('every node holds the exact totals', () => converged(nodes, truth))
    // Heartbeats sent before the connections existed were lost: the next ones arrive within an interval.
    await eventually('every node sees the four others alive', () => nodes.every(n => n.membership.aliveCount() === 4))
  })

  it('a restarted node (new incarnation) loses nothing and catches up through anti-entropy', async () => {
    const psk = generateSwarmKey()
    const privateKey = await generateKeyPair('Ed25519')
    const first = await createMeshNode({ ...FAST, policies, incarnation: 1, network: { psk, privateKey } })
    const others = await Promise.all([0, 1].map(async () => await createMeshNode({ ...FAST, policies, network: { psk, bootstrap: [first.multiaddrs()[0]] } })))
    nodes = [first, ...others]
    await connectAll(nodes)
    const truth = drive(nodes, 2, 1500, 30)
    await eventually('the first traffic converged', () => converged(nodes, truth))
    const addr = others[0].multiaddrs()[0]
    await first.stop()
    // Same identity, new incarnation: it must neither regress nor double-count.
    const again = await createMeshNode({ ...FAST, policies, incarnation: 2, network: { psk, privateKey, bootstrap: [addr] } })
    nodes = [again, ...others]
    expect(again.peerId).toBe(first.peerId)
    expect(again.startupSync?.peers).toBeGreaterThan(0)
    expect(again.startupSync?.merged).toBeGreaterThan(0)
    // Right after start-up, before any new traffic, it already holds every count.
    for (const [k, total] of truth) expect(used(again.limiter, k)).toBe(total)
    await connectAll(nodes)
    drive([again], 3, 300, 30, truth)
    await eventually('the restarted node\'s new counts reached everyone', () => converged(nodes, truth))
  })

  it('a node with the wrong pre-shared key, or none, cannot join', async () => {
    nodes = await startMesh(2, { policies }, generateSwarmKey())
    const target = nodes[0].multiaddrs()[0]
    const wrong = await createMeshNode({ ...FAST, policies, syncOnStart: false, network: { psk: generateSwarmKey() } })
    const none = await createMeshNode({ ...FAST, policies, syncOnStart: false, network: { allowNoPsk: true } })
    nodes.push(wrong, none)
    for (const outsider of [wrong, none]) {
      await expect((outsider.transport as Libp2pTransport).dial(target)).rejects.toThrow()
      expect(outsider.transport.peers()).toEqual([])
    }
    drive([nodes[0]], 4, 50, 5)
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(wrong.limiter.stats().mergedEntries).toBe(0)
    expect(none.limiter.stats().mergedEntries).toBe(0)
  })

  it('a peer publishing malformed or forged data is rejected, never merged, and loses score', async () => {
    nodes = await startMesh(3, { policies }, generateSwarmKey())
    const [victim, honest, rogue] = nodes
    const topic = victim.topics.counters(victim.region)
    const rogueT = rogue.transport as Libp2pTransport
    const before = victim.limiter.stats().mergedEntries
    // Bytes that are not a delta, a delta with a zero count, and one stamped an hour ahead.
    rogueT.publish(topic, new Uint8Array([0xc1, 0x00, 0xff]))
    rogueT.publish(topic, encode([1, 1, Date.now(), [['fixed/w', 3_600_000, 0, [1, 0, 0]]]]))
    rogueT.publish(topic, encode([1, 1, Date.now() + 3_600_000, [['fixed/w', 3_600_000, Math.floor(Date.now() / 3_600_000), [12345, 0, 5]]]]))
    await eventually('the victim rejected all three', () => (victim.limiter.stats().replicator?.messagesRejected ?? 0) >= 3)
    expect(victim.limiter.stats().mergedEntries).toBe(before)
    await eventually('the rogue\'s score dropped below zero at the victim', () => (victim.transport as Libp2pTransport).score(rogue.peerId) < 0)
    expect((victim.transport as Libp2pTransport).score(honest.peerId)).toBeGreaterThanOrEqual(0)
  })

  it('a node that missed messages (blocked) is repaired by re-publication and anti-entropy', async () => {
    nodes = await startMesh(3, { policies }, generateSwarmKey())
    const [a, b, c] = nodes
    const cT = c.transport as Libp2pTransport
    await cT.block(a.peerId)
    await cT.block(b.peerId)
    await eventually('c is cut off', () => c.transport.peers().length === 0)
    const truth = drive([a, b], 5, 800, 20)
    await eventually('a and b converged without c', () => converged([a, b], truth))
    expect(converged([c], truth)).toBe(false)
    cT.unblock(a.peerId)
    cT.unblock(b.peerId)
    await connectAll(nodes)
    const pulled = await c.antiEntropy.pull(c.transport.peers())
    expect(pulled.peers).toBe(2)
    await eventually('c holds the exact totals again', () => converged(nodes, truth))
  })
})

describe('signed policies over the mesh', () => {
  it('a bundle pushed to one node runs on every node, and a forged one runs nowhere', async () => {
    const { generateOperatorKey, signBundle, encodeBundle } = await import('../../src/policy/bundle.js')
    const operator = generateOperatorKey()
    const rogue = generateOperatorKey()
    const psk = generateSwarmKey()
    const base = { trustedKeys: [operator.text], policyDistribution: { announceIntervalMs: 500, startupTimeoutMs: 500 } }
    nodes = await startMesh(3, { policies, ...base }, psk)
    for (const n of nodes) expect(n.policy?.manager.version).toBe(0)
    const v2 = { policies: [{ id: 'fixed', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window' as const, limit: 7, window: '1h' }] }] }
    const forged = encodeBundle(signBundle(v2, rogue, 9))
    expect(nodes[0].policy?.manager.offer(forged, 'admin').status).not.toBe('installed')
    const pushedAt = Date.now()
    expect(nodes[0].policy?.manager.offer(encodeBundle(signBundle(v2, operator, 2)), 'admin').status).toBe('installed')
    await eventually('every node runs version 2', () => nodes.every(n => n.policy?.manager.version === 2))
    const propagationMs = Date.now() - pushedAt
    for (const n of nodes) expect(n.limiter.check({ user: 'u' }).limit).toBe(7)
    // Heartbeats carry the running version and hash.
    await eventually('heartbeats announce version 2', () => nodes.every(n => n.membership.members().every(m => m.policyVersion === 2 && m.policyHash === nodes[0].policy?.manager.hash)))
    if (process.env.MESHLIMIT_PRINT_PROPAGATION === '1') console.log(`policy propagation to 3 libp2p nodes: ${propagationMs} ms`)
  })
})
