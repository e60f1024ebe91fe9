import fc from 'fast-check'
import { decode, encode } from '@msgpack/msgpack'
import { describe, expect, it } from 'vitest'
import { createLoopbackNetwork, type LoopbackNetwork } from '../../gossip/loopback.js'
import type { Transport } from '../../gossip/transport.js'
import { VirtualClock, type Clock } from '../../membership/clock.js'
import { createMembership, encodeHeartbeat, type MemberInfo, type Membership, type MembershipInit } from '../../membership/membership.js'
import { FAST, HB, MALFORMED, PING, QUIET, T0, TOPIC, changes, offsetClock, run, type Seen } from './helpers.js'

interface LoopNode { m: Membership, t: Transport, seen: Seen[] }

/** Connects `peerId` to the network and starts its membership (its events timed by the shared clock). */
function join (net: LoopbackNetwork, clock: VirtualClock, peerId: string, init: Partial<MembershipInit> = {}, nodeClock: Clock = clock): LoopNode {
  const t = net.connect(peerId)
  const m = createMembership({ transport: t, clock: nodeClock, topic: TOPIC, self: { incarnation: 1, region: 'eu' }, ...FAST, ...QUIET, ...init })
  const seen: Seen[] = []
  // Lifecycle events only: policy announcements have their own test.
  m.on(e => { if (e.type !== 'policy') seen.push({ at: clock.now(), e }) })
  m.start()
  return { m, t, seen }
}


/** Nodes a and b on a 5 ms loopback network, b at incarnation 7 (the goodbye tests). */
function pairWithB7 (): { clock: VirtualClock, a: LoopNode, b: LoopNode } {
  const clock = new VirtualClock(T0)
  const net = createLoopbackNetwork({ clock, latencyMs: 5 })
  return { clock, a: join(net, clock, 'a'), b: join(net, clock, 'b', { self: { incarnation: 7, region: 'eu' } }) }
}

describe('membership over the loopback network', () => {
  it('discovers members from heartbeats with their region, weight and policy version', () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 5 })
    let version = 3
    const a = join(net, clock, 'a', { self: { incarnation: 11, region: 'eu' }, policyVersion: () => version })
    const b = join(net, clock, 'b', { self: { incarnation: 22, region: 'us', weight: 2.5 } })
    const c = join(net, clock, 'c', { self: { incarnation: 33, region: 'us' } })
    clock.advance(300)
    expect(a.m.members().map(m => m.peerId).sort()).toEqual(['b', 'c'])
    const ab = a.m.member('b') as MemberInfo
    expect(ab).toMatchObject({ peerId: 'b', incarnation: 22, region: 'us', weight: 2.5, policyVersion: 0, state: 'alive', skewMs: undefined, rttMs: undefined })
    expect(T0 + 300 - ab.lastSeenMs).toBeLessThanOrEqual(115)
    expect(c.m.member('a')).toMatchObject({ incarnation: 11, region: 'eu', weight: 1, policyVersion: 3, state: 'alive' })
    expect(b.m.member('c')).toMatchObject({ incarnation: 33, region: 'us', weight: 1 })
    expect(b.m.member('b')).toBeUndefined()
    // One 'new' event per peer, nothing else.
    for (const n of [a, b, c]) {
      expect(n.seen.every(s => s.e.type === 'change' && s.e.previous === 'new' && s.e.member.state === 'alive')).toBe(true)
      expect(n.seen).toHaveLength(2)
    }
    expect(a.m.aliveCount()).toBe(2)
    expect(a.m.aliveCount('us')).toBe(2)
    expect(b.m.aliveCount('us')).toBe(1)
    expect(b.m.aliveCount('eu')).toBe(1)
    expect(b.m.aliveCount('ap')).toBe(0)

    // The policy version is read at every heartbeat; the change raises no lifecycle event.
    version = 4
    clock.advance(200)
    expect(b.m.member('a')?.policyVersion).toBe(4)
    expect(c.m.member('a')?.policyVersion).toBe(4)
    expect(b.seen).toHaveLength(2)
    expect(net.stats.rejectedFrom.size).toBe(0)
    expect(a.m.stats.heartbeatsRejected).toBe(0)
    expect(a.m.stats.heartbeatsReceived).toBeGreaterThanOrEqual(8)
  })

  it('moves a node that stopped and left through suspect, dead and forgotten, with the exact events', () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 5 })
    const a = join(net, clock, 'a')
    const b = join(net, clock, 'b')
    clock.advance(500)
    b.m.stop()
    net.disconnect('b')
    clock.advance(10) // heartbeats still in flight land
    const last = (a.m.member('b') as MemberInfo).lastSeenMs
    expect(T0 + 510 - last).toBeLessThanOrEqual(120)
    expect(changes(a.seen, 'b')).toEqual(['new->alive'])
    const tick = FAST.heartbeatIntervalMs / 2

    clock.runUntil(last + FAST.suspectAfterMs - 1)
    expect(a.m.member('b')?.state).toBe('alive')
    clock.runUntil(last + FAST.suspectAfterMs + tick)
    expect(a.m.member('b')?.state).toBe('suspect')
    expect(changes(a.seen, 'b')).toEqual(['new->alive', 'alive->suspect'])
    const suspectAt = a.seen[a.seen.length - 1].at
    expect(suspectAt).toBeGreaterThanOrEqual(last + FAST.suspectAfterMs)
    expect(suspectAt).toBeLessThanOrEqual(last + FAST.suspectAfterMs + tick)
    expect(a.seen[a.seen.length - 1].e.member).toMatchObject({ peerId: 'b', state: 'suspect', lastSeenMs: last })
    expect(a.m.aliveCount()).toBe(0)

    clock.runUntil(last + FAST.deadAfterMs - 1)
    expect(a.m.member('b')?.state).toBe('suspect')
    clock.runUntil(last + FAST.deadAfterMs + tick)
    expect(a.m.member('b')?.state).toBe('dead')
    expect(changes(a.seen, 'b')).toEqual(['new->alive', 'alive->suspect', 'suspect->dead'])
    const deadAt = a.seen[a.seen.length - 1].at
    expect(deadAt).toBeGreaterThanOrEqual(last + FAST.deadAfterMs)
    expect(deadAt).toBeLessThanOrEqual(last + FAST.deadAfterMs + tick)

    // Dead members stay listed until they have been dead for forgetAfterMs.
    clock.runUntil(last + FAST.deadAfterMs + FAST.forgetAfterMs - 1)
    expect(a.m.members().map(m => [m.peerId, m.state])).toEqual([['b', 'dead']])
    clock.runUntil(last + FAST.deadAfterMs + FAST.forgetAfterMs + tick)
    expect(a.m.member('b')).toBeUndefined()
    expect(a.m.members()).toEqual([])
    expect(changes(a.seen, 'b')).toEqual(['new->alive', 'alive->suspect', 'suspect->dead'])
    clock.advance(5000)
    expect(a.seen).toHaveLength(3)
  })

  it('forgets a member that says goodbye at once, with a left event; its late heartbeats do not bring it back, a restart does', () => {
    const { clock, a, b } = pairWithB7()
    clock.advance(500)
    expect(a.m.member('b')?.state).toBe('alive')
    b.m.leave()
    clock.advance(10)
    expect(a.m.member('b')).toBeUndefined()
    expect(a.m.stats.goodbyesReceived).toBe(1)
    const left = a.seen.filter(s => s.e.type === 'left')
    expect(left).toHaveLength(1)
    expect(left[0].e.member).toMatchObject({ peerId: 'b', incarnation: 7, state: 'dead' })
    // leave() stopped b: no further heartbeats, and a never passes it through suspect or dead.
    clock.advance(FAST.deadAfterMs * 2)
    expect(changes(a.seen, 'b')).toEqual(['new->alive'])
    expect(a.m.members()).toEqual([])
    // A heartbeat of the same incarnation relayed after the goodbye is ignored...
    // (b's transport is still connected: publish on it as a relayed copy would arrive.)
    const c = b.t
    c.publish(TOPIC, encodeHeartbeat({ incarnation: 7, region: 'eu', weight: 1, policyVersion: 0, sentAtMs: clock.now() }))
    clock.advance(10)
    expect(a.m.member('b')).toBeUndefined()
    // ...and a restart (a higher incarnation) is a new member.
    c.publish(TOPIC, encodeHeartbeat({ incarnation: 8, region: 'eu', weight: 1, policyVersion: 0, sentAtMs: clock.now() }))
    clock.advance(10)
    expect(a.m.member('b')).toMatchObject({ incarnation: 8, state: 'alive' })
    expect(changes(a.seen, 'b')).toEqual(['new->alive', 'new->alive'])
  })

  it('a goodbye from an older incarnation is ignored, and stop() says no goodbye', () => {
    const { clock, a, b } = pairWithB7()
    clock.advance(300)
    // A goodbye of incarnation 6 relayed late, after b restarted as 7: b stays.
    b.t.publish(TOPIC, encodeHeartbeat({ incarnation: 6, region: 'eu', weight: 1, policyVersion: 0, sentAtMs: clock.now(), leaving: true }))
    clock.advance(10)
    expect(a.m.member('b')?.state).toBe('alive')
    expect(a.m.stats.goodbyesReceived).toBe(0)
    // A silent stop looks like a crash: suspect, then dead.
    b.m.stop()
    clock.advance(FAST.suspectAfterMs + 100)
    expect(a.m.member('b')?.state).toBe('suspect')
    expect(a.m.stats.goodbyesReceived).toBe(0)
  })

  it('brings a silent member back to alive with an event naming the state it left', () => {
    const clock = new VirtualClock(T0)
    let blocked = false
    const net = createLoopbackNetwork({ clock, latencyMs: 5, drop: (topic, from) => blocked && topic === TOPIC && from === 'b' })
    const a = join(net, clock, 'a')
    join(net, clock, 'b')
    clock.advance(300)
    blocked = true
    clock.advance(500)
    expect(a.m.member('b')?.state).toBe('suspect')
    blocked = false
    clock.advance(200)
    expect(a.m.member('b')?.state).toBe('alive')
    const back = a.seen[a.seen.length - 1]
    expect(back.e).toMatchObject({ type: 'change', previous: 'suspect', member: { peerId: 'b', state: 'alive', lastSeenMs: back.at } })

    blocked = true
    clock.advance(1300)
    expect(a.m.member('b')?.state).toBe('dead')
    blocked = false
    clock.advance(200)
    expect(a.m.member('b')?.state).toBe('alive')
    expect(changes(a.seen, 'b')).toEqual(['new->alive', 'alive->suspect', 'suspect->alive', 'alive->suspect', 'suspect->dead', 'dead->alive'])
  })

  it('reports a higher incarnation as a restart and ignores an older incarnation relayed late', async () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 5 })
    const a = join(net, clock, 'a', { skewProbeIntervalMs: 150 })
    const b1 = join(net, clock, 'b', { self: { incarnation: 1, region: 'eu' } })
    await run(clock, 400)
    const probed = a.m.member('b') as MemberInfo
    expect(probed.rttMs).toBeGreaterThanOrEqual(10)
    expect(probed.rttMs).toBeLessThan(11)
    expect(Math.abs(probed.skewMs as number)).toBeLessThan(0.5)

    b1.m.stop()
    net.disconnect('b')
    const b2 = join(net, clock, 'b', { self: { incarnation: 2, region: 'us', weight: 3 } })
    clock.advance(6)
    expect(changes(a.seen, 'b')).toEqual(['new->alive', 'restarted->alive'])
    // A restart forgets the old incarnation's skew estimate.
    expect(a.seen[a.seen.length - 1].e.member).toMatchObject({ incarnation: 2, region: 'us', weight: 3, skewMs: undefined, rttMs: undefined })
    expect(a.m.member('b')).toMatchObject({ incarnation: 2, region: 'us', state: 'alive' })

    // A heartbeat of incarnation 1 published now (e.g. relayed late) changes nothing.
    b2.t.publish(TOPIC, encodeHeartbeat({ ...HB, incarnation: 1, region: 'ap', sentAtMs: clock.now() }))
    clock.advance(6)
    expect(a.m.member('b')).toMatchObject({ incarnation: 2, region: 'us', weight: 3 })
    expect(a.seen).toHaveLength(2)
    expect(net.stats.rejectedFrom.size).toBe(0)
  })

  it('rejects malformed heartbeats from a peer, counts them and never lists the peer', () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 5 })
    const a = join(net, clock, 'a')
    const b = join(net, clock, 'b')
    const rogue = net.connect('rogue')
    for (const [, bytes] of MALFORMED) rogue.publish(TOPIC, bytes)
    clock.advance(300)
    expect(a.m.stats.heartbeatsRejected).toBe(MALFORMED.length)
    expect(b.m.stats.heartbeatsRejected).toBe(MALFORMED.length)
    // Both receivers gave the sender a 'reject' verdict for each, which feeds its peer score.
    expect(net.stats.rejectedFrom.get('rogue')).toBe(2 * MALFORMED.length)
    expect(net.stats.rejectedFrom.size).toBe(1)
    expect(a.m.member('rogue')).toBeUndefined()
    expect(a.seen.some(s => s.e.member.peerId === 'rogue')).toBe(false)
    expect(a.m.members().map(m => m.peerId)).toEqual(['b'])
  })

  it('estimates a peer clock offset within half the round trip, and warns only beyond skewWarnMs (property)', async () => {
    const warn = 250
    const offset = fc.oneof(fc.integer({ min: -3000, max: -warn - 3 }), fc.integer({ min: -warn + 3, max: warn - 3 }), fc.integer({ min: warn + 3, max: 3000 }))
    await fc.assert(fc.asyncProperty(offset, fc.integer({ min: 1, max: 40 }), async (off, latency) => {
      const clock = new VirtualClock(T0)
      const net = createLoopbackNetwork({ clock, latencyMs: latency })
      const a = join(net, clock, 'a', { skewProbeIntervalMs: 300, skewWarnMs: warn })
      const b = join(net, clock, 'b', { skewProbeIntervalMs: 300, skewWarnMs: warn }, offsetClock(clock, off))
      await run(clock, 800)
      for (const [who, peer, truth] of [[a, 'b', off], [b, 'a', -off]] as const) {
        const m = who.m.member(peer) as MemberInfo
        expect(m.rttMs).toBeGreaterThanOrEqual(2 * latency)
        expect(m.rttMs).toBeLessThan(2 * latency + 1)
        const error = Math.abs((m.skewMs as number) - truth)
        // NTP's bound holds whatever the delays; with symmetric latency the error is only our 1 ms stepping.
        expect(error).toBeLessThanOrEqual((m.rttMs as number) / 2)
        expect(error).toBeLessThan(1)
        const warned = who.seen.filter(s => s.e.type === 'skew')
        expect(warned.length > 0).toBe(Math.abs(off) > warn)
        for (const s of warned) expect(s.e.member.peerId).toBe(peer)
      }
      expect(a.m.stats.probesFailed).toBe(0)
      expect(a.m.stats.probesSent).toBeGreaterThanOrEqual(2)
    }), { numRuns: 12 })
  })

  it('counts probes to a peer that does not answer pings as failed', async () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 5, drop: topic => topic === PING })
    const a = join(net, clock, 'a', { skewProbeIntervalMs: 200 })
    join(net, clock, 'b')
    await run(clock, 1000)
    expect(a.m.member('b')?.state).toBe('alive')
    expect(a.m.stats.probesSent).toBeGreaterThanOrEqual(4)
    expect(a.m.stats.probesFailed).toBe(a.m.stats.probesSent)
    expect(a.m.member('b')).toMatchObject({ skewMs: undefined, rttMs: undefined })
  })

  it('counts a probe that times out, or that gets a malformed answer, as failed', async () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 5 })
    const a = join(net, clock, 'a', { skewProbeIntervalMs: 200, suspectAfterMs: 30_000, deadAfterMs: 60_000 })
    // A peer that heartbeats once and never answers a ping.
    const silent = net.connect('silent')
    silent.handle(PING, async () => await new Promise<Uint8Array>(() => {}))
    silent.publish(TOPIC, encodeHeartbeat({ ...HB, sentAtMs: clock.now() }))
    await run(clock, 1500)
    expect(a.m.stats.probesSent).toBeGreaterThanOrEqual(5)
    expect(a.m.stats.probesFailed).toBe(0) // none has reached the 2 s timeout yet
    await run(clock, 1000)
    expect(a.m.stats.probesFailed).toBeGreaterThanOrEqual(1)
    expect(a.m.member('silent')).toMatchObject({ state: 'alive', skewMs: undefined, rttMs: undefined })

    // Peers answering garbage: each probe fails at once.
    const answers = [Uint8Array.from([0xc1]), encode([2, T0]), encode([1, 'now']), encode([1, Infinity]), encode({ t: T0 })]
    const clock2 = new VirtualClock(T0)
    const net2 = createLoopbackNetwork({ clock: clock2, latencyMs: 5 })
    const probe = join(net2, clock2, 'probe', { skewProbeIntervalMs: 200 })
    answers.forEach((answer, i) => {
      const t = net2.connect(`liar-${i}`)
      t.handle(PING, () => answer)
      t.publish(TOPIC, encodeHeartbeat({ ...HB, sentAtMs: clock2.now() }))
    })
    await run(clock2, 250)
    expect(probe.m.stats.probesSent).toBe(3)
    expect(probe.m.stats.probesFailed).toBe(3)
    expect(probe.m.members().every(m => m.skewMs === undefined)).toBe(true)
  })

  it('answers pings with its clock and refuses malformed ones', async () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 5 })
    join(net, clock, 'a', {}, offsetClock(clock, 1234))
    const asker = net.connect('asker')
    const answer = asker.request('a', PING, encode([1, 0]), 1000)
    await run(clock, 12)
    // Handled 5 ms after sending, read from a's clock (1234 ms ahead).
    expect(decode(await answer)).toEqual([1, T0 + 5 + 1234])
    // Assertions attached now, so the rejections are never unhandled.
    const bad = expect(asker.request('a', PING, Uint8Array.from([0xc1]), 1000)).rejects.toThrow(/malformed ping/)
    const bad2 = expect(asker.request('a', PING, encode([2, 0]), 1000)).rejects.toThrow(/malformed ping/)
    await run(clock, 12)
    await bad
    await bad2
  })

  it('stop() unsubscribes, stops answering pings and sends no more heartbeats', async () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock, latencyMs: 5 })
    const a = join(net, clock, 'a')
    const b = join(net, clock, 'b')
    clock.advance(500)
    a.m.stop()
    const sent = a.m.stats.heartbeatsSent
    const received = a.m.stats.heartbeatsReceived
    const published = net.stats.published
    const bSent = b.m.stats.heartbeatsSent
    clock.advance(10) // b's heartbeats already on the wire may still land
    const receivedAfter = a.m.stats.heartbeatsReceived
    expect(receivedAfter - received).toBeLessThanOrEqual(1)
    clock.advance(2000)
    expect(a.m.stats.heartbeatsSent).toBe(sent)
    expect(a.m.stats.heartbeatsReceived).toBe(receivedAfter)
    expect(net.stats.published - published).toBe(b.m.stats.heartbeatsSent - bSent)
    expect(b.m.member('a')?.state).toBe('dead')
    await expect(b.t.request('a', PING, encode([1, 0]), 1000)).rejects.toThrow(/does not answer/)
    // The table is kept as it was.
    expect(a.m.member('b')?.state).toBe('alive')
  })
})

