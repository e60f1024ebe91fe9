import { encode } from '@msgpack/msgpack'
import { ExpiringSet, SetMerge, type SetEntry } from '../../crdt/expiring-set.js'
import { decodeBounded } from '../../gossip/msgpack.js'
import type { Transport, Verdict } from '../../gossip/transport.js'
import { systemClock, type Clock } from '../../membership/clock.js'
import { ErrorCode, invalid } from '../errors.js'

/**
 * Wire format of block-list messages (msgpack): `[1, [[key, ts, present, expiresAt, reason], ...]]`.
 * A message carries only its sender's own writes: the writer is the authenticated
 * sender, so no peer can forge another's entries.
 */
const WIRE_VERSION = 1
const MAX_KEY_LENGTH = 512
const MAX_REASON_LENGTH = 256
const MAX_MESSAGE_ENTRIES = 1024
const MAX_MESSAGE_BYTES = 256 * 1024

export type BlockEntry = SetEntry

/** A change to the block list, for logs and metrics. */
export interface BlockEvent {
  action: 'block' | 'unblock'
  key: string
  /** Whether this node made the change (else it was learned from a peer). */
  local: boolean
  entry: BlockEntry
}

export interface BlocklistInit {
  /**
   * Time source.
   * @default systemClock
   */
  clock?: Clock
  /** Shares the list with the mesh; without one it is local to this node. */
  transport?: Transport
  /**
   * Topic the list is gossiped on (topicsOf(mesh).blocklist).
   * @default "meshlimit/default/blocklist"
   */
  topic?: string
  /**
   * Most keys held (blocks and unblock markers); past it, new keys are refused and counted.
   * @default 100000
   */
  maxEntries?: number
  /**
   * Longest block; longer requests are shortened. Also how long an unblock marker is
   * kept, which is what makes dropping it safe: every block it overrode has expired by then.
   * @default 86400000 (one day)
   */
  maxBlockMs?: number
  /**
   * Interval at which a node re-publishes its own live entries, so that joiners and
   * peers that lost a message catch up.
   * @default 30000
   */
  republishIntervalMs?: number
  /**
   * Interval of the sweep that drops expired entries.
   * @default 10000
   */
  sweepIntervalMs?: number
  /**
   * Largest clock difference tolerated: entries stamped further ahead are rejected.
   * @default 5000
   */
  maxClockSkewMs?: number
  /** Called on every effective change, local or learned. */
  onChange?: (event: BlockEvent) => void
}

export interface BlocklistStats {
  /** Keys held, live blocks, unblock markers and expired entries not yet swept. */
  entries: number
  blocked: number
  localBlocks: number
  localUnblocks: number
  /** Entries from peers that changed the list. */
  merged: number
  /** Messages refused as malformed or forged. */
  messagesRejected: number
  /** Entries refused because the list was full. */
  droppedFull: number
  messagesSent: number
  bytesSent: number
}

export interface Blocklist {
  /** The live block of `key`, or undefined. Synchronous, one Map lookup. */
  blocked(key: string): BlockEntry | undefined
  /** Blocks `key` for `durationMs` (capped at maxBlockMs) mesh-wide. */
  block(key: string, durationMs: number, reason: string): BlockEntry
  /** Lifts a block mesh-wide; false when the key was not blocked. */
  unblock(key: string, reason?: string): boolean
  /** Live blocks, soonest to expire first. */
  list(): BlockEntry[]
  stats(): BlocklistStats
  close(): void
}

function checkKey (key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw invalid(ErrorCode.OPTION_INVALID, 'key', key, `must be a string of 1 to ${MAX_KEY_LENGTH} characters`, 'pass the client key, e.g. "ip:203.0.113.7" or "apiKey:k-123"')
  }
  return key
}

function positive (name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw invalid(ErrorCode.OPTION_INVALID, name, v, 'must be an integer >= 1', `pass ${name} as a whole number, or leave it out for ${dflt}`)
  }
  return v
}

type WireEntry = [string, number, number, number, string]

/** A block list shared mesh-wide as a CRDT set with expiry, evaluated before the limiter. */
export function createBlocklist (init: BlocklistInit = {}): Blocklist {
  const clock = init.clock ?? systemClock
  const transport = init.transport
  const self = transport?.peerId ?? 'local'
  const topic = init.topic ?? 'meshlimit/default/blocklist'
  const maxBlockMs = positive('maxBlockMs', init.maxBlockMs, 86_400_000)
  const republishIntervalMs = positive('republishIntervalMs', init.republishIntervalMs, 30_000)
  const sweepIntervalMs = positive('sweepIntervalMs', init.sweepIntervalMs, 10_000)
  const maxClockSkewMs = positive('maxClockSkewMs', init.maxClockSkewMs, 5000)
  const set = new ExpiringSet(positive('maxEntries', init.maxEntries, 100_000))
  const stats = { localBlocks: 0, localUnblocks: 0, merged: 0, messagesRejected: 0, droppedFull: 0, messagesSent: 0, bytesSent: 0 }
  const cancels: Array<() => void> = []
  let closed = false

  const publish = (entries: SetEntry[]): void => {
    if (transport === undefined) return
    for (let i = 0; i < entries.length; i += MAX_MESSAGE_ENTRIES) {
      const wire: WireEntry[] = entries.slice(i, i + MAX_MESSAGE_ENTRIES).map(e => [e.key, e.ts, e.present ? 1 : 0, e.expiresAt, e.reason])
      const bytes = encode([WIRE_VERSION, wire])
      transport.publish(topic, bytes)
      stats.messagesSent++
      stats.bytesSent += bytes.byteLength
    }
  }

  const apply = (e: SetEntry, local: boolean): boolean => {
    const r = set.merge(e)
    if (r === SetMerge.Full) {
      // Make room from expired entries once before refusing.
      set.sweep(clock.now())
      if (set.merge(e) !== SetMerge.Applied) {
        stats.droppedFull++
        return false
      }
    } else if (r === SetMerge.Stale) return false
    init.onChange?.({ action: e.present ? 'block' : 'unblock', key: e.key, local, entry: e })
    return true
  }

  /** A local write: stamped past whatever the key holds, so it supersedes what this node has seen. */
  const write = (key: string, present: boolean, expiresAt: number, reason: string): SetEntry => {
    const now = clock.now()
    const cur = set.get(key)
    const ts = cur === undefined || cur.ts < now ? now : cur.ts + 1
    const e: SetEntry = { key, ts, replica: self, present, expiresAt: Math.max(expiresAt, ts + 1), reason }
    if (apply(e, true)) publish([e])
    return e
  }

  const receive = (data: Uint8Array, from: string): Verdict => {
    if (data.byteLength > MAX_MESSAGE_BYTES) return reject()
    // Strings are bounded in UTF-8 bytes: at most 4 per UTF-16 unit of the longest field.
    const d = decodeBounded(data, { maxStrLength: 4 * Math.max(MAX_KEY_LENGTH, MAX_REASON_LENGTH), maxArrayLength: Math.max(MAX_MESSAGE_ENTRIES, 5), maxBinLength: 0, maxMapLength: 0, maxExtLength: 0 })
    if (!d.ok) return reject()
    const msg = d.raw
    if (!Array.isArray(msg) || msg.length !== 2 || msg[0] !== WIRE_VERSION || !Array.isArray(msg[1]) || msg[1].length > MAX_MESSAGE_ENTRIES) return reject()
    const now = clock.now()
    const ok: SetEntry[] = []
    for (const w of msg[1] as unknown[]) {
      if (!Array.isArray(w) || w.length !== 5) return reject()
      const [key, ts, present, expiresAt, reason] = w as unknown[]
      if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) return reject()
      if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0 || ts > now + maxClockSkewMs) return reject()
      if (present !== 0 && present !== 1) return reject()
      // A block longer than maxBlockMs would outlive the unblock markers that must hide it.
      if (typeof expiresAt !== 'number' || !Number.isSafeInteger(expiresAt) || expiresAt <= ts || expiresAt > ts + maxBlockMs) return reject()
      if (typeof reason !== 'string' || reason.length > MAX_REASON_LENGTH) return reject()
      ok.push({ key, ts, replica: from, present: present === 1, expiresAt, reason })
    }
    for (const e of ok) {
      if (e.expiresAt <= now) continue
      if (apply(e, false)) stats.merged++
    }
    return 'accept'
  }

  function reject (): Verdict {
    stats.messagesRejected++
    return 'reject'
  }

  const republish = (): void => {
    if (closed) return
    const now = clock.now()
    const own: SetEntry[] = []
    for (const e of set.entries()) if (e.replica === self && now < e.expiresAt) own.push(e)
    if (own.length > 0) publish(own)
    cancels.push(clock.setTimer(republishIntervalMs, republish))
  }
  const sweep = (): void => {
    if (closed) return
    set.sweep(clock.now())
    cancels.push(clock.setTimer(sweepIntervalMs, sweep))
  }

  if (transport !== undefined) {
    transport.subscribe(topic, receive)
    cancels.push(clock.setTimer(republishIntervalMs, republish))
  }
  cancels.push(clock.setTimer(sweepIntervalMs, sweep))

  return {
    blocked (key) {
      return set.live(key, clock.now())
    },
    block (key, durationMs, reason) {
      checkKey(key)
      if (typeof durationMs !== 'number' || !Number.isFinite(durationMs) || durationMs < 1) {
        throw invalid(ErrorCode.OPTION_INVALID, 'durationMs', durationMs, 'must be a number of ms >= 1', 'pass how long to block, e.g. 600000 for ten minutes')
      }
      if (typeof reason !== 'string' || reason.length > MAX_REASON_LENGTH) {
        throw invalid(ErrorCode.OPTION_INVALID, 'reason', reason, `must be a string of at most ${MAX_REASON_LENGTH} characters`, 'say briefly why, e.g. "credential stuffing"')
      }
      stats.localBlocks++
      const now = clock.now()
      return write(key, true, Math.floor(now + Math.min(durationMs, maxBlockMs)), reason)
    },
    unblock (key, reason = '') {
      checkKey(key)
      const was = set.live(key, clock.now()) !== undefined
      if (!was) return false
      stats.localUnblocks++
      const now = clock.now()
      // The marker must outlive every block it overrides (none lasts past now + maxBlockMs).
      write(key, false, Math.floor(now + maxBlockMs), reason.slice(0, MAX_REASON_LENGTH))
      return true
    },
    list () {
      const now = clock.now()
      const out: BlockEntry[] = []
      for (const e of set.entries()) if (e.present && now < e.expiresAt) out.push(e)
      return out.sort((a, b) => a.expiresAt - b.expiresAt)
    },
    stats () {
      const now = clock.now()
      let blocked = 0
      for (const e of set.entries()) if (e.present && now < e.expiresAt) blocked++
      return { entries: set.size, blocked, ...stats }
    },
    close () {
      if (closed) return
      closed = true
      for (const c of cancels) c()
      transport?.unsubscribe(topic)
    }
  }
}
