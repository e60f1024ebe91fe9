import { decode, type DecoderOptions } from '@msgpack/msgpack'

/** The most a msgpack value may hold, per type (0 forbids the type). */
export type DecodeBounds = Required<Pick<DecoderOptions, 'maxStrLength' | 'maxBinLength' | 'maxMapLength' | 'maxExtLength' | 'maxArrayLength'>>

/**
 * Decodes untrusted msgpack within bounds. Never throws: anything the decoder refuses
 * (truncated, oversized, unknown types) comes back as an "undecodable: ..." reason, so
 * every wire decoder rejects with a reason rather than an exception.
 */
export function decodeBounded (bytes: Uint8Array, bounds: DecodeBounds): { ok: true, raw: unknown } | { ok: false, reason: string } {
  try {
    return { ok: true, raw: decode(bytes, bounds) }
  } catch (err) {
    return { ok: false, reason: `undecodable: ${err instanceof Error ? err.message : String(err)}` }
  }
}
