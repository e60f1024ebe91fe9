import { describe, expect, it } from 'vitest'
import { decodeDelta } from '../../gossip/codec.js'
import { createLoopbackNetwork, VirtualClock } from '../../src/index.js'
import { createMeshNode, type MeshNode } from '../../src/mesh.js'
import { advance } from '../helpers/wait.js'

const T0 = 1_800_000_000_000
const POLICIES = { policies: [{ id: 'p', key: 'user', limits: [{ id: 'w', limit: 1000, window: '60s', slots: 6 }] }] }

/** Units node `n` holds from `writer` for user `u`. */
function heldFrom (n: MeshNode, writer: MeshNode, u: string): number {
  let sum = 0
  for (const [rep, pairs] of n.limiter.inspect('p/w', u, true)?.replicas ?? []) {
    if (!rep.startsWith(`${writer.peerId}@`)) continue
    for (let i = 1; i < pairs.length; i += 2) sum += pairs[i]
  }
  return sum
}

const run = async (clock: VirtualClock, ms: number): Promise<void> => { await advance(clock, ms, 5) }

describe('mesh wiring of gap repair', () => {
  it('a heartbeat announces the last seq: a lost last message (its idle markers lost too) is repaired; a dead member is forgotten', async () => {
    const clock = new VirtualClock(T0)
    // Counter messages and heartbeats n0 -> n1 are lost while `lossy` (idle markers
    // included; repair requests pass); with `dead`, everything from n0.
    let lossy = false
    let dead = false
    const net = createLoopbackNetwork({
      clock,
      latencyMs: 2,
      drop: (topic, from, to, data) => {
        if (from !== 'n0' || to !== 'n1') return false
        if (dead) return true
        // While lossy, heartbeats too: else the next one reveals the gap at once.
        return lossy && ((topic.includes('/counters/') && decodeDelta(data).ok) || topic.endsWith('/membership'))
      }
    })
    const start = async (i: number): Promise<MeshNode> => {
      const started = createMeshNode({
        policies: POLICIES,
        clock,
        transport: net.connect(`n${i}`),
        incarnation: i + 1,
        syncOnStart: false,
        flushIntervalMs: 20,
        // Only gap repair can carry the lost count: no re-publication, no background pull.
        republishIntervalMs: 0,
        antiEntropy: { pullIntervalMs: 0 },
        membership: { heartbeatIntervalMs: 100, suspectAfterMs: 300, deadAfterMs: 600 }
      })
      let done = false
      void started.finally(() => { done = true })
      while (!done) {
        clock.advance(5)
        await new Promise(resolve => setImmediate(resolve))
      }
      return await started
    }
    const n0 = await start(0)
    const n1 = await start(1)
    try {
      await run(clock, 300)
      n0.limiter.check({ user: 'a' }, 2)
      await run(clock, 100)
      expect(heldFrom(n1, n0, 'a')).toBe(2)
      lossy = true
      n0.limiter.check({ user: 'b' }, 3)
      // Flushed, its markers sent (idle flushes 1, 2, 4, 8 = 160 ms): all lost.
      await run(clock, 200)
      lossy = false
      const before = n1.limiter.stats().replicator?.repair?.messagesRepaired ?? 0
      expect(heldFrom(n1, n0, 'b')).toBe(0)
      // n0's next heartbeat (every 100 ms) carries seq 2: n1 asks n0 for it.
      await run(clock, 200)
      expect(heldFrom(n1, n0, 'b')).toBe(3)
      const r = n1.limiter.stats().replicator?.repair
      expect((r?.messagesRepaired ?? 0) - before).toBe(1)
      expect(r?.senders).toBe(1)
      expect(n1.antiEntropy.stats.pagesPulled).toBe(0)
      // n0 falls silent: once membership marks it dead, n1 drops what it tracked about it.
      dead = true
      await run(clock, 800)
      expect(n1.membership.member(n0.peerId)?.state).toBe('dead')
      expect(n1.limiter.stats().replicator?.repair?.senders).toBe(0)
    } finally {
      await n0.stop()
      await n1.stop()
    }
  })
})
