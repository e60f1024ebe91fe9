import type { Clock } from '../membership/clock.js'
import { DEFAULT_CODEC_LIMITS, decodeDelta, encodeDelta, type CodecLimits, type CounterGroup, type DecodeResult, type DeltaMessage } from './codec.js'
import type { Transport, Verdict } from './transport.js'

/** The replicated state a replicator moves: implemented by the limiter. */
export interface ReplicaState {
  /** Incarnation of the local replica (grows on every start). */
  readonly incarnation: number
  /** Drains the local replica's changes since the last call, as absolute counts. */
  collectDelta(): CounterGroup[]
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
  messagesSent: number
  bytesSent: number
  entriesSent: number
  messagesReceived: number
  messagesRejected: number
  /** Reasons of the last rejections (bounded), newest last. */
  lastRejections: string[]
}

export interface Replicator {
  /** Publishes every pending change now; returns the number of messages sent. */
  flush(): number
  /** Starts the flush timer and the subscription. */
  start(): void
  /** Flushes the last changes, then stops the timer and unsubscribes. */
  stop(): void
  readonly stats: ReplicatorStats
}

const MAX_REASONS = 16

/**
 * Flushes the local replica's changes every interval as msgpack messages (one per
 * flush, split only when larger than maxMessageBytes, none when nothing changed),
 * and validates then merges what peers publish.
 */
export function createReplicator (init: ReplicatorInit): Replicator {
  const topic = init.topic ?? 'meshlimit/counters'
  const flushIntervalMs = init.flushIntervalMs ?? 50
  const maxMessageBytes = init.maxMessageBytes ?? 65536
  const maxClockSkewMs = init.maxClockSkewMs ?? 1000
  if (!(flushIntervalMs > 0)) throw new RangeError(`flushIntervalMs must be > 0, got ${flushIntervalMs}`)
  const limits: CodecLimits = { ...DEFAULT_CODEC_LIMITS, maxMessageBytes }
  const { transport, clock, state } = init
  const decode = init.decode ?? decodeDelta
  const stats: ReplicatorStats = { flushes: 0, messagesSent: 0, bytesSent: 0, entriesSent: 0, messagesReceived: 0, messagesRejected: 0, lastRejections: [] }
  let cancel: (() => void) | undefined
  let running = false

  const reject = (reason: string): Verdict => {
    stats.messagesRejected++
    stats.lastRejections.push(reason)
    if (stats.lastRejections.length > MAX_REASONS) stats.lastRejections.shift()
    return 'reject'
  }

  const receive = (data: Uint8Array, from: string): Verdict => {
    stats.messagesReceived++
    const r = decode(data, limits)
    if (!r.ok) return reject(`from ${from}: ${r.reason}`)
    if (r.msg.sentAtMs > clock.now() + maxClockSkewMs) return reject(`from ${from}: stamped ${Math.round(r.msg.sentAtMs - clock.now())} ms in the future`)
    return state.applyDelta(from, r.msg)
  }

  const flush = (): number => {
    stats.flushes++
    const groups = state.collectDelta()
    if (groups.length === 0) return 0
    const messages = encodeDelta({ incarnation: state.incarnation, sentAtMs: clock.now(), groups }, maxMessageBytes)
    for (const m of messages) {
      transport.publish(topic, m)
      stats.bytesSent += m.byteLength
    }
    for (const g of groups) stats.entriesSent += g.entries.length / 3
    stats.messagesSent += messages.length
    return messages.length
  }

  const tick = (): void => {
    if (!running) return
    flush()
    cancel = clock.setTimer(flushIntervalMs, tick)
  }

  return {
    stats,
    flush,
    start () {
      if (running) return
      running = true
      transport.subscribe(topic, receive)
      cancel = clock.setTimer(flushIntervalMs, tick)
    },
    stop () {
      if (!running) return
      running = false
      cancel?.()
      flush()
      transport.unsubscribe(topic)
    }
  }
}
