import { describe, expect, it } from 'vitest'
import { decodeDelta } from '../../gossip/codec.js'
import { createLimiter, createLoopbackNetwork, VirtualClock } from '../../src/index.js'

const T0 = 1_800_000_000_000
const policies = { policies: [{ id: 'p', key: 'user', limits: [{ id: 'w', limit: 100, window: '1s', slots: 4 }] }] }

describe('Limiter.inspect', () => {
  it('reads one key\'s counters per epoch and per replica without changing them', () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork()
    const a = createLimiter({ clock, policies, transport: net.connect('a'), incarnation: 1 })
    const b = createLimiter({ clock, policies, transport: net.connect('b'), incarnation: 2 })
    a.check({ user: 'u' })
    a.check({ user: 'u' })
    clock.advance(250)
    b.check({ user: 'u' })
    a.flush()
    b.flush()
    const epoch = Math.floor(T0 / 250)
    const view = a.inspect('p/w', 'u', true)
    expect(view?.slotMs).toBe(250)
    expect(view?.head).toBe(epoch + 1)
    expect(view?.firstEpoch).toBe(epoch + 1 - 4)
    expect(view?.totals.reduce((x, y) => x + y, 0)).toBe(3)
    expect(view?.totals[4]).toBe(1)
    expect(view?.replicas).toEqual(new Map([['a@1', [epoch, 2]], ['b@2', [epoch + 1, 1]]]))
    // Read-only: the same answer twice, and no replicas unless asked.
    expect(a.inspect('p/w', 'u', true)).toEqual(view)
    expect(a.inspect('p/w', 'u')?.replicas).toBeUndefined()
    expect(a.inspect('p/w', 'nobody')).toBeUndefined()
    expect(a.inspect('nope', 'u')).toBeUndefined()
    // A key known only from a peer's message is found too.
    clock.advance(10)
    b.check({ user: 'v' })
    b.flush()
    expect(a.inspect('p/w', 'v')?.totals.reduce((x, y) => x + y, 0)).toBe(1)
    a.close()
    b.close()
  })
})

describe('LimiterInit.decodeDelta', () => {
  it('decodes received gossip with the given decoder, whose verdicts stand', () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork()
    let calls = 0
    let refuse = false
    const a = createLimiter({ clock, policies, transport: net.connect('a'), incarnation: 1 })
    const b = createLimiter({
      clock,
      policies,
      transport: net.connect('b'),
      incarnation: 1,
      decodeDelta: (data, limits) => {
        calls++
        return refuse ? { ok: false, reason: 'refused by the test' } : decodeDelta(data, limits)
      }
    })
    a.check({ user: 'u' })
    a.flush()
    expect(calls).toBe(1)
    expect(b.inspect('p/w', 'u')?.totals.reduce((x, y) => x + y, 0)).toBe(1)
    refuse = true
    a.check({ user: 'u' })
    a.flush()
    expect(calls).toBe(2)
    expect(b.inspect('p/w', 'u')?.totals.reduce((x, y) => x + y, 0)).toBe(1)
    expect(b.stats().replicator?.messagesRejected).toBe(1)
    expect(net.stats.rejectedFrom.get('a')).toBe(1)
    a.close()
    b.close()
  })
})
