import type { Clock } from '../membership/clock.js'
import { encodeDelta, type CounterGroup } from './codec.js'
import { decodeRepairRequest, encodeRepairAnswer, type RepairLimits } from './repair-codec.js'

/** The responder's part of RepairStats. */
export interface ResponderStats {
  served: number
  servedSnapshots: number
  snapshotsTruncated: number
}

export interface RepairResponderInit {
  clock: Clock
  incarnation: number
  /** @default 1024 */
  ringMessages?: number
  /** @default 4 MiB */
  ringBytes?: number
  maxMessageBytes: number
  /** This replica's own live entries. */
  snapshot: () => CounterGroup[]
  /** @default 1000 */
  snapshotIntervalMs?: number
  /** Requesters whose last snapshot time is remembered at most. */
  maxRequesters: number
  limits: RepairLimits
  stats: ResponderStats
}

export interface RepairResponder {
  /** Seq of the last message recorded (0 before any). */
  readonly lastSeq: number
  /** Records a published message (seqs must follow each other). */
  sent(seq: number, bytes: Uint8Array): void
  /** Answers one repair request of peer `from` (throws: the requester gets an error). */
  serve(data: Uint8Array, from: string): Uint8Array
}

/** Snapshot answers per snapshotIntervalMs at most, all requesters together. */
const MAX_SNAPSHOTS_PER_INTERVAL = 8
/** Room left in an answer for its envelope. */
const ANSWER_OVERHEAD = 1024

/**
 * The sender's side of gap repair: a ring of its recent counter messages (seqs
 * [first, last], all present, bounded in count and bytes) answered byte for byte, and
 * past the ring a snapshot of its own live entries, rate limited per requester and in all.
 */
export function createRepairResponder (init: RepairResponderInit): RepairResponder {
  const { clock, incarnation, limits, stats } = init
  const ringMessages = Math.max(1, Math.min(init.ringMessages ?? 1024, limits.maxMessages))
  const ringBytes = Math.min(init.ringBytes ?? 4 << 20, limits.maxAnswerBytes - ANSWER_OVERHEAD)
  const snapshotIntervalMs = init.snapshotIntervalMs ?? 1000
  const maxRequesters = init.maxRequesters
  const snapshotServedAt = new Map<string, number>()
  /** When the snapshot answers of the last snapshotIntervalMs were served (all requesters). */
  const recentSnapshots: number[] = []

  // Seqs [first, last] are all present, slot seq % ringMessages.
  const ring: Array<Uint8Array | undefined> = new Array(ringMessages).fill(undefined)
  let first = 1
  let last = 0
  let bytesHeld = 0
  const evictOldest = (): void => {
    const slot = first % ringMessages
    bytesHeld -= (ring[slot] as Uint8Array).byteLength
    ring[slot] = undefined
    first++
  }

  const serve = (data: Uint8Array, from: string): Uint8Array => {
    const req = decodeRepairRequest(data, limits)
    if (req === undefined) throw new Error('malformed repair request')
    stats.served++
    if (req.incarnation !== incarnation) return encodeRepairAnswer({ incarnation, lastSeq: last, snapshot: false, messages: [] })
    const messages: Uint8Array[] = []
    let fromRing = true
    for (let i = 0; i < req.ranges.length && fromRing; i += 2) {
      const to = Math.min(req.ranges[i + 1], last)
      if (req.ranges[i] > to) continue
      if (req.ranges[i] < first) fromRing = false
      else for (let seq = req.ranges[i]; seq <= to; seq++) messages.push(ring[seq % ringMessages] as Uint8Array)
    }
    if (fromRing) return encodeRepairAnswer({ incarnation, lastSeq: last, snapshot: false, messages })
    const now = clock.now()
    if (now - (snapshotServedAt.get(from) ?? -Infinity) < snapshotIntervalMs) throw new Error('repair snapshot asked too often')
    // And across requesters: a flood of peers cannot make this node walk its keys at will.
    while (recentSnapshots.length > 0 && now - recentSnapshots[0] >= snapshotIntervalMs) recentSnapshots.shift()
    if (recentSnapshots.length >= MAX_SNAPSHOTS_PER_INTERVAL) throw new Error('repair snapshots busy')
    recentSnapshots.push(now)
    if (snapshotServedAt.size >= maxRequesters) snapshotServedAt.delete(snapshotServedAt.keys().next().value as string)
    snapshotServedAt.delete(from)
    snapshotServedAt.set(from, now)
    stats.servedSnapshots++
    const parts = encodeDelta({ incarnation, seq: Math.max(1, last), sentAtMs: now, groups: init.snapshot() }, init.maxMessageBytes)
    const out: Uint8Array[] = []
    let size = 0
    for (const p of parts) {
      if (out.length >= limits.maxMessages || size + p.byteLength + 8 > limits.maxAnswerBytes - ANSWER_OVERHEAD) {
        stats.snapshotsTruncated++
        break
      }
      out.push(p)
      size += p.byteLength + 8
    }
    return encodeRepairAnswer({ incarnation, lastSeq: last, snapshot: true, messages: out })
  }

  return {
    get lastSeq () { return last },
    serve,
    sent (seq, bytes) {
      if (seq !== last + 1) throw new RangeError(`repair: sent seq ${seq} after ${last}`)
      last = seq
      const slot = seq % ringMessages
      if (ring[slot] !== undefined) evictOldest()
      ring[slot] = bytes
      bytesHeld += bytes.byteLength
      while (bytesHeld > ringBytes && first < last) evictOldest()
    }
  }
}
