import { encode } from '@msgpack/msgpack'
import { decodeBounded } from '../../gossip/msgpack.js'

/**
 * Wire format of policy distribution (msgpack arrays, a kind first):
 *
 *   topic messages   [1, bundle bytes]          a full signed bundle
 *                    [2, version, hash(32)]     an announcement of what a node runs
 *   pull request     [1, version, hash]         what the asker runs (0 and an empty hash: nothing)
 *   pull answer      [1, bundle bytes] | [3] (no bundle) | [4] (not newer than yours)
 *
 * Decoders never throw: anything else, or anything larger than the limit, is undefined.
 */
const BUNDLE = 1
const ANNOUNCE = 2
const NONE = 3
const NOT_NEWER = 4
const HASH_BYTES = 32

export type PolicyMessage =
  | { kind: 'bundle', bytes: Uint8Array }
  | { kind: 'announce', version: number, hash: string }
  | { kind: 'none' }
  | { kind: 'not-newer' }

function hexOf (b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
}

function hashBytes (hash: string | undefined): Uint8Array {
  return hash === undefined ? new Uint8Array(0) : new Uint8Array(Buffer.from(hash, 'hex'))
}

export function encodeBundleMessage (bundle: Uint8Array): Uint8Array {
  return encode([BUNDLE, bundle])
}

export function encodeAnnouncement (version: number, hash: string): Uint8Array {
  return encode([ANNOUNCE, version, hashBytes(hash)])
}

export function encodePullRequest (version: number, hash: string | undefined): Uint8Array {
  return encode([1, version, hashBytes(hash)])
}

/** A pull answer: the bundle, nothing (undefined), or "not newer than yours". */
export function encodePullAnswer (answer: Uint8Array | undefined | 'not-newer'): Uint8Array {
  return answer === undefined ? encode([NONE]) : answer === 'not-newer' ? encode([NOT_NEWER]) : encode([BUNDLE, answer])
}

/** Decodes a topic message or pull answer; undefined when malformed. */
export function decodePolicyMessage (data: Uint8Array, maxBytes: number): PolicyMessage | undefined {
  if (!(data instanceof Uint8Array) || data.byteLength > maxBytes) return undefined
  const d = decodeBounded(data, { maxStrLength: 0, maxBinLength: maxBytes, maxArrayLength: 3, maxMapLength: 0, maxExtLength: 0 })
  if (!d.ok) return undefined
  const raw = d.raw
  if (!Array.isArray(raw) || raw.length === 0) return undefined
  const [kind, a, b] = raw as unknown[]
  // A copy: the message buffer may be reused by the transport, and a bundle is kept.
  if (kind === BUNDLE && raw.length === 2 && a instanceof Uint8Array && a.byteLength > 0) return { kind: 'bundle', bytes: a.slice() }
  if (kind === ANNOUNCE && raw.length === 3 && typeof a === 'number' && Number.isSafeInteger(a) && a >= 1 && b instanceof Uint8Array && b.byteLength === HASH_BYTES) {
    return { kind: 'announce', version: a, hash: hexOf(b) }
  }
  if (kind === NONE && raw.length === 1) return { kind: 'none' }
  if (kind === NOT_NEWER && raw.length === 1) return { kind: 'not-newer' }
  return undefined
}

/** Decodes a pull request: what the asker runs; undefined when malformed. */
export function decodePullRequest (data: Uint8Array): { version: number, hash: string | undefined } | undefined {
  if (!(data instanceof Uint8Array) || data.byteLength > 64) return undefined
  const d = decodeBounded(data, { maxStrLength: 0, maxBinLength: HASH_BYTES, maxArrayLength: 3, maxMapLength: 0, maxExtLength: 0 })
  if (!d.ok) return undefined
  const raw = d.raw
  if (!Array.isArray(raw) || raw.length !== 3 || raw[0] !== 1) return undefined
  const [, v, h] = raw as unknown[]
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || !(h instanceof Uint8Array)) return undefined
  if (h.byteLength !== 0 && h.byteLength !== HASH_BYTES) return undefined
  return { version: v, hash: h.byteLength === 0 ? undefined : hexOf(h) }
}
