import { aheadBeyond, type Clock } from '../membership/clock.js'
import { DEFAULT_CODEC_LIMITS, decodeDelta, encodeDelta, encodeMarker, type CodecLimits, type CounterGroup, type DecodeResult, type DeltaMessage } from './codec.js'
import { createRepair, type RepairOptions, type RepairStats } from './repair.js'
import type { Transport, Verdict } from './transport.js'

/** The replicated state a replicator moves: implemented by the limiter. */
export interface ReplicaState {
  /** Incarnation of the local replica (grows on every start). */
  readonly incarnation: number
  /** Drains the local replica's changes since the last call, as absolute counts. */
  collectDelta(): CounterGroup[]
  /** The local replica's live counts of the next rotating `fraction` of its keys. */
  collectRepublish(fraction: number): CounterGroup[]
  /** Every live count of the local replica (answers to repairs of seqs past the ring). */
  collectOwn(): CounterGroup[]
  /** Merges a decoded, validated message from peer `from`. */
  applyDelta(from: string, msg: DeltaMessage): Verdict
}

export interface ReplicatorInit {
  transport: Transport
  clock: Clock
  state: ReplicaState
  /**
   * Topic counters are published on.
   * @default "meshlimit/counters"
   */
  topic?: string
  /**
   * Interval between flushes, in ms.
   * @default 50
   */
  flushIntervalMs?: number
  /**
   * Messages larger than this are split.
   * @default 65536
   */
  maxMessageBytes?: number
  /**
   * Every live entry of this node is re-published once per this period (in slices at
   * most once a second): a slow safety net behind gap repair (a lost message is
   * normally requested within a few flush intervals); 0 disables.
   * @default 30000
   */
  republishIntervalMs?: number
  /**
   * Gap repair tuning (gossip/repair.ts), or false to turn it off (messages still carry seqs).
   * @default {}
   */
  repair?: RepairOptions | false
  /**
   * Request/response protocol of gap repair.
   * @default "/meshlimit/repair/1/" + topic
   */
  repairProtocol?: string
  /**
   * Messages stamped further than this ahead of the local clock are rejected.
   * @default 1000
   */
  maxClockSkewMs?: number
  /**
   * Decoder of received messages; must behave as decodeDelta. The chaos simulator passes
   * a memoized one, so the hundred receivers of one message decode it once.
   * @default decodeDelta
   */
  decode?: (data: Uint8Array, limits: CodecLimits) => DecodeResult
}

export interface ReplicatorStats {
  flushes: number
  /** All counter messages, bytes and entries sent (changes and re-publication). */
  messagesSent: number
  bytesSent: number
  entriesSent: number
  /** The part of the above that re-published unchanged live entries. */
  republishMessages: number
  republishBytes: number
  republishEntries: number
  /** Idle markers sent (no counts; they announce the last seq after a burst). */
  markersSent: number
  messagesReceived: number
  messagesRejected: number
  /** Reasons of the last rejections (bounded), newest last; rejected repair answers included. */
  lastRejections: string[]
  /** Gap repair (undefined when turned off). */
  repair: RepairStats | undefined
}

export interface Replicator {
  /** Publishes every pending change now; returns the number of messages sent. */
  flush(): number
  /** Starts the flush timer and the subscription. */
  start(): void
  /** Flushes the last changes, then stops the timer and unsubscribes. */
  stop(): void
  /** Seq of the last counter message published by this incarnation (0 before any); heartbeats carry it. */
  readonly lastSeq: number
  /** Peer `from` announced (in a heartbeat) that `incarnation` published up to `lastSeq`. */
  announced(from: string, incarnation: number, lastSeq: number): void
  /** Drops the gap tracking of `from` (dead or departed). */
  forget(from: string): void
  readonly stats: ReplicatorStats
}

const MAX_REASONS = 16
/**
 * After a flush with changes, the following idle flushes number 1, 2, 4 and 8 send an
 * idle marker (the last seq, no counts): a receiver that lost the burst's last message
 * sees the gap within a flush or two instead of at the next heartbeat. Four markers
 * all lost is rare (0.2^4 at 20% loss); heartbeats still announce the seq every second.
 */
const MARKER_AT = new Set([1, 2, 4, 8])
/** Re-publication runs at most this often; each tick re-sends its share of the live entries. */
const REPUBLISH_TICK_MS = 1000

/**
 * Flushes the local replica's changes every interval as msgpack messages (one per
 * flush, split only when larger than maxMessageBytes, none when nothing changed), each
 * numbered with the next seq of this incarnation; validates then merges what peers
 * publish, and requests the messages it missed (gossip/repair.ts). A rotating share of
 * the live entries is re-published on a slow tick as a last safety net.
 */
export function createReplicator (init: ReplicatorInit): Replicator {
  const topic = init.topic ?? 'meshlimit/counters'
  const flushIntervalMs = init.flushIntervalMs ?? 50
  const maxMessageBytes = init.maxMessageBytes ?? 65536
  const maxClockSkewMs = init.maxClockSkewMs ?? 1000
  const republishIntervalMs = init.republishIntervalMs ?? 30_000
  const republishTickMs = Math.min(REPUBLISH_TICK_MS, republishIntervalMs)
  const republishFraction = republishIntervalMs > 0 ? republishTickMs / republishIntervalMs : 0
  if (!(flushIntervalMs > 0)) throw new RangeError(`flushIntervalMs must be > 0, got ${flushIntervalMs}`)
  const limits: CodecLimits = { ...DEFAULT_CODEC_LIMITS, maxMessageBytes }
  const { transport, clock, state } = init
  const decode = init.decode ?? decodeDelta
  const stats: ReplicatorStats = { flushes: 0, messagesSent: 0, bytesSent: 0, entriesSent: 0, republishMessages: 0, republishBytes: 0, republishEntries: 0, markersSent: 0, messagesReceived: 0, messagesRejected: 0, lastRejections: [], repair: undefined }
  let cancel: (() => void) | undefined
  let cancelRepublish: (() => void) | undefined
  let running = false
  /** Seq of the last message sent (the repair ring, fed by every send, holds the same). */
  let seq = 0
  /** Flushes without changes since the last one with changes (-1 before any change). */
  let idleFlushes = -1

  const note = (reason: string): void => {
    stats.lastRejections.push(reason)
    if (stats.lastRejections.length > MAX_REASONS) stats.lastRejections.shift()
  }
  const reject = (reason: string): Verdict => {
    stats.messagesRejected++
    note(reason)
    return 'reject'
  }
  const future = (msg: DeltaMessage): string | undefined => {
    const ahead = aheadBeyond(clock, msg.sentAtMs, maxClockSkewMs)
    return ahead > 0 ? `stamped ${Math.round(ahead)} ms in the future` : undefined
  }

  const repair = init.repair === false
    ? undefined
    : createRepair({
      graceMs: Math.max(1, flushIntervalMs / 2),
      ...init.repair,
      transport,
      clock,
      protocol: init.repairProtocol ?? `/meshlimit/repair/1/${topic}`,
      incarnation: state.incarnation,
      maxMessageBytes,
      codecLimits: limits,
      decode,
      snapshot: () => state.collectOwn(),
      check: future,
      apply: (from, msg) => state.applyDelta(from, msg),
      rejected: note
    })
  stats.repair = repair?.stats

  const receive = (data: Uint8Array, from: string): Verdict => {
    stats.messagesReceived++
    const r = decode(data, limits)
    if (!r.ok) return reject(`from ${from}: ${r.reason}`)
    const why = future(r.msg)
    if (why !== undefined) return reject(`from ${from}: ${why}`)
    if (r.msg.groups.length === 0) {
      // An idle marker: nothing to merge; it tells which seq the sender reached.
      repair?.announced(from, r.msg.incarnation, r.msg.seq ?? 0, true)
      return 'accept'
    }
    const verdict = state.applyDelta(from, r.msg)
    if (verdict === 'accept') repair?.received(from, r.msg.incarnation, r.msg.seq ?? 0)
    return verdict
  }

  /** Encodes and publishes groups; returns [messages, bytes, entries]. */
  const send = (groups: CounterGroup[]): [number, number, number] => {
    if (groups.length === 0) return [0, 0, 0]
    const first = seq + 1
    const messages = encodeDelta({ incarnation: state.incarnation, seq: first, sentAtMs: clock.now(), groups }, maxMessageBytes)
    let bytes = 0
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]
      // Into the ring before it leaves: a receiver may ask for it as soon as it sees a successor.
      repair?.sent(first + i, m)
      transport.publish(topic, m)
      bytes += m.byteLength
    }
    seq = first + messages.length - 1
    let entries = 0
    for (const g of groups) entries += g.entries.length / 3
    stats.messagesSent += messages.length
    stats.bytesSent += bytes
    stats.entriesSent += entries
    return [messages.length, bytes, entries]
  }

  const flush = (): number => {
    stats.flushes++
    const sent = send(state.collectDelta())[0]
    if (sent > 0) idleFlushes = 0
    else if (idleFlushes >= 0 && repair !== undefined) {
      idleFlushes++
      if (MARKER_AT.has(idleFlushes)) {
        transport.publish(topic, encodeMarker(state.incarnation, seq, clock.now()))
        stats.markersSent++
      }
    }
    return sent
  }

  const republish = (): void => {
    const [messages, bytes, entries] = send(state.collectRepublish(republishFraction))
    stats.republishMessages += messages
    stats.republishBytes += bytes
    stats.republishEntries += entries
  }

  const tick = (): void => {
    if (!running) return
    flush()
    repair?.check()
    cancel = clock.setTimer(flushIntervalMs, tick)
  }

  const republishTick = (): void => {
    if (!running) return
    republish()
    cancelRepublish = clock.setTimer(republishTickMs, republishTick)
  }

  return {
    stats,
    flush,
    get lastSeq () { return seq },
    announced (from, incarnation, lastSeq) { repair?.announced(from, incarnation, lastSeq) },
    forget (from) { repair?.forget(from) },
    start () {
      if (running) return
      running = true
      repair?.start()
      transport.subscribe(topic, receive)
      cancel = clock.setTimer(flushIntervalMs, tick)
      if (republishFraction > 0) cancelRepublish = clock.setTimer(republishTickMs, republishTick)
    },
    stop () {
      if (!running) return
      running = false
      cancel?.()
      cancelRepublish?.()
      flush()
      transport.unsubscribe(topic)
      repair?.stop()
    }
  }
}
