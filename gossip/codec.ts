import { Encoder } from '@msgpack/msgpack'
import { decodeBounded } from './msgpack.js'

/**
 * Wire format of counter deltas (msgpack):
 *
 *   [version = 2, incarnation, seq, sentAtMs, [group...]]
 *   group = [limitName, slotMs, baseEpoch, [hash, epoch - baseEpoch, count, ...]]
 *
 * Entries are the sender's own absolute counts (never increments), so a receiver
 * max-merges them and duplicates, reordering and re-sends change nothing. The sender's
 * replica id is the authenticated peer id of the transport plus `incarnation`: a
 * message cannot name any other replica. `seq` numbers the sender's counter messages
 * within one incarnation (1, 2, 3...; every message, re-publication included), so a
 * receiver sees a lost message as a gap and asks the sender for it (gossip/repair.ts).
 * A message without groups is an idle marker (encodeMarker): it carries no count and
 * takes no seq of its own; its seq is the sender's last, so a receiver that lost that
 * last message sees the gap although nothing follows it.
 * Version 1 (no seq) is rejected: a mesh upgrades to version 2 as a whole.
 */
export const CODEC_VERSION = 2
/** Version of region aggregates: [1, region, sentAtMs, [group...]] (no seq: they are re-sent whole). */
export const AGGREGATE_CODEC_VERSION = 1

/** One limit's entries: flat (hash, epoch, count) triples. */
export interface CounterGroup {
  limit: string
  slotMs: number
  entries: number[]
}

export interface DeltaMessage {
  incarnation: number
  /**
   * Sequence number of the message within the sender's incarnation (>= 1). When
   * encodeDelta splits a delta, the parts take seq, seq + 1, ...
   * @default 1
   */
  seq?: number
  sentAtMs: number
  groups: CounterGroup[]
}

/** Bounds a decoder enforces; everything beyond them is rejected, not truncated. */
export interface CodecLimits {
  /** @default 1 MiB */
  maxMessageBytes: number
  /** @default 4096 */
  maxGroups: number
  /** @default 262144 */
  maxEntries: number
  /** Longest limit name. @default 256 */
  maxLimitNameLength: number
}

export const DEFAULT_CODEC_LIMITS: CodecLimits = {
  maxMessageBytes: 1 << 20,
  maxGroups: 4096,
  maxEntries: 1 << 18,
  maxLimitNameLength: 256
}

/** Largest epoch offset inside one group (slots between the oldest and newest entry). */
const MAX_EPOCH_SPAN = 1 << 16
const HASH_LIMIT = 2 ** 53
/** Worst-case bytes of one entry: uint64 hash, uint32 offset, uint64 count. */
const WORST_ENTRY_BYTES = 9 + 5 + 9
const GROUP_OVERHEAD = 32
const MESSAGE_OVERHEAD = 32

export type DecodeResult =
  | { ok: true, msg: DeltaMessage }
  | { ok: false, reason: string }

/**
 * A region aggregate: one region's totals per (key, slot), published mesh-wide by that
 * region's aggregators for global limits. Same wire shape as a delta, with the region
 * name where a delta has the incarnation: [version, region, sentAtMs, [group...]].
 */
export interface AggregateMessage {
  region: string
  sentAtMs: number
  groups: CounterGroup[]
}

export type AggregateDecodeResult =
  | { ok: true, msg: AggregateMessage }
  | { ok: false, reason: string }

const REGION = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

// One encoder for every message: msgpack's encode() builds a new one (and its 2 KB
// buffer) per call; encode() on an instance returns a copy, so messages never share bytes.
const encoder = new Encoder()

function encodeOne (tag: number | string, seq: number | undefined, sentAtMs: number, groups: CounterGroup[]): Uint8Array {
  const wire = groups.map(g => {
    let base = Infinity
    let top = -Infinity
    for (let j = 1; j < g.entries.length; j += 3) {
      if (g.entries[j] < base) base = g.entries[j]
      if (g.entries[j] > top) top = g.entries[j]
    }
    if (base === Infinity) base = 0
    // Live entries span the retained slots of a window (at most a few hundred epochs).
    if (top - base >= MAX_EPOCH_SPAN) throw new RangeError(`group ${g.limit} spans ${top - base} epochs, more than ${MAX_EPOCH_SPAN - 1}`)
    const flat = g.entries.slice()
    for (let j = 1; j < flat.length; j += 3) flat[j] -= base
    return [g.limit, g.slotMs, base, flat]
  })
  return encoder.encode(seq === undefined ? [AGGREGATE_CODEC_VERSION, tag, sentAtMs, wire] : [CODEC_VERSION, tag, seq, sentAtMs, wire])
}

/**
 * Encodes a delta as one or more messages of at most `maxMessageBytes` each, splitting
 * between entries (never inside one). Groups without entries are left out; an empty
 * delta encodes to no message at all.
 */
export function encodeDelta (msg: DeltaMessage, maxMessageBytes = DEFAULT_CODEC_LIMITS.maxMessageBytes): Uint8Array[] {
  const seq = msg.seq ?? 1
  if (!Number.isSafeInteger(seq) || seq < 1) throw new RangeError(`seq must be a positive integer, got ${seq}`)
  return encodeMessages(msg.incarnation, seq, msg.sentAtMs, msg.groups, maxMessageBytes)
}

/** An idle marker: `seq` is the sender's last message, announced (not carried) by it. */
export function encodeMarker (incarnation: number, seq: number, sentAtMs: number): Uint8Array {
  return encoder.encode([CODEC_VERSION, incarnation, seq, sentAtMs, []])
}

/** Encodes a region aggregate, split like encodeDelta. */
export function encodeAggregate (msg: AggregateMessage, maxMessageBytes = DEFAULT_CODEC_LIMITS.maxMessageBytes): Uint8Array[] {
  if (!REGION.test(msg.region)) throw new RangeError(`region ${JSON.stringify(msg.region)} is not a valid region name`)
  return encodeMessages(msg.region, undefined, msg.sentAtMs, msg.groups, maxMessageBytes)
}

function encodeMessages (tag: number | string, seq: number | undefined, sentAtMs: number, groups: CounterGroup[], maxMessageBytes: number): Uint8Array[] {
  const out: Uint8Array[] = []
  let batch: CounterGroup[] = []
  let budget = maxMessageBytes - MESSAGE_OVERHEAD
  // Decoders also cap groups and entries per message (DEFAULT_CODEC_LIMITS), not only bytes.
  let entriesLeft = DEFAULT_CODEC_LIMITS.maxEntries
  const flushBatch = (): void => {
    if (batch.length > 0) out.push(encodeOne(tag, seq === undefined ? undefined : seq + out.length, sentAtMs, batch))
    batch = []
    budget = maxMessageBytes - MESSAGE_OVERHEAD
    entriesLeft = DEFAULT_CODEC_LIMITS.maxEntries
  }
  for (const g of groups) {
    let at = 0
    while (at < g.entries.length) {
      const header = GROUP_OVERHEAD + g.limit.length * 3
      let room = Math.min(Math.floor((budget - header) / WORST_ENTRY_BYTES), entriesLeft)
      if (room < 1 || batch.length === DEFAULT_CODEC_LIMITS.maxGroups) {
        flushBatch()
        room = Math.min(Math.floor((budget - header) / WORST_ENTRY_BYTES), entriesLeft)
        if (room < 1) throw new RangeError(`maxMessageBytes ${maxMessageBytes} cannot hold one entry of limit ${g.limit}`)
      }
      const take = Math.min(room * 3, g.entries.length - at)
      const entries = g.entries.slice(at, at + take)
      batch.push({ limit: g.limit, slotMs: g.slotMs, entries })
      budget -= header + (take / 3) * WORST_ENTRY_BYTES
      entriesLeft -= take / 3
      at += take
    }
  }
  flushBatch()
  return out
}

const isSafeNonNegInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

/**
 * Decodes and validates one message. Never throws: anything malformed, oversized or
 * out of range yields `{ ok: false, reason }` naming the first problem.
 */
export function decodeDelta (bytes: Uint8Array, limits: CodecLimits = DEFAULT_CODEC_LIMITS): DecodeResult {
  const r = decodeMessage(bytes, limits, true)
  if (!r.ok) return r
  if (!isSafeNonNegInt(r.tag)) return { ok: false, reason: 'incarnation is not a non-negative integer' }
  return { ok: true, msg: { incarnation: r.tag, seq: r.seq, sentAtMs: r.sentAtMs, groups: r.groups } }
}

/** Decodes and validates a region aggregate. Never throws. */
export function decodeAggregate (bytes: Uint8Array, limits: CodecLimits = DEFAULT_CODEC_LIMITS): AggregateDecodeResult {
  const r = decodeMessage(bytes, limits, false)
  if (!r.ok) return r
  if (typeof r.tag !== 'string' || !REGION.test(r.tag)) return { ok: false, reason: 'region is not a valid region name' }
  return { ok: true, msg: { region: r.tag, sentAtMs: r.sentAtMs, groups: r.groups } }
}

function decodeMessage (bytes: Uint8Array, limits: CodecLimits, withSeq: boolean): { ok: true, tag: unknown, seq: number, sentAtMs: number, groups: CounterGroup[] } | { ok: false, reason: string } {
  if (!(bytes instanceof Uint8Array)) return { ok: false, reason: 'not bytes' }
  if (bytes.byteLength > limits.maxMessageBytes) return { ok: false, reason: `message of ${bytes.byteLength} bytes exceeds ${limits.maxMessageBytes}` }
  const d = decodeBounded(bytes, {
    maxStrLength: limits.maxLimitNameLength * 4,
    maxBinLength: 0,
    maxMapLength: 0,
    maxExtLength: 0,
    maxArrayLength: Math.max(limits.maxGroups, limits.maxEntries * 3)
  })
  if (!d.ok) return d
  const raw = d.raw
  const arity = withSeq ? 5 : 4
  if (!Array.isArray(raw) || raw.length !== arity) return { ok: false, reason: `not a ${arity}-element array` }
  const version: unknown = raw[0]
  const tag: unknown = raw[1]
  const seq: unknown = withSeq ? raw[2] : 0
  const sentAtMs: unknown = raw[arity - 2]
  const wireGroups: unknown = raw[arity - 1]
  if (version !== (withSeq ? CODEC_VERSION : AGGREGATE_CODEC_VERSION)) return { ok: false, reason: `unsupported version ${String(version)}` }
  if (withSeq && (!isSafeNonNegInt(seq) || seq === 0)) return { ok: false, reason: 'seq is not a positive integer' }
  if (typeof sentAtMs !== 'number' || !Number.isFinite(sentAtMs) || sentAtMs < 0) return { ok: false, reason: 'sentAtMs is not a finite non-negative number' }
  if (!Array.isArray(wireGroups)) return { ok: false, reason: 'groups is not an array' }
  if (wireGroups.length > limits.maxGroups) return { ok: false, reason: `more than ${limits.maxGroups} groups` }
  const groups: CounterGroup[] = []
  let total = 0
  for (let g = 0; g < wireGroups.length; g++) {
    const wg: unknown = wireGroups[g]
    if (!Array.isArray(wg) || wg.length !== 4) return { ok: false, reason: `group ${g} is not a 4-element array` }
    const [limit, slotMs, base, flat] = wg as unknown[]
    if (typeof limit !== 'string' || limit.length === 0 || limit.length > limits.maxLimitNameLength) return { ok: false, reason: `group ${g} has an invalid limit name` }
    if (typeof slotMs !== 'number' || !Number.isFinite(slotMs) || slotMs <= 0) return { ok: false, reason: `group ${g} has an invalid slotMs` }
    if (!isSafeNonNegInt(base)) return { ok: false, reason: `group ${g} has an invalid base epoch` }
    if (!Array.isArray(flat) || flat.length % 3 !== 0) return { ok: false, reason: `group ${g} entries are not triples` }
    total += flat.length / 3
    if (total > limits.maxEntries) return { ok: false, reason: `more than ${limits.maxEntries} entries` }
    const entries = new Array<number>(flat.length)
    for (let j = 0; j < flat.length; j += 3) {
      const h: unknown = flat[j]
      const d: unknown = flat[j + 1]
      const c: unknown = flat[j + 2]
      if (!isSafeNonNegInt(h) || h >= HASH_LIMIT) return { ok: false, reason: `group ${g} entry ${j / 3} has an invalid key hash` }
      if (!isSafeNonNegInt(d) || d >= MAX_EPOCH_SPAN) return { ok: false, reason: `group ${g} entry ${j / 3} has an invalid epoch offset` }
      if (!isSafeNonNegInt(c) || c === 0) return { ok: false, reason: `group ${g} entry ${j / 3} has an invalid count` }
      // base and offset are each in range, but their sum can pass 2^53 and lose precision.
      if (!Number.isSafeInteger(base + d)) return { ok: false, reason: `group ${g} entry ${j / 3} has an invalid epoch` }
      entries[j] = h
      entries[j + 1] = base + d
      entries[j + 2] = c
    }
    groups.push({ limit, slotMs, entries })
  }
  return { ok: true, tag, seq: seq as number, sentAtMs, groups }
}
