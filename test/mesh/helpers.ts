import { createMeshNode, type MeshNode, type MeshNodeInit } from '../../src/mesh.js'

/** Polls `cond` every 20 ms until it holds or `timeoutMs` passes; then fails with `what`. */
export async function eventually (what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

export const FAST: Partial<MeshNodeInit> = {
  flushIntervalMs: 20,
  republishIntervalMs: 500,
  syncTimeoutMs: 3000,
  membership: { heartbeatIntervalMs: 200 }
}

/**
 * Starts `n` libp2p nodes on TCP loopback; node 0 first, the others bootstrapping to
 * it. Waits until every node knows every other node's subscription to its counter
 * topic, so that a publish reaches all of them.
 */
export async function startMesh (n: number, base: MeshNodeInit, psk: Uint8Array | undefined): Promise<MeshNode[]> {
  const network = (bootstrap: string[]): MeshNodeInit['network'] => ({ psk, allowNoPsk: psk === undefined, bootstrap, heartbeatIntervalMs: 100 })
  const first = await createMeshNode({ ...FAST, ...base, network: network([]) })
  const rest = await Promise.all(Array.from({ length: n - 1 }, async () => await createMeshNode({ ...FAST, ...base, network: network([first.multiaddrs()[0]]) })))
  const nodes = [first, ...rest]
  await connectAll(nodes)
  return nodes
}

/** Dials every pair and waits for full subscription knowledge on the counter topic. */
export async function connectAll (nodes: MeshNode[]): Promise<void> {
  for (const a of nodes) {
    for (const b of nodes) {
      if (a === b || a.transport.peers().includes(b.peerId)) continue
      await (a.transport as unknown as { dial: (x: string) => Promise<void> }).dial(b.multiaddrs()[0])
    }
  }
  await eventually('every node sees every other subscribed to its counter topic', () => nodes.every(a => {
    const subs = (a.transport as unknown as { libp2p: { services: { pubsub: { getSubscribers: (t: string) => Array<{ toString: () => string }> } } } })
      .libp2p.services.pubsub.getSubscribers(a.topics.counters(a.region)).map(p => p.toString())
    return nodes.every(b => b === a || subs.includes(b.peerId))
  }))
}
