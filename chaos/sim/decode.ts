import { decodeDelta, type CodecLimits, type DecodeResult } from '../../gossip/codec.js'

/** Messages whose decoding is remembered (far more than are ever in flight at once). */
const REMEMBERED = 4096

/**
 * A decodeDelta that remembers its result per byte array. In the simulator every
 * receiver of a message gets the very same Uint8Array, and decoding is pure (a result
 * depends only on the bytes and the limits), so the receivers share one decoding; the
 * replicator's own checks and the limiter's merge still run per receiver. The memo is
 * a Map of the last REMEMBERED messages, not a WeakMap: weak tables cost the garbage
 * collector on every cycle, and a message delivered after it was forgotten is simply
 * decoded again.
 */
export function sharedDecoder (): (data: Uint8Array, limits: CodecLimits) => DecodeResult {
  const memo = new Map<Uint8Array, { limits: CodecLimits, result: DecodeResult }>()
  const same = (a: CodecLimits, b: CodecLimits): boolean => a === b || (a.maxMessageBytes === b.maxMessageBytes &&
    a.maxGroups === b.maxGroups && a.maxEntries === b.maxEntries && a.maxLimitNameLength === b.maxLimitNameLength)
  return (data, limits) => {
    const hit = memo.get(data)
    if (hit !== undefined && same(hit.limits, limits)) return hit.result
    const result = decodeDelta(data, limits)
    if (hit === undefined && memo.size >= REMEMBERED) memo.delete(memo.keys().next().value as Uint8Array)
    memo.set(data, { limits, result })
    return result
  }
}
