import type { Random } from '../../membership/random.js'

/**
 * A gossipsub-like mesh per topic: every subscriber keeps about D mesh peers (grafting
 * up to D when it has fewer than dLo, never past dHi), over links that are up. Meshes
 * are repaired at once when membership or connectivity changes (gossipsub repairs them
 * at its next heartbeat, a second later); a heal rebuilds them from scratch, standing in
 * for the IHAVE/IWANT gossip and opportunistic grafting that join two healed halves.
 */
export class MeshOverlay {
  private readonly adj = new Map<string, Map<number, Set<number>>>()
  private readonly stale = new Set<string>()

  constructor (private readonly rnd: Random, readonly degree = 6, readonly dLo = 4, readonly dHi = 12) {}

  /** Membership or links changed: meshes are repaired before their next use. */
  invalidate (fresh = false): void {
    for (const topic of this.adj.keys()) this.stale.add(topic)
    if (fresh) this.adj.clear()
  }

  /**
   * Mesh peers of `node` on `topic` (after repairing the topic's mesh if needed); for a
   * publisher outside the topic, D random subscribers (gossipsub's fanout).
   */
  peers (topic: string, node: number, subscribers: readonly number[], connected: (a: number, b: number) => boolean): Iterable<number> {
    let g = this.adj.get(topic)
    if (g === undefined || this.stale.has(topic)) g = this.repair(topic, subscribers, connected)
    const mine = g.get(node)
    if (mine !== undefined) return mine
    const pool = subscribers.filter(b => b !== node && connected(node, b))
    const out: number[] = []
    while (out.length < this.degree && pool.length > 0) out.push(pool.splice(Math.floor(this.rnd() * pool.length), 1)[0])
    return out
  }

  private repair (topic: string, subscribers: readonly number[], connected: (a: number, b: number) => boolean): Map<number, Set<number>> {
    this.stale.delete(topic)
    const old = this.adj.get(topic)
    const g = new Map<number, Set<number>>()
    for (const n of subscribers) g.set(n, new Set())
    // Keep the links still valid, so a repair moves as little as gossipsub would.
    if (old !== undefined) {
      for (const [a, set] of old) {
        if (!g.has(a)) continue
        for (const b of set) if (g.has(b) && connected(a, b)) (g.get(a) as Set<number>).add(b)
      }
    }
    for (const a of subscribers) {
      const mine = g.get(a) as Set<number>
      if (mine.size >= this.dLo) continue
      const pool = subscribers.filter(b => b !== a && !mine.has(b) && connected(a, b) && (g.get(b) as Set<number>).size < this.dHi)
      while (mine.size < this.degree && pool.length > 0) {
        const b = pool.splice(Math.floor(this.rnd() * pool.length), 1)[0]
        mine.add(b)
        ;(g.get(b) as Set<number>).add(a)
      }
    }
    this.adj.set(topic, g)
    return g
  }
}
