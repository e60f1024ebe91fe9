import { Decoder, Encoder } from '@msgpack/msgpack'
import type { MessageHandler, Transport, Verdict } from '../gossip/transport.js'
import type { Clock } from './clock.js'
import { seededRandom, type Random } from './random.js'

/**
 * Who is in the mesh. Every node publishes a heartbeat on the membership topic and
 * tracks everyone else's: alive while heartbeats arrive, suspect after
 * `suspectAfterMs` without one, dead after `deadAfterMs`, forgotten after
 * `forgetAfterMs` more. A heartbeat with a higher incarnation means the peer restarted.
 * A node that stops gracefully (`leave()`) says goodbye: peers forget it at once
 * instead of holding it as unreachable until forgotten (which would keep partition
 * modes engaged for a member that will not come back).
 * Clock skew is estimated per peer NTP-style over a request/response ping (offset =
 * peer time - midpoint of our send and receive times; the sample with the smallest
 * round trip wins), with an event when it passes `skewWarnMs`.
 *
 * Transport-agnostic: it runs over the Transport seam, so the simulator runs the same
 * code as a libp2p node.
 */
export type MemberState = 'alive' | 'suspect' | 'dead'

export interface MemberInfo {
  readonly peerId: string
  readonly incarnation: number
  readonly region: string
  readonly weight: number
  readonly policyVersion: number
  /** Hash of the policy bundle the member runs (undefined while it runs its fallback). */
  readonly policyHash: string | undefined
  readonly state: MemberState
  /** Local clock time of the last heartbeat. */
  readonly lastSeenMs: number
  /** Estimated peer clock minus ours, in ms (undefined until probed). */
  readonly skewMs: number | undefined
  /** Round trip of the best skew probe, in ms. */
  readonly rttMs: number | undefined
}

/** What this node says about itself in heartbeats. */
export interface SelfInfo {
  incarnation: number
  region: string
  /**
   * Relative capacity of this node (share computations weigh nodes by it).
   * @default 1
   */
  weight?: number
}

export interface MembershipInit {
  transport: Transport
  clock: Clock
  /** Heartbeat topic (topicsOf(mesh).membership). */
  topic: string
  self: SelfInfo
  /** The policy version this node runs, read at every heartbeat. @default () => 0 */
  policyVersion?: () => number
  /** The hash of the policy bundle this node runs, read at every heartbeat. @default () => undefined */
  policyHash?: () => string | undefined
  /**
   * Seq of this node's last counter message, read at every heartbeat: peers that missed
   * that message see the gap even when nothing follows it (gossip/repair.ts).
   * @default none (heartbeats carry no seq)
   */
  counterSeq?: () => number
  /** Called for every accepted heartbeat that carries a counter seq. @default none */
  onCounterSeq?: (member: MemberInfo, seq: number) => void
  /** @default 1000 */
  heartbeatIntervalMs?: number
  /** No heartbeat for this long: suspect. @default 3 x heartbeatIntervalMs */
  suspectAfterMs?: number
  /** No heartbeat for this long: dead. @default 10 x heartbeatIntervalMs */
  deadAfterMs?: number
  /** Dead for this long: forgotten. @default 60 x heartbeatIntervalMs */
  forgetAfterMs?: number
  /** Interval between skew probes (each probes up to 3 members). @default 10000 */
  skewProbeIntervalMs?: number
  /** Skew beyond this raises a 'skew' event. @default 250 */
  skewWarnMs?: number
  /** Most members tracked; heartbeats of further peers are ignored. @default 10000 */
  maxMembers?: number
  /** Randomness for probe targets and timer jitter. @default seededRandom(incarnation) */
  random?: Random
  /** Request/response protocol of skew probes. @default "/meshlimit/ping/1" */
  pingProtocol?: string
}

export type MembershipEvent =
  | { type: 'change', member: MemberInfo, previous: MemberState | 'new' | 'restarted' }
  | { type: 'skew', member: MemberInfo }
  /** A member announced another policy (version, hash) than before. */
  | { type: 'policy', member: MemberInfo }
  /** A member said goodbye (a graceful stop): it is forgotten at once, not held as dead. */
  | { type: 'left', member: MemberInfo }

export interface Membership {
  start(): void
  /** Stops silently, as a crash would look to peers. */
  stop(): void
  /** Says goodbye to peers (one message on the topic), then stops. */
  leave(): void
  /** Every tracked member (dead ones until forgotten), excluding this node. */
  members(): MemberInfo[]
  member(peerId: string): MemberInfo | undefined
  /**
   * Calls `fn` with every tracked member, like members() without a copy of each: the
   * object passed is live, so read it during the call only.
   */
  forEachMember(fn: (m: MemberInfo) => void): void
  /** Members currently alive, optionally only in `region`, excluding this node. */
  aliveCount(region?: string): number
  /** Subscribes to events; returns the unsubscribe function. */
  on(listener: (e: MembershipEvent) => void): () => void
  /** Heartbeats received, rejected, sent; probes sent and failed. */
  readonly stats: MembershipStats
}

export interface MembershipStats {
  heartbeatsSent: number
  heartbeatsReceived: number
  heartbeatsRejected: number
  /** Goodbyes heard from members that left gracefully. */
  goodbyesReceived: number
  probesSent: number
  probesFailed: number
}

const WIRE_VERSION = 1
const MAX_REGION_LENGTH = 64
const PROBE_TIMEOUT_MS = 2000
const PROBES_PER_ROUND = 3

interface Mutable {
  peerId: string
  incarnation: number
  region: string
  weight: number
  policyVersion: number
  policyHash: string | undefined
  state: MemberState
  lastSeenMs: number
  skewMs: number | undefined
  rttMs: number | undefined
  /** Recent probe samples, newest last: [rttMs, offsetMs] pairs (at most SKEW_SAMPLES). */
  samples: Array<[number, number]>
}

/** Probe samples kept per member: the estimate is the offset of the fastest of them. */
const SKEW_SAMPLES = 8
const REGION = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

const POLICY_HASH = /^[0-9a-f]{16,128}$/

// One decoder and encoder per message kind: msgpack's decode()/encode() build a new one
// (with its buffers) per call, and every node decodes every heartbeat of the mesh.
const heartbeatDecoder = new Decoder({ maxStrLength: 256, maxArrayLength: 16, maxMapLength: 0, maxBinLength: 0, maxExtLength: 0 })
const pingDecoder = new Decoder({ maxArrayLength: 4, maxStrLength: 0, maxMapLength: 0, maxBinLength: 0, maxExtLength: 0 })
const encoder = new Encoder()
const encode = (value: unknown): Uint8Array => encoder.encode(value)

/** What a heartbeat carries; `leaving` marks a goodbye. */
export interface HeartbeatMessage {
  incarnation: number
  region: string
  weight: number
  policyVersion: number
  sentAtMs: number
  policyHash?: string
  leaving?: boolean
  /** Seq of the sender's last counter message (absent from older nodes). */
  counterSeq?: number
}

/**
 * Decodes a heartbeat; undefined when malformed. Never throws. The seventh element (the
 * policy bundle's hash, or null) is optional, so nodes that do not send it still parse;
 * an eighth, `true`, marks a goodbye (the sender stops gracefully); a ninth, the seq of
 * the sender's last counter message, comes with an eighth that is `true` or `false`.
 */
export function decodeHeartbeat (bytes: Uint8Array): HeartbeatMessage | undefined {
  if (bytes.byteLength > 512) return undefined
  let raw: unknown
  try {
    raw = heartbeatDecoder.decode(bytes)
  } catch {
    return undefined
  }
  if (!Array.isArray(raw) || raw.length < 6 || raw.length > 9 || raw[0] !== WIRE_VERSION) return undefined
  const [, incarnation, region, weight, policyVersion, sentAtMs, policyHash, leaving, counterSeq] = raw as unknown[]
  if (raw.length === 8 && leaving !== true) return undefined
  if (raw.length === 9 && (typeof leaving !== 'boolean' || typeof counterSeq !== 'number' || !Number.isSafeInteger(counterSeq) || counterSeq < 0)) return undefined
  if (policyHash !== undefined && policyHash !== null && (typeof policyHash !== 'string' || !POLICY_HASH.test(policyHash))) return undefined
  if (typeof incarnation !== 'number' || !Number.isSafeInteger(incarnation) || incarnation < 0) return undefined
  // Regions name topics, so they follow topic-name rules.
  if (typeof region !== 'string' || region.length > MAX_REGION_LENGTH || !REGION.test(region)) return undefined
  if (typeof weight !== 'number' || !(weight > 0) || weight > 1e6) return undefined
  if (typeof policyVersion !== 'number' || !Number.isSafeInteger(policyVersion) || policyVersion < 0) return undefined
  if (typeof sentAtMs !== 'number' || !Number.isFinite(sentAtMs) || sentAtMs < 0) return undefined
  const h: HeartbeatMessage = { incarnation, region, weight, policyVersion, sentAtMs }
  if (typeof policyHash === 'string') h.policyHash = policyHash
  if (leaving === true) h.leaving = true
  if (typeof counterSeq === 'number') h.counterSeq = counterSeq
  return h
}

/** Heartbeats whose decoding is remembered (more than are in flight at once in a simulated fleet). */
const REMEMBERED = 256
const decoded = new Map<Uint8Array, { copy: Uint8Array, h: HeartbeatMessage | undefined }>()

/**
 * decodeHeartbeat shared by the members that receive the same byte array in one process
 * (the simulator hands every member the same bytes): a hit is checked byte for byte
 * against a copy, so bytes changed in place are decoded again. The result is read only.
 */
function decodeShared (bytes: Uint8Array): HeartbeatMessage | undefined {
  const hit = decoded.get(bytes)
  if (hit !== undefined && sameBytes(hit.copy, bytes)) return hit.h
  const h = decodeHeartbeat(bytes)
  if (bytes.byteLength <= 512) {
    if (hit === undefined && decoded.size >= REMEMBERED) decoded.delete(decoded.keys().next().value as Uint8Array)
    decoded.set(bytes, { copy: bytes.slice(), h })
  }
  return h
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

export function encodeHeartbeat (h: HeartbeatMessage): Uint8Array {
  if (h.counterSeq !== undefined) return encode([WIRE_VERSION, h.incarnation, h.region, h.weight, h.policyVersion, h.sentAtMs, h.policyHash ?? null, h.leaving === true, h.counterSeq])
  if (h.leaving === true) return encode([WIRE_VERSION, h.incarnation, h.region, h.weight, h.policyVersion, h.sentAtMs, h.policyHash ?? null, true])
  return encode(h.policyHash === undefined
    ? [WIRE_VERSION, h.incarnation, h.region, h.weight, h.policyVersion, h.sentAtMs]
    : [WIRE_VERSION, h.incarnation, h.region, h.weight, h.policyVersion, h.sentAtMs, h.policyHash])
}

export function createMembership (init: MembershipInit): Membership {
  const { transport, clock, topic } = init
  const heartbeatIntervalMs = init.heartbeatIntervalMs ?? 1000
  const suspectAfterMs = init.suspectAfterMs ?? 3 * heartbeatIntervalMs
  const deadAfterMs = init.deadAfterMs ?? 10 * heartbeatIntervalMs
  const forgetAfterMs = init.forgetAfterMs ?? 60 * heartbeatIntervalMs
  const skewProbeIntervalMs = init.skewProbeIntervalMs ?? 10_000
  const skewWarnMs = init.skewWarnMs ?? 250
  const maxMembers = init.maxMembers ?? 10_000
  const pingProtocol = init.pingProtocol ?? '/meshlimit/ping/1'
  const random = init.random ?? seededRandom(init.self.incarnation)
  const weight = init.self.weight ?? 1
  if (!(heartbeatIntervalMs > 0) || !(suspectAfterMs > 0) || !(deadAfterMs > suspectAfterMs)) {
    throw new RangeError('membership: need heartbeatIntervalMs > 0 and 0 < suspectAfterMs < deadAfterMs')
  }
  const members = new Map<string, Mutable>()
  const listeners = new Set<(e: MembershipEvent) => void>()
  const stats: MembershipStats = { heartbeatsSent: 0, heartbeatsReceived: 0, heartbeatsRejected: 0, goodbyesReceived: 0, probesSent: 0, probesFailed: 0 }
  /**
   * Members that said goodbye: peer id -> [incarnation, when]. A heartbeat of that
   * incarnation or older relayed after the goodbye is ignored (it must not bring the
   * member back to hold it as unreachable); a newer incarnation is a restart. Kept for
   * forgetAfterMs, at most maxMembers.
   */
  const departed = new Map<string, [number, number]>()
  const cancels: Array<() => void> = []
  let running = false
  let generation = 0

  const emit = (e: MembershipEvent): void => {
    for (const l of listeners) l(e)
  }
  const snapshot = (m: Mutable): MemberInfo => ({ peerId: m.peerId, incarnation: m.incarnation, region: m.region, weight: m.weight, policyVersion: m.policyVersion, policyHash: m.policyHash, state: m.state, lastSeenMs: m.lastSeenMs, skewMs: m.skewMs, rttMs: m.rttMs })

  const receive: MessageHandler = (data, from): Verdict => {
    const h = decodeShared(data)
    if (h === undefined) {
      stats.heartbeatsRejected++
      return 'reject'
    }
    stats.heartbeatsReceived++
    const now = clock.now()
    const gone = departed.get(from)
    if (gone !== undefined) {
      if (h.incarnation <= gone[0]) return 'ignore'
      departed.delete(from)
    }
    const m = members.get(from)
    if (h.leaving === true) {
      if (m !== undefined && h.incarnation < m.incarnation) return 'ignore'
      stats.goodbyesReceived++
      if (departed.size >= maxMembers) departed.delete(departed.keys().next().value as string)
      departed.set(from, [h.incarnation, now])
      if (m !== undefined) {
        members.delete(from)
        emit({ type: 'left', member: { ...snapshot(m), state: 'dead', lastSeenMs: now } })
      }
      return 'accept'
    }
    if (m === undefined) {
      if (members.size >= maxMembers) return 'ignore'
      const fresh: Mutable = { peerId: from, incarnation: h.incarnation, region: h.region, weight: h.weight, policyVersion: h.policyVersion, policyHash: h.policyHash, state: 'alive', lastSeenMs: now, skewMs: undefined, rttMs: undefined, samples: [] }
      members.set(from, fresh)
      emit({ type: 'change', member: snapshot(fresh), previous: 'new' })
      emit({ type: 'policy', member: snapshot(fresh) })
      if (h.counterSeq !== undefined) init.onCounterSeq?.(fresh, h.counterSeq)
      return 'accept'
    }
    // An older incarnation's heartbeat, relayed late: the peer has restarted since.
    if (h.incarnation < m.incarnation) return 'ignore'
    const restarted = h.incarnation > m.incarnation
    const previous = m.state
    const policyChanged = h.policyVersion !== m.policyVersion || h.policyHash !== m.policyHash
    m.incarnation = h.incarnation
    m.region = h.region
    m.weight = h.weight
    m.policyVersion = h.policyVersion
    m.policyHash = h.policyHash
    m.lastSeenMs = now
    m.state = 'alive'
    if (restarted) {
      m.skewMs = undefined
      m.rttMs = undefined
      m.samples = []
      emit({ type: 'change', member: snapshot(m), previous: 'restarted' })
    } else if (previous !== 'alive') {
      emit({ type: 'change', member: snapshot(m), previous })
    }
    if (policyChanged) emit({ type: 'policy', member: snapshot(m) })
    if (h.counterSeq !== undefined) init.onCounterSeq?.(m, h.counterSeq)
    return 'accept'
  }

  const heartbeat = (leaving = false): void => {
    transport.publish(topic, encodeHeartbeat({ incarnation: init.self.incarnation, region: init.self.region, weight, policyVersion: init.policyVersion?.() ?? 0, policyHash: init.policyHash?.(), sentAtMs: clock.now(), leaving, counterSeq: init.counterSeq?.() }))
    stats.heartbeatsSent++
  }

  const checkLiveness = (): void => {
    const now = clock.now()
    for (const [peer, [, at]] of departed) if (now - at >= forgetAfterMs) departed.delete(peer)
    for (const m of members.values()) {
      const silent = now - m.lastSeenMs
      // Forget once dead for forgetAfterMs, as documented: so a 'dead' event always comes first, whatever the options.
      if (m.state === 'dead' && silent >= deadAfterMs + forgetAfterMs) {
        members.delete(m.peerId)
        continue
      }
      const next: MemberState = silent >= deadAfterMs ? 'dead' : silent >= suspectAfterMs ? 'suspect' : 'alive'
      if (next !== m.state) {
        const previous = m.state
        m.state = next
        emit({ type: 'change', member: snapshot(m), previous })
      }
    }
  }

  const probe = async (m: Mutable): Promise<void> => {
    stats.probesSent++
    const t0 = clock.now()
    const incarnation = m.incarnation
    try {
      const answer = await transport.request(m.peerId, pingProtocol, encode([WIRE_VERSION, t0]), PROBE_TIMEOUT_MS)
      const t2 = clock.now()
      const raw: unknown = pingDecoder.decode(answer)
      if (!Array.isArray(raw) || raw[0] !== WIRE_VERSION || typeof raw[1] !== 'number' || !Number.isFinite(raw[1])) throw new Error('malformed ping answer')
      // An answer for a member that restarted or was forgotten meanwhile says nothing now.
      if (!running || members.get(m.peerId) !== m || m.incarnation !== incarnation) return
      const rtt = t2 - t0
      m.samples.push([rtt, raw[1] - (t0 + t2) / 2])
      if (m.samples.length > SKEW_SAMPLES) m.samples.shift()
      // The fastest recent sample has the least asymmetric delay in it; keeping only recent
      // ones lets a peer's clock step be seen instead of hiding behind one old fast sample.
      let best = m.samples[0]
      for (const x of m.samples) if (x[0] <= best[0]) best = x
      m.rttMs = best[0]
      m.skewMs = best[1]
      if (Math.abs(m.skewMs) > skewWarnMs) emit({ type: 'skew', member: snapshot(m) })
    } catch {
      stats.probesFailed++
    }
  }

  const probeRound = (): void => {
    const alive = [...members.values()].filter(m => m.state === 'alive')
    for (let n = 0; n < PROBES_PER_ROUND && alive.length > 0; n++) {
      const m = alive.splice(Math.floor(random() * alive.length), 1)[0]
      void probe(m)
    }
  }

  const every = (ms: number, fn: () => void, jitter: boolean): void => {
    let cancel: () => void = () => {}
    const gen = generation
    const tick = (): void => {
      if (!running) return
      fn()
      // fn's listeners may have stopped (and restarted) us: a stale loop must not re-arm.
      if (running && gen === generation) schedule()
    }
    const schedule = (): void => {
      // Jitter keeps a fleet started together from heartbeating in lockstep.
      const delay = jitter ? ms * (0.9 + 0.2 * random()) : ms
      cancel = clock.setTimer(delay, tick)
    }
    schedule()
    cancels.push(() => { cancel() })
  }

  const api: Membership = {
    stats,
    start () {
      if (running) return
      running = true
      transport.subscribe(topic, receive)
      transport.handle(pingProtocol, (data) => {
        let raw: unknown
        try {
          raw = pingDecoder.decode(data)
        } catch {
          throw new Error('malformed ping')
        }
        if (!Array.isArray(raw) || raw[0] !== WIRE_VERSION) throw new Error('malformed ping')
        return encode([WIRE_VERSION, clock.now()])
      })
      heartbeat()
      every(heartbeatIntervalMs, () => { heartbeat() }, true)
      every(Math.max(1, heartbeatIntervalMs / 2), checkLiveness, false)
      every(skewProbeIntervalMs, probeRound, true)
    },
    leave () {
      if (!running) return
      heartbeat(true)
      api.stop()
    },
    stop () {
      if (!running) return
      running = false
      generation++
      for (const c of cancels.splice(0)) c()
      transport.unsubscribe(topic)
      transport.unhandle(pingProtocol)
    },
    members: () => [...members.values()].map(snapshot),
    member: peerId => {
      const m = members.get(peerId)
      return m === undefined ? undefined : snapshot(m)
    },
    forEachMember (fn) {
      for (const m of members.values()) fn(m)
    },
    aliveCount (region) {
      let n = 0
      for (const m of members.values()) if (m.state === 'alive' && (region === undefined || m.region === region)) n++
      return n
    },
    on (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    }
  }
  return api
}
