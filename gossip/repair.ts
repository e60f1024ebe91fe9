import type { Clock } from '../membership/clock.js'
import type { CodecLimits, CounterGroup, DecodeResult, DeltaMessage } from './codec.js'
import { DEFAULT_REPAIR_LIMITS, decodeRepairAnswer, encodeRepairRequest, type RepairLimits } from './repair-codec.js'
import { createRepairResponder } from './repair-ring.js'
import type { Transport, Verdict } from './transport.js'

/** Tuning of gap repair; every field has a default. */
export interface RepairOptions {
  /**
   * A gap still open this long after it was seen is repaired (a reordered message has
   * this long to arrive); two later messages past it trigger the request sooner.
   * @default 50 (the replicator passes half its flush interval)
   */
  graceMs?: number
  /**
   * Repair requests to one peer are at least this far apart.
   * @default 2 x graceMs
   */
  minRequestIntervalMs?: number
  /**
   * Timeout of one repair request before a peer's round trip is known, and the most a
   * measured one may set (srtt + 4 x rttvar, at least 25 ms); a lost request or answer
   * is retried after it. Consecutive failures to one peer double it and the request
   * spacing (up to x16). Short: repairs go to peers of the same region (counters are
   * gossiped per region).
   * @default 250
   */
  requestTimeoutMs?: number
  /**
   * Recent messages kept to answer repairs: at most this many...
   * @default 1024
   */
  ringMessages?: number
  /**
   * ...and at most this many bytes; older seqs are answered with a snapshot.
   * @default 4 MiB
   */
  ringBytes?: number
  /**
   * Senders tracked at most (the oldest tracked is dropped for a new one).
   * @default 1024
   */
  maxSenders?: number
  /**
   * A node started less than this long ago takes a sender's first seq as its baseline
   * (its start-up pull covered what came before); an older node asks for seqs from 1.
   * @default 10000
   */
  youngMs?: number
  /**
   * Repair requests in flight at most (across peers).
   * @default 16
   */
  maxInFlight?: number
  /**
   * Snapshot answers to one requester are at least this far apart, and at most 8 are
   * served per such interval in all (a snapshot costs the responder a pass over its
   * live keys); a refused requester retries later.
   * @default 1000
   */
  snapshotIntervalMs?: number
}

export interface RepairInit extends RepairOptions {
  transport: Transport
  clock: Clock
  /** Request/response protocol (one per counter topic). */
  protocol: string
  /** This replica's incarnation. */
  incarnation: number
  /** Largest counter message (snapshot answers are split to it). */
  maxMessageBytes: number
  codecLimits: CodecLimits
  decode: (data: Uint8Array, limits: CodecLimits) => DecodeResult
  /** This replica's own live entries (answers for seqs beyond the ring). */
  snapshot: () => CounterGroup[]
  /** Why a decoded message must not be merged (e.g. stamped in the future); undefined when fine. */
  check: (msg: DeltaMessage) => string | undefined
  /** Merges a validated message of peer `from`. */
  apply: (from: string, msg: DeltaMessage) => Verdict
  /** Called with the reason of every rejected answer. */
  rejected?: (reason: string) => void
  limits?: RepairLimits
}

export interface RepairStats {
  /** Gaps seen (a sender's seq jumped, or a heartbeat announced seqs not received). */
  gaps: number
  /** Repair attempts (a retry after a failure sends two copies, counted once here)... */
  requests: number
  /** ...the extra copies of those retries... */
  hedgedCopies: number
  /** ...and the attempts of which no copy was answered. */
  requestsFailed: number
  answersRejected: number
  /** Lost messages merged from ring answers. */
  messagesRepaired: number
  /** Snapshot answers merged (the gap had left the responder's ring). */
  snapshotsMerged: number
  served: number
  servedSnapshots: number
  /** Snapshot answers cut at the answer size bound (the rest waits for re-publication). */
  snapshotsTruncated: number
  /** Senders tracked now (at most maxSenders; dead and departed members are dropped). */
  senders: number
}

export interface Repair {
  /** Seq of the last message recorded with sent() (0 before any). */
  readonly lastSeq: number
  /** Records a published message, to answer repairs of it. */
  sent(seq: number, bytes: Uint8Array): void
  /** A message (incarnation, seq) of peer `from` was merged. */
  received(from: string, incarnation: number, seq: number): void
  /**
   * Peer `from` says its incarnation published up to `lastSeq` (heartbeats, idle
   * markers): reveals a trailing loss. `overdue`: the announcement left a flush interval
   * or more after that message (a marker), so a gap it reveals is due without grace.
   */
  announced(from: string, incarnation: number, lastSeq: number, overdue?: boolean): void
  /** Drops what is tracked about `from` (dead or departed). */
  forget(from: string): void
  /** Requests the gaps that are due; called on every flush tick. */
  check(): void
  start(): void
  stop(): void
  /** Senders tracked now. */
  readonly senders: number
  readonly stats: RepairStats
}

interface Sender {
  peer: string
  incarnation: number
  /** Every seq up to this one was received or repaired. */
  hw: number
  /** Highest seq known to exist (received or announced). */
  top: number
  /** Seqs received above hw (only within MAX_ABOVE of it). */
  above: Set<number>
  /** When the current gap opened; -1 when there is none. */
  gapSince: number
  nextRequestAt: number
  inFlight: boolean
  /** Attempts failed in a row (timeout, unreachable). */
  failures: number
  /** Smoothed round trip of answered requests and its variation, in ms (TCP-style); -1 before the first. */
  srtt: number
  rttvar: number
}

/** Seqs past the high-water mark remembered one by one (beyond: requested again, harmlessly). */
const MAX_ABOVE = 256
/** A peer whose answer was malformed or forged is not asked again for this long. */
const PENALTY_MS = 30_000
/** Timeouts and request spacing double per consecutive failure at most this many times (x16). */
const MAX_BACKOFF_DOUBLINGS = 4
/** Shortest timeout a measured round trip may set. */
const MIN_TIMEOUT_MS = 25
/** Weight of one copy in the moving failure rate of repair request copies. */
const RATE_WEIGHT = 0.05
/** Hedged requests aim at attempts failing at most this often... */
const HEDGE_TARGET = 0.01
/** ...with at most this many copies of one request. */
const MAX_COPIES = 3

/**
 * Gap repair of counter gossip. Every counter message carries its sender's (incarnation,
 * seq); a receiver tracks per sender the contiguous high-water seq, and a gap still open
 * after a short grace is requested from the sender, which answers from a bounded ring of
 * its recent messages or, past the ring, with a snapshot of its own live entries.
 * Answers are validated like gossip and max-merged (repeats are harmless). A trailing
 * loss (no later message reveals it) shows when the sender's heartbeat announces its
 * last seq. Lost messages thus cost one request, not a periodic re-send of every key.
 */
export function createRepair (init: RepairInit): Repair {
  const { transport, clock, protocol, incarnation } = init
  const limits = init.limits ?? DEFAULT_REPAIR_LIMITS
  const graceMs = init.graceMs ?? 50
  const minRequestIntervalMs = init.minRequestIntervalMs ?? 2 * graceMs
  const requestTimeoutMs = init.requestTimeoutMs ?? 250
  const maxSenders = init.maxSenders ?? 1024
  const youngMs = init.youngMs ?? 10_000
  const maxInFlight = init.maxInFlight ?? 16
  const stats: RepairStats = { gaps: 0, requests: 0, hedgedCopies: 0, requestsFailed: 0, answersRejected: 0, messagesRepaired: 0, snapshotsMerged: 0, served: 0, servedSnapshots: 0, snapshotsTruncated: 0, senders: 0 }

  // Answers for peers that miss our messages: a ring of our recent ones, or a snapshot.
  const responder = createRepairResponder({
    clock,
    incarnation,
    ringMessages: init.ringMessages,
    ringBytes: init.ringBytes,
    maxMessageBytes: init.maxMessageBytes,
    snapshot: init.snapshot,
    snapshotIntervalMs: init.snapshotIntervalMs,
    maxRequesters: maxSenders,
    limits,
    stats
  })

  // --- senders -------------------------------------------------------------------
  const senders = new Map<string, Sender>()
  /** Senders with an open gap. */
  const gaps = new Set<string>()
  let startedAt = clock.now()
  let running = false
  let inFlight = 0
  /** Moving share of repair request copies that failed (all peers). */
  let copyFailureRate = 0
  /** When the earliest pending wake-up fires (Infinity: none). */
  let wakeAt = Infinity
  /** Runs check() in `ms`, unless a wake-up already comes sooner (the flush tick checks too). */
  const wake = (ms: number): void => {
    const at = clock.now() + ms
    if (at >= wakeAt || !running) return
    wakeAt = at
    clock.setTimer(ms, () => {
      if (wakeAt === at) wakeAt = Infinity
      check()
    })
  }

  const track = (peer: string, inc: number, hw: number): Sender => {
    if (!senders.has(peer) && senders.size >= maxSenders) {
      const oldest = senders.keys().next().value as string
      senders.delete(oldest)
      gaps.delete(oldest)
    }
    const s: Sender = { peer, incarnation: inc, hw, top: hw, above: new Set(), gapSince: -1, nextRequestAt: 0, inFlight: false, failures: 0, srtt: -1, rttvar: 0 }
    senders.set(peer, s)
    stats.senders = senders.size
    return s
  }

  /** The sender state for (peer, inc), created or reset; undefined for an older incarnation. */
  const senderOf = (peer: string, inc: number, firstSeq: number): Sender | undefined => {
    const s = senders.get(peer)
    if (s !== undefined && inc === s.incarnation) return s
    if (s !== undefined && inc < s.incarnation) return undefined
    // A restarted peer numbers from 1 again; a peer first heard by a young node was
    // covered up to here by its start-up pull; otherwise we should have heard it all.
    const young = s === undefined && clock.now() - startedAt < youngMs
    return track(peer, inc, young ? Math.max(0, firstSeq) : 0)
  }

  const settle = (s: Sender): void => {
    while (s.above.delete(s.hw + 1)) s.hw++
    if (s.top < s.hw) s.top = s.hw
    if (s.top === s.hw) {
      s.gapSince = -1
      gaps.delete(s.peer)
    } else if (s.gapSince < 0) {
      s.gapSince = clock.now()
      stats.gaps++
      gaps.add(s.peer)
      wake(graceMs)
    }
  }

  const note = (s: Sender, seq: number): void => {
    if (seq <= s.hw) return
    if (seq === s.hw + 1) s.hw = seq
    else if (seq - s.hw <= MAX_ABOVE) s.above.add(seq)
    if (seq > s.top) s.top = seq
    settle(s)
  }

  /** Missing seqs of `s` as flat inclusive ranges, at most limits.maxRanges of them. */
  const missing = (s: Sender): number[] => {
    const out: number[] = []
    let from = s.hw + 1
    for (const x of [...s.above].sort((a, b) => a - b)) {
      if (out.length / 2 >= limits.maxRanges - 1) break
      if (x > from) out.push(from, x - 1)
      from = x + 1
    }
    if (from <= s.top) out.push(from, s.top)
    return out
  }

  const reject = (s: Sender, reason: string): void => {
    stats.answersRejected++
    s.nextRequestAt = clock.now() + PENALTY_MS
    init.rejected?.(`repair answer from ${s.peer}: ${reason}`)
  }

  const answered = (s: Sender, inc: number, ranges: number[], bytes: Uint8Array): void => {
    if (!running || senders.get(s.peer) !== s) return
    const r = decodeRepairAnswer(bytes, limits)
    if (!r.ok) return reject(s, r.reason)
    const a = r.answer
    if (a.incarnation !== inc) {
      // The peer restarted: the incarnation we track will never publish again.
      if (a.incarnation > inc) forget(s.peer)
      return
    }
    // Everything is checked before anything is merged: one bad message rejects the answer.
    const msgs: DeltaMessage[] = []
    for (const m of a.messages) {
      const d = init.decode(m, init.codecLimits)
      if (!d.ok) return reject(s, d.reason)
      if (d.msg.incarnation !== inc) return reject(s, `a message of incarnation ${d.msg.incarnation}, not ${inc}`)
      const seq = d.msg.seq ?? 0
      if (!a.snapshot && (seq > a.lastSeq || !within(ranges, seq))) return reject(s, `seq ${seq} was not asked for`)
      const why = init.check(d.msg)
      if (why !== undefined) return reject(s, why)
      msgs.push(d.msg)
    }
    for (const m of msgs) init.apply(s.peer, m)
    if (a.snapshot) {
      stats.snapshotsMerged++
      // Absolute counts: the responder's live entries now supersede all it sent so far.
      if (a.lastSeq > s.hw) {
        s.hw = a.lastSeq
        for (const x of s.above) if (x <= s.hw) s.above.delete(x)
      }
    } else {
      stats.messagesRepaired += msgs.length
      for (const m of msgs) note(s, m.seq ?? 0)
    }
    // Seqs past the responder's last one do not exist (a peer cannot announce beyond it).
    if (s.top > Math.max(a.lastSeq, s.hw)) s.top = Math.max(a.lastSeq, s.hw)
    settle(s)
  }

  const request = (s: Sender): void => {
    const ranges = missing(s)
    if (ranges.length === 0) return
    const inc = s.incarnation
    s.inFlight = true
    // Consecutive failures back off exponentially (an overloaded peer or path is not
    // hammered; a single lost copy is retried at once): x2 per failure after the first.
    const backoff = 2 ** Math.min(MAX_BACKOFF_DOUBLINGS, Math.max(0, s.failures - 1))
    s.nextRequestAt = clock.now() + minRequestIntervalMs * backoff
    inFlight++
    stats.requests++
    // On a lossy path the request goes out in copies, the first answer winning: as many as
    // make an attempt fail less than 1% of the time at the measured loss of a copy (at
    // most 3), and at least 2 when the last attempt to this peer failed.
    const data = encodeRepairRequest({ incarnation: inc, ranges })
    const needed = copyFailureRate <= HEDGE_TARGET ? 1 : Math.ceil(Math.log(HEDGE_TARGET) / Math.log(Math.min(copyFailureRate, 0.9)))
    const copies = Math.min(MAX_COPIES, Math.max(needed, s.failures > 0 ? 2 : 1))
    stats.hedgedCopies += copies - 1
    const timeoutMs = backoff * (s.srtt < 0 ? requestTimeoutMs : Math.min(requestTimeoutMs, Math.max(MIN_TIMEOUT_MS, s.srtt + 4 * s.rttvar)))
    const sentAt = clock.now()
    const copy = async (): Promise<Uint8Array> => {
      try {
        const answer = await transport.request(s.peer, protocol, data, timeoutMs)
        copyFailureRate *= 1 - RATE_WEIGHT
        return answer
      } catch (err) {
        copyFailureRate = copyFailureRate * (1 - RATE_WEIGHT) + RATE_WEIGHT
        throw err
      }
    }
    Promise.any(Array.from({ length: copies }, copy)).then(
      bytes => {
        s.failures = 0
        const rtt = clock.now() - sentAt
        if (s.srtt < 0) {
          s.srtt = rtt
          s.rttvar = rtt / 2
        } else {
          s.rttvar = 0.75 * s.rttvar + 0.25 * Math.abs(s.srtt - rtt)
          s.srtt = 0.875 * s.srtt + 0.125 * rtt
        }
        answered(s, inc, ranges, bytes)
      },
      () => {
        s.failures++
        stats.requestsFailed++
      }
    ).finally(() => {
      s.inFlight = false
      inFlight--
      // Retry (or serve the next gap) as soon as the rate limit allows, not at the next tick.
      if (gaps.size > 0) wake(Math.max(1, s.nextRequestAt - clock.now()))
    })
  }

  function check (): void {
    if (!running || gaps.size === 0) return
    const now = clock.now()
    for (const peer of gaps) {
      if (inFlight >= maxInFlight) return
      const s = senders.get(peer)
      if (s === undefined || s.top <= s.hw) {
        gaps.delete(peer)
        continue
      }
      if (s.inFlight) continue
      if (now < s.nextRequestAt) wake(s.nextRequestAt - now)
      else if (now - s.gapSince >= graceMs || s.above.size >= 2) request(s)
      else wake(graceMs - (now - s.gapSince))
    }
  }

  const forget = (peer: string): void => {
    senders.delete(peer)
    gaps.delete(peer)
    stats.senders = senders.size
  }

  return {
    stats,
    get lastSeq () { return responder.lastSeq },
    get senders () { return senders.size },
    sent: (seq, bytes) => { responder.sent(seq, bytes) },
    received (from, inc, seq) {
      const s = senderOf(from, inc, seq - 1)
      if (s !== undefined) note(s, seq)
    },
    announced (from, inc, lastSeq, overdue = false) {
      if (lastSeq === 0 && !senders.has(from)) return
      const s = senderOf(from, inc, lastSeq)
      if (s === undefined || lastSeq <= s.top) return
      s.top = lastSeq
      const opens = s.gapSince < 0
      settle(s)
      if (opens && overdue && s.gapSince >= 0) {
        s.gapSince -= graceMs
        check()
      }
    },
    forget,
    check,
    start () {
      if (running) return
      running = true
      startedAt = clock.now()
      transport.handle(protocol, responder.serve)
    },
    stop () {
      if (!running) return
      running = false
      transport.unhandle(protocol)
    }
  }
}

function within (ranges: number[], seq: number): boolean {
  for (let i = 0; i < ranges.length; i += 2) if (seq >= ranges[i] && seq <= ranges[i + 1]) return true
  return false
}
