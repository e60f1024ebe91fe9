import { Encoder } from '@msgpack/msgpack'
import { decodeBounded } from './msgpack.js'

/**
 * Wire format of gap repair (msgpack over a request/response protocol, gossip/repair.ts):
 *
 *   request = [version, incarnation, [from, to, from, to, ...]]     seq ranges, inclusive, ascending
 *   answer  = [version, incarnation, lastSeq, snapshot, [message...]]
 *
 * A requester names the sender incarnation it tracks and the seqs it misses. The answer
 * carries the responder's current incarnation and last published seq, and either the
 * missing counter messages themselves, byte for byte as first published (snapshot =
 * false), or, when some of them already left the responder's ring, its own live entries
 * as fresh counter messages (snapshot = true), which supersede every message up to
 * lastSeq (counts are absolute). Each message is a counter delta (gossip/codec.ts) and is
 * validated like gossip before anything is merged.
 */
export const REPAIR_VERSION = 1

export interface RepairRequest {
  incarnation: number
  /** Flat inclusive [from, to] seq ranges, ascending and disjoint. */
  ranges: number[]
}

export interface RepairAnswer {
  incarnation: number
  lastSeq: number
  snapshot: boolean
  messages: Uint8Array[]
}

/** Bounds the decoders enforce; anything beyond them is rejected. */
export interface RepairLimits {
  /** Ranges in one request. @default 64 */
  maxRanges: number
  /** Messages in one answer. @default 4096 */
  maxMessages: number
  /** Bytes of one answer. @default 8 MiB */
  maxAnswerBytes: number
}

export const DEFAULT_REPAIR_LIMITS: RepairLimits = { maxRanges: 64, maxMessages: 4096, maxAnswerBytes: 8 << 20 }

const MAX_REQUEST_BYTES = 4096
const encoder = new Encoder()
const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1
const isNat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

export function encodeRepairRequest (req: RepairRequest): Uint8Array {
  return encoder.encode([REPAIR_VERSION, req.incarnation, req.ranges])
}

/** Decodes and validates a request; undefined when malformed. Never throws. */
export function decodeRepairRequest (bytes: Uint8Array, limits: RepairLimits = DEFAULT_REPAIR_LIMITS): RepairRequest | undefined {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength > MAX_REQUEST_BYTES) return undefined
  const d = decodeBounded(bytes, { maxStrLength: 0, maxBinLength: 0, maxMapLength: 0, maxExtLength: 0, maxArrayLength: 2 * limits.maxRanges })
  if (!d.ok) return undefined
  const raw = d.raw
  if (!Array.isArray(raw) || raw.length !== 3 || raw[0] !== REPAIR_VERSION) return undefined
  const [, incarnation, ranges] = raw as unknown[]
  if (!isNat(incarnation) || !Array.isArray(ranges) || ranges.length === 0 || ranges.length % 2 !== 0 || ranges.length > 2 * limits.maxRanges) return undefined
  let last = 0
  for (let i = 0; i < ranges.length; i += 2) {
    const from: unknown = ranges[i]
    const to: unknown = ranges[i + 1]
    if (!isSeq(from) || !isSeq(to) || from > to || from <= last) return undefined
    last = to
  }
  return { incarnation, ranges: ranges as number[] }
}

export function encodeRepairAnswer (a: RepairAnswer): Uint8Array {
  return encoder.encode([REPAIR_VERSION, a.incarnation, a.lastSeq, a.snapshot, a.messages])
}

export type RepairAnswerDecodeResult = { ok: true, answer: RepairAnswer } | { ok: false, reason: string }

/** Decodes and validates an answer's envelope (its messages are checked by decodeDelta). Never throws. */
export function decodeRepairAnswer (bytes: Uint8Array, limits: RepairLimits = DEFAULT_REPAIR_LIMITS): RepairAnswerDecodeResult {
  if (!(bytes instanceof Uint8Array)) return { ok: false, reason: 'not bytes' }
  if (bytes.byteLength > limits.maxAnswerBytes) return { ok: false, reason: `answer of ${bytes.byteLength} bytes exceeds ${limits.maxAnswerBytes}` }
  const d = decodeBounded(bytes, { maxStrLength: 0, maxMapLength: 0, maxExtLength: 0, maxBinLength: limits.maxAnswerBytes, maxArrayLength: Math.max(5, limits.maxMessages) })
  if (!d.ok) return d
  const raw = d.raw
  if (!Array.isArray(raw) || raw.length !== 5 || raw[0] !== REPAIR_VERSION) return { ok: false, reason: 'not a version-1 repair answer' }
  const [, incarnation, lastSeq, snapshot, messages] = raw as unknown[]
  if (!isNat(incarnation)) return { ok: false, reason: 'incarnation is not a non-negative integer' }
  if (!isNat(lastSeq)) return { ok: false, reason: 'lastSeq is not a non-negative integer' }
  if (typeof snapshot !== 'boolean') return { ok: false, reason: 'snapshot is not a boolean' }
  if (!Array.isArray(messages) || messages.length > limits.maxMessages) return { ok: false, reason: 'invalid message list' }
  for (const m of messages) if (!(m instanceof Uint8Array)) return { ok: false, reason: 'a message is not bytes' }
  return { ok: true, answer: { incarnation, lastSeq, snapshot, messages: messages as Uint8Array[] } }
}
