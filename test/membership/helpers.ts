import fc from 'fast-check'
import { encode } from '@msgpack/msgpack'
import { expect } from 'vitest'
import { topicsOf } from '../../gossip/topics.js'
import type { MessageHandler, RequestHandler, Transport, Verdict } from '../../gossip/transport.js'
import { VirtualClock, type Clock } from '../../membership/clock.js'
import { createMembership, encodeHeartbeat, type Membership, type MembershipEvent, type MembershipInit } from '../../membership/membership.js'
import { stubTransport } from '../helpers/transport.js'

/** Shared fixtures of the membership tests. */
export const T0 = 1_800_000_000_000
export const TOPIC = topicsOf('test').membership
export const PING = '/meshlimit/ping/1'
/** Fast timings: heartbeat every ~100 ms (liveness checked every 50 ms). */
export const FAST = { heartbeatIntervalMs: 100, suspectAfterMs: 300, deadAfterMs: 1000, forgetAfterMs: 2000 }
/** No skew probes unless a test asks for them. */
export const QUIET = { skewProbeIntervalMs: 1e9 }

export type Heartbeat = Parameters<typeof encodeHeartbeat>[0]
export const HB: Heartbeat = { incarnation: 1, region: 'eu', weight: 1, policyVersion: 0, sentAtMs: T0 }

/** A clock that reads `offsetMs` ahead of `base` and shares its timers (a node with a skewed clock). */
export function offsetClock (base: Clock, offsetMs: number): Clock {
  return { now: () => base.now() + offsetMs, setTimer: (ms, fn) => base.setTimer(ms, fn) }
}

/** Lets every pending microtask and promise chain run (loopback answers and probe continuations). */
export const settle = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

/**
 * Advances virtual time 1 ms at a time, settling promises in between, so that async
 * continuations (request handlers, probe answers) read the clock when they happen.
 */
export async function run (clock: VirtualClock, ms: number): Promise<void> {
  for (let i = 0; i < ms; i++) {
    clock.advance(1)
    await settle()
  }
}

export interface Seen { at: number, e: MembershipEvent }

/** "previous->state" of every change event about `peer`, in order. */
export function changes (seen: Seen[], peer: string): string[] {
  return seen.flatMap(({ e }) => e.type === 'change' && e.member.peerId === peer ? [`${e.previous}->${e.member.state}`] : [])
}


/** A membership on a stub transport whose heartbeat handler the test calls directly. */
export function harness (init: Partial<MembershipInit> = {}, parts: Partial<Transport> = {}): {
  clock: VirtualClock
  m: Membership
  seen: Seen[]
  published: Uint8Array[]
  feed: (from: string, hb?: Partial<Heartbeat>) => Verdict
  feedRaw: (from: string, bytes: Uint8Array) => Verdict
  subscribed: () => boolean
  pinging: () => RequestHandler | undefined
} {
  const clock = new VirtualClock(T0)
  let handler: MessageHandler | undefined
  let ping: RequestHandler | undefined
  const published: Uint8Array[] = []
  const transport = stubTransport('self', {
    publish: (_topic, data) => { published.push(data) },
    subscribe: (_topic, h) => { handler = h },
    unsubscribe: () => { handler = undefined },
    handle: (_p, h) => { ping = h },
    unhandle: () => { ping = undefined },
    ...parts
  })
  const m = createMembership({ transport, clock, topic: TOPIC, self: { incarnation: 1, region: 'eu' }, ...FAST, ...QUIET, ...init })
  const seen: Seen[] = []
  // Lifecycle events only: policy announcements have their own test.
  m.on(e => { if (e.type !== 'policy') seen.push({ at: clock.now(), e }) })
  m.start()
  const feedRaw = (from: string, bytes: Uint8Array): Verdict => {
    if (handler === undefined) throw new Error('the membership is not subscribed')
    return handler(bytes, from)
  }
  return {
    clock,
    m,
    seen,
    published,
    feed: (from, hb = {}) => feedRaw(from, encodeHeartbeat({ ...HB, sentAtMs: clock.now(), ...hb })),
    feedRaw,
    subscribed: () => handler !== undefined,
    pinging: () => ping
  }
}

/** Heartbeats a decoder must refuse, with why. */
export const MALFORMED: Array<[string, Uint8Array]> = [
  ['version 2', encode([2, 1, 'eu', 1, 0, T0])],
  ['version 0', encode([0, 1, 'eu', 1, 0, T0])],
  ['5 fields', encode([1, 1, 'eu', 1, 0])],
  ['7 fields', encode([1, 1, 'eu', 1, 0, T0, 0])],
  ['a map', encode({ v: 1, incarnation: 1 })],
  ['a string', encode('heartbeat')],
  ['negative incarnation', encode([1, -1, 'eu', 1, 0, T0])],
  ['fractional incarnation', encode([1, 1.5, 'eu', 1, 0, T0])],
  ['incarnation as text', encode([1, '1', 'eu', 1, 0, T0])],
  ['incarnation 2^53', encode([1, 2 ** 53, 'eu', 1, 0, T0])],
  ['empty region', encode([1, 1, '', 1, 0, T0])],
  ['65-char region', encode([1, 1, 'r'.repeat(65), 1, 0, T0])],
  ['numeric region', encode([1, 1, 5, 1, 0, T0])],
  ['region that is not a topic name', encode([1, 1, 'eu west/1', 1, 0, T0])],
  ['zero weight', encode([1, 1, 'eu', 0, 0, T0])],
  ['negative weight', encode([1, 1, 'eu', -1, 0, T0])],
  ['NaN weight', encode([1, 1, 'eu', NaN, 0, T0])],
  ['infinite weight', encode([1, 1, 'eu', Infinity, 0, T0])],
  ['weight over 1e6', encode([1, 1, 'eu', 1e6 + 1, 0, T0])],
  ['weight as text', encode([1, 1, 'eu', '1', 0, T0])],
  ['negative policy version', encode([1, 1, 'eu', 1, -1, T0])],
  ['fractional policy version', encode([1, 1, 'eu', 1, 0.5, T0])],
  ['null policy version', encode([1, 1, 'eu', 1, null, T0])],
  ['negative sentAt', encode([1, 1, 'eu', 1, 0, -1])],
  ['NaN sentAt', encode([1, 1, 'eu', 1, 0, NaN])],
  ['infinite sentAt', encode([1, 1, 'eu', 1, 0, Infinity])],
  ['sentAt as text', encode([1, 1, 'eu', 1, 0, 'now'])],
  ['8 fields whose last is not true', encode([1, 1, 'eu', 1, 0, T0, null, 1])],
  ['goodbye flag false', encode([1, 1, 'eu', 1, 0, T0, null, false])],
  ['9 fields', encode([1, 1, 'eu', 1, 0, T0, null, true, true])],
  ['trailing byte', Uint8Array.from([...encodeHeartbeat(HB), 0])],
  ['truncated', encodeHeartbeat(HB).slice(0, 8)],
  ['invalid msgpack', Uint8Array.from([0xc1])],
  ['empty', new Uint8Array(0)],
  ['over 512 bytes', new Uint8Array(513).fill(0x90)]
]

export const validHeartbeat: fc.Arbitrary<Heartbeat> = fc.record({
  incarnation: fc.oneof(fc.nat(1000), fc.maxSafeNat()),
  // Regions name topics: 1-64 of letters, digits, "_", "." or "-", starting with a letter or digit.
  region: fc.tuple(fc.constantFrom(...'abcXYZ019'), fc.string({ unit: fc.constantFrom(...'abcXYZ019_.-'), maxLength: 63 })).map(([a, b]) => a + b),
  weight: fc.oneof(fc.integer({ min: 1, max: 1e6 }), fc.double({ min: 1e-9, max: 1e6, noNaN: true })),
  policyVersion: fc.oneof(fc.nat(100), fc.maxSafeNat()),
  sentAtMs: fc.oneof(fc.constant(0), fc.maxSafeNat(), fc.double({ min: 0, max: 1e15, noNaN: true }))
})

export function assertValidHeartbeat (h: Heartbeat): void {
  expect(Number.isSafeInteger(h.incarnation) && h.incarnation >= 0).toBe(true)
  expect(typeof h.region === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(h.region)).toBe(true)
  expect(h.weight > 0 && h.weight <= 1e6).toBe(true)
  expect(Number.isSafeInteger(h.policyVersion) && h.policyVersion >= 0).toBe(true)
  expect(Number.isFinite(h.sentAtMs) && h.sentAtMs >= 0).toBe(true)
  if (h.counterSeq !== undefined) expect(Number.isSafeInteger(h.counterSeq) && h.counterSeq >= 0).toBe(true)
}

