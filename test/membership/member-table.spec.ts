import fc from 'fast-check'
import { encode } from '@msgpack/msgpack'
import { describe, expect, it } from 'vitest'
import { VirtualClock } from '../../membership/clock.js'
import { createMembership, decodeHeartbeat, encodeHeartbeat } from '../../membership/membership.js'
import { stubTransport } from '../helpers/transport.js'
import { FAST, MALFORMED, T0, TOPIC, changes, harness, settle, validHeartbeat } from './helpers.js'

describe('the member table', () => {
  it('accepts valid heartbeats and rejects every other byte string without listing its sender (property)', () => {
    const h = harness()
    let rejected = 0
    let received = 0
    fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 100 }), validHeartbeat.map(encodeHeartbeat)), fc.nat(50), (bytes, n) => {
      const from = `p${n}`
      const known = h.m.member(from) !== undefined
      const valid = decodeHeartbeat(bytes)
      const verdict = h.feedRaw(from, bytes)
      if (valid === undefined) {
        rejected++
        expect(verdict).toBe('reject')
        expect(h.m.member(from) !== undefined).toBe(known)
      } else {
        received++
        if (verdict === 'accept') expect(h.m.member(from)).toMatchObject({ state: 'alive', incarnation: valid.incarnation, region: valid.region })
        else expect(verdict).toBe('ignore') // an older incarnation than the one listed
      }
      expect(h.m.stats.heartbeatsRejected).toBe(rejected)
      expect(h.m.stats.heartbeatsReceived).toBe(received)
    }), { numRuns: 500 })
    expect(rejected).toBeGreaterThan(0)
    expect(received).toBeGreaterThan(0)
    // Every listed member came from a valid heartbeat and was announced.
    const announced = new Set(h.seen.map(s => s.e.member.peerId))
    for (const m of h.m.members()) expect(announced.has(m.peerId)).toBe(true)
  })

  it('rejects each malformed heartbeat and creates no member', () => {
    const h = harness()
    for (const [why, bytes] of MALFORMED) expect(h.feedRaw('x', bytes), why).toBe('reject')
    expect(h.m.stats.heartbeatsRejected).toBe(MALFORMED.length)
    expect(h.m.stats.heartbeatsReceived).toBe(0)
    expect(h.m.members()).toEqual([])
    expect(h.seen).toEqual([])
    expect(h.feed('x')).toBe('accept')
    expect(h.m.members().map(m => m.peerId)).toEqual(['x'])
  })

  it('ignores an older incarnation entirely and reports restarts, also of dead members', () => {
    const h = harness()
    expect(h.feed('b', { incarnation: 5, region: 'eu' })).toBe('accept')
    h.clock.advance(50)
    expect(h.feed('b', { incarnation: 7, region: 'us', weight: 4, policyVersion: 9 })).toBe('accept')
    h.clock.advance(50)
    expect(h.feed('b', { incarnation: 6, region: 'ap', weight: 8, policyVersion: 10 })).toBe('ignore')
    expect(h.m.member('b')).toMatchObject({ incarnation: 7, region: 'us', weight: 4, policyVersion: 9, lastSeenMs: T0 + 50 })
    expect(changes(h.seen, 'b')).toEqual(['new->alive', 'restarted->alive'])

    h.clock.advance(1100)
    expect(h.m.member('b')?.state).toBe('dead')
    expect(h.feed('b', { incarnation: 8 })).toBe('accept')
    expect(changes(h.seen, 'b')).toEqual(['new->alive', 'restarted->alive', 'alive->suspect', 'suspect->dead', 'restarted->alive'])
    h.clock.advance(1100)
    expect(h.feed('b', { incarnation: 8 })).toBe('accept')
    expect(changes(h.seen, 'b').slice(-3)).toEqual(['alive->suspect', 'suspect->dead', 'dead->alive'])
  })

  it('announces a forgotten member seen again as new', () => {
    const h = harness()
    h.feed('b')
    h.clock.advance(FAST.deadAfterMs + FAST.forgetAfterMs + 100)
    expect(h.m.member('b')).toBeUndefined()
    h.feed('b')
    expect(changes(h.seen, 'b')).toEqual(['new->alive', 'alive->suspect', 'suspect->dead', 'new->alive'])
  })

  it('always reports dead before forgetting, even when forgetAfterMs is shorter than the check interval', () => {
    const h = harness({ heartbeatIntervalMs: 1000, suspectAfterMs: 1500, deadAfterMs: 1600, forgetAfterMs: 10 })
    h.feed('b')
    h.clock.advance(2000)
    expect(h.m.member('b')?.state).toBe('dead')
    h.clock.advance(500)
    expect(h.m.member('b')).toBeUndefined()
    expect(changes(h.seen, 'b')).toEqual(['new->alive', 'alive->suspect', 'suspect->dead'])
  })

  it('caps the table at maxMembers', () => {
    const h = harness({ maxMembers: 3 })
    expect(['p0', 'p1', 'p2', 'p3', 'p4'].map(p => h.feed(p))).toEqual(['accept', 'accept', 'accept', 'ignore', 'ignore'])
    expect(h.m.members().map(m => m.peerId)).toEqual(['p0', 'p1', 'p2'])
    expect(h.seen).toHaveLength(3)
    // Listed members keep being tracked.
    h.clock.advance(200)
    expect(h.feed('p1')).toBe('accept')
    expect(h.m.member('p1')?.lastSeenMs).toBe(T0 + 200)
    // Once members are forgotten, there is room again.
    h.clock.advance(FAST.deadAfterMs + FAST.forgetAfterMs + 100)
    expect(h.m.members()).toEqual([])
    expect(h.feed('p4')).toBe('accept')
    expect(h.m.members().map(m => m.peerId)).toEqual(['p4'])
  })

  it('counts alive members by region', () => {
    const h = harness()
    h.feed('eu1', { region: 'eu' })
    h.feed('eu2', { region: 'eu' })
    h.feed('us1', { region: 'us' })
    expect([h.m.aliveCount(), h.m.aliveCount('eu'), h.m.aliveCount('us'), h.m.aliveCount('ap')]).toEqual([3, 2, 1, 0])
    h.clock.advance(200)
    h.feed('eu1', { region: 'eu' })
    h.feed('us1', { region: 'us' })
    h.clock.advance(150) // eu2 silent for 350 ms: suspect
    expect(h.m.member('eu2')?.state).toBe('suspect')
    expect([h.m.aliveCount(), h.m.aliveCount('eu'), h.m.aliveCount('us')]).toEqual([2, 1, 1])
    expect(h.m.members()).toHaveLength(3)
    // A member that moves region is counted in its new one.
    h.feed('us1', { region: 'eu' })
    expect([h.m.aliveCount('eu'), h.m.aliveCount('us')]).toEqual([2, 0])
  })

  it('warns of skew strictly beyond skewWarnMs', async () => {
    for (const [offset, warns] of [[0, false], [250, false], [-250, false], [250.5, true], [-251, true], [4000, true]] as const) {
      let clockRef: VirtualClock | undefined
      // random 0.5: no timer jitter, so times are whole and offsets exact in floating point.
      const h = harness({ skewProbeIntervalMs: 100, skewWarnMs: 250, random: () => 0.5 }, {
        // Answers at once (a zero round trip): the estimate is exactly the offset.
        request: async () => encode([1, (clockRef as VirtualClock).now() + offset])
      })
      clockRef = h.clock
      h.feed('b')
      // The first round is at exactly 100 ms; settle there so the answer is read at that time.
      h.clock.advance(100)
      await settle()
      expect(h.m.stats.probesSent).toBe(1)
      expect(h.m.member('b')).toMatchObject({ skewMs: offset, rttMs: 0 })
      const skews = h.seen.filter(s => s.e.type === 'skew')
      expect(skews.length, `offset ${offset}`).toBe(warns ? 1 : 0)
      if (warns) expect(skews[0].e.member).toMatchObject({ peerId: 'b', skewMs: offset })
    }
  })

  it('probes at most three alive members per round, never suspect ones', async () => {
    const asked: string[] = []
    const h = harness({ skewProbeIntervalMs: 1000, deadAfterMs: 60_000 }, {
      request: async (peer) => {
        asked.push(peer)
        throw new Error('unreachable')
      }
    })
    const all = ['a', 'b', 'c', 'd', 'e']
    for (const p of all) h.feed(p)
    // Only a and b keep heartbeating: c, d, e are suspect from 300 ms on.
    for (let i = 0; i < 11; i++) {
      h.clock.advance(100)
      h.feed('a')
      h.feed('b')
    }
    await settle()
    // The first round (at 900-1100 ms) probed only the alive ones.
    expect(asked.slice().sort()).toEqual(['a', 'b'])
    expect(h.m.stats.probesFailed).toBe(2)
    for (let i = 0; i < 11; i++) {
      h.clock.advance(100)
      for (const p of all) h.feed(p)
    }
    await settle()
    // The second round: three distinct members of five.
    expect(asked).toHaveLength(5)
    expect(new Set(asked.slice(2)).size).toBe(3)
    expect(h.m.stats.probesFailed).toBe(5)
  })

  it('stop() cancels every timer, unsubscribes and unhandles; start() resumes with one loop of each', () => {
    const h = harness({ skewProbeIntervalMs: 1000 })
    expect(h.subscribed()).toBe(true)
    expect(h.pinging()).toBeDefined()
    expect(h.clock.pending).toBe(3)
    expect(h.published).toHaveLength(1) // a heartbeat at start
    h.m.stop()
    expect(h.clock.pending).toBe(0)
    expect(h.subscribed()).toBe(false)
    expect(h.pinging()).toBeUndefined()
    h.clock.advance(5000)
    expect(h.published).toHaveLength(1)
    expect(h.m.stats.heartbeatsSent).toBe(1)
    h.m.start()
    h.clock.advance(1000)
    // ~10 heartbeats a second (interval 100 ms, 10% jitter), plus the one at start.
    expect(h.m.stats.heartbeatsSent - 2).toBeGreaterThanOrEqual(9)
    expect(h.m.stats.heartbeatsSent - 2).toBeLessThanOrEqual(11)
    expect(h.clock.pending).toBe(3)
    // Heartbeats carry this node's identity and the time.
    expect(decodeHeartbeat(h.published[h.published.length - 1])).toMatchObject({ incarnation: 1, region: 'eu', weight: 1, policyVersion: 0 })
  })

  it('stop() from inside an event listener leaves no timer behind, and a restart there runs one loop', () => {
    const h = harness()
    h.m.on(e => { if (e.type === 'change' && e.member.state === 'suspect') h.m.stop() })
    h.feed('b')
    h.clock.advance(400)
    expect(h.m.member('b')?.state).toBe('suspect')
    expect(h.clock.pending).toBe(0)

    const r = harness()
    r.m.on(e => {
      if (e.type === 'change' && e.member.state === 'suspect') {
        r.m.stop()
        r.m.start()
      }
    })
    r.feed('b')
    r.clock.advance(400)
    expect(r.clock.pending).toBe(3)
    const sent = r.m.stats.heartbeatsSent
    r.clock.advance(1000)
    expect(r.m.stats.heartbeatsSent - sent).toBeLessThanOrEqual(11)
  })

  it('refuses inconsistent timings', () => {
    const transport = stubTransport('x')
    const clock = new VirtualClock(T0)
    const base = { transport, clock, topic: TOPIC, self: { incarnation: 1, region: 'eu' } }
    expect(() => createMembership({ ...base, heartbeatIntervalMs: 0 })).toThrow(RangeError)
    expect(() => createMembership({ ...base, suspectAfterMs: 0 })).toThrow(RangeError)
    expect(() => createMembership({ ...base, suspectAfterMs: 500, deadAfterMs: 500 })).toThrow(/suspectAfterMs < deadAfterMs/)
    expect(() => createMembership({ ...base, suspectAfterMs: 500, deadAfterMs: 501 })).not.toThrow()
  })
})


describe('policy announcements', () => {
  it('raise a policy event when a member first appears and whenever its version or hash changes, not otherwise', async () => {
    const { harness } = await import('./helpers.js')
    const h = harness()
    const policyEvents: Array<[string, number, string | undefined]> = []
    h.m.on(e => { if (e.type === 'policy') policyEvents.push([e.member.peerId, e.member.policyVersion, e.member.policyHash]) })
    const hash1 = 'a'.repeat(64)
    const hash2 = 'b'.repeat(64)
    h.feed('p', { policyVersion: 1, policyHash: hash1 })
    h.feed('p', { policyVersion: 1, policyHash: hash1 })
    h.feed('p', { policyVersion: 2, policyHash: hash2 })
    h.feed('p', { policyVersion: 2, policyHash: hash1 })
    h.feed('q')
    expect(policyEvents).toEqual([['p', 1, hash1], ['p', 2, hash2], ['p', 2, hash1], ['q', 0, undefined]])
    expect(h.m.member('p')?.policyHash).toBe(hash1)
  })

  it('refuses a heartbeat whose policy hash is not lowercase hex', async () => {
    const { harness } = await import('./helpers.js')
    const h = harness()
    expect(h.feed('p', { policyHash: 'NOT-HEX' })).toBe('reject')
    expect(h.m.member('p')).toBeUndefined()
  })
})
