/**
 * A hand-written protobuf codec for the two messages of Envoy's ShouldRateLimit
 * (RateLimitRequest in, RateLimitResponse out), used by the gRPC server instead of
 * protobufjs: it decodes only the fields the service reads and encodes straight into a
 * reused scratch buffer, so a call allocates a few hundred bytes instead of several
 * kilobytes of message objects and writers (garbage that drove the server's collection
 * pauses). Its output is byte-for-byte what protobufjs writes for the same object, and
 * test/sidecar/rls-codec.spec.ts checks both directions against the proto-loader codec.
 */

/** One descriptor entry of a request. */
export interface RlsEntry { key: string, value: string }
/** One descriptor of a request; `hits_addend` is null when the descriptor does not set it. */
export interface RlsDescriptor { entries: RlsEntry[], hits_addend: { value: number } | null }
/** The fields of a RateLimitRequest the service reads (the same shape proto-loader gives). */
export interface RlsRequest { domain: string, descriptors: RlsDescriptor[], hits_addend: number }
/** What the decoder returns for bytes that are not a RateLimitRequest: the reason, for INVALID_ARGUMENT. */
export interface MalformedRlsRequest { malformed: string }

export type RlsCode = 'UNKNOWN' | 'OK' | 'OVER_LIMIT'
export type RlsUnit = 'UNKNOWN' | 'SECOND' | 'MINUTE' | 'HOUR' | 'DAY'
export interface RlsStatus {
  code: RlsCode
  current_limit?: { name: string, requests_per_unit: number, unit: RlsUnit }
  limit_remaining?: number
  duration_until_reset?: { seconds: number, nanos: number }
}
export interface RlsHeader { key: string, value: string }
export interface RlsResponse {
  overall_code: RlsCode
  statuses: RlsStatus[]
  response_headers_to_add: RlsHeader[]
  request_headers_to_add?: RlsHeader[]
}

const CODES: Record<RlsCode, number> = { UNKNOWN: 0, OK: 1, OVER_LIMIT: 2 }
const UNITS: Record<RlsUnit, number> = { UNKNOWN: 0, SECOND: 1, MINUTE: 2, HOUR: 3, DAY: 4 }

// Wire types.
const VARINT = 0
const I64 = 1
const LEN = 2
const I32 = 5

/** Thrown inside the decoder only; turned into a MalformedRlsRequest at its edge. */
class Malformed extends Error {}

class Reader {
  pos: number
  constructor (readonly buf: Buffer, start: number, readonly end: number) { this.pos = start }

  /** A varint as a number: exact up to 2^53, larger values lose low bits (they are refused later anyway). */
  varint (): number {
    const b = this.buf
    let result = 0
    let mul = 1
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Malformed('truncated varint')
      const byte = b[this.pos++]
      result += (byte & 0x7f) * mul
      if (byte < 0x80) return result
      mul *= 128
    }
    throw new Malformed('varint longer than 10 bytes')
  }

  /** The end offset of a length-delimited field starting here. */
  lenEnd (): number {
    const n = this.varint()
    const e = this.pos + n
    if (e > this.end) throw new Malformed('length-delimited field past the end of its message')
    return e
  }

  /** Reads the length-delimited sub-message starting here with `read` and moves past it. */
  message<T> (read: (r: Reader, end: number) => T): T {
    const e = this.lenEnd()
    const v = read(this, e)
    this.pos = e
    return v
  }

  string (): string {
    const e = this.lenEnd()
    const s = this.buf.toString('utf8', this.pos, e)
    this.pos = e
    return s
  }

  skip (wire: number): void {
    if (wire === VARINT) this.varint()
    else if (wire === LEN) this.pos = this.lenEnd()
    else if (wire === I64 || wire === I32) {
      this.pos += wire === I64 ? 8 : 4
      if (this.pos > this.end) throw new Malformed('truncated fixed-width field')
    } else throw new Malformed(`unsupported wire type ${wire}`)
  }
}

function expect (field: string, wire: number, want: number): void {
  if (wire !== want) throw new Malformed(`field ${field} has wire type ${wire}, expected ${want}`)
}

function readEntry (r: Reader, end: number): RlsEntry {
  let key = ''
  let value = ''
  while (r.pos < end) {
    const tag = r.varint()
    const field = Math.floor(tag / 8)
    const wire = tag & 7
    if (field === 1) { expect('Entry.key', wire, LEN); key = r.string() } else if (field === 2) { expect('Entry.value', wire, LEN); value = r.string() } else r.skip(wire)
  }
  return { key, value }
}

function readUInt64Value (r: Reader, end: number): { value: number } {
  let value = 0
  while (r.pos < end) {
    const tag = r.varint()
    if (tag === 8) value = r.varint()
    else r.skip(tag & 7)
  }
  return { value }
}

function readDescriptor (r: Reader, end: number): RlsDescriptor {
  const entries: RlsEntry[] = []
  let hits: { value: number } | null = null
  while (r.pos < end) {
    const tag = r.varint()
    const field = Math.floor(tag / 8)
    const wire = tag & 7
    if (field === 1) {
      expect('RateLimitDescriptor.entries', wire, LEN)
      entries.push(r.message(readEntry))
    } else if (field === 3) {
      expect('RateLimitDescriptor.hits_addend', wire, LEN)
      hits = r.message(readUInt64Value)
    } else r.skip(wire) // the limit override (2) is not honoured: policies decide limits
  }
  return { entries, hits_addend: hits }
}

/**
 * Decodes a RateLimitRequest. Never throws: bytes that are not one give a
 * MalformedRlsRequest, so the caller answers INVALID_ARGUMENT with the reason (a throw
 * in a grpc-js deserializer becomes INTERNAL).
 */
export function decodeRlsRequest (buf: Buffer): RlsRequest | MalformedRlsRequest {
  const r = new Reader(buf, 0, buf.length)
  let domain = ''
  let hitsAddend = 0
  const descriptors: RlsDescriptor[] = []
  try {
    while (r.pos < r.end) {
      const tag = r.varint()
      const field = Math.floor(tag / 8)
      const wire = tag & 7
      if (field === 1) { expect('domain', wire, LEN); domain = r.string() } else if (field === 2) {
        expect('descriptors', wire, LEN)
        descriptors.push(r.message(readDescriptor))
      } else if (field === 3) {
        expect('hits_addend', wire, VARINT)
        // uint32: protobuf keeps the low 32 bits of a longer varint.
        hitsAddend = r.varint() % 0x1_0000_0000
      } else if (field === 0) throw new Malformed('field number 0')
      else r.skip(wire)
    }
  } catch (err) {
    if (err instanceof Malformed) return { malformed: `the request is not a valid RateLimitRequest: ${err.message}` }
    throw err
  }
  return { domain, descriptors, hits_addend: hitsAddend }
}

/** Grows on demand and is reused by every call: encoding is synchronous, one call at a time. */
let scratch = Buffer.allocUnsafe(4096)
let pos = 0

function ensure (n: number): void {
  if (pos + n <= scratch.length) return
  const bigger = Buffer.allocUnsafe(Math.max(scratch.length * 2, pos + n))
  scratch.copy(bigger, 0, 0, pos)
  scratch = bigger
}

const INT64_MAX = 2 ** 63

/**
 * An integer as a varint: non-negative ones directly, negative ones as 64-bit two's
 * complement, as protobuf does; NaN is 0 and values past the int64 range are clamped
 * to it, as protobufjs's Long.fromNumber does (an Infinity must not loop forever).
 */
function writeVarint (n: number): void {
  ensure(10)
  if (!(n > -INT64_MAX && n < INT64_MAX)) {
    if (Number.isNaN(n)) n = 0
    else {
      let v = BigInt.asUintN(64, n > 0 ? 2n ** 63n - 1n : -(2n ** 63n))
      while (v >= 0x80n) { scratch[pos++] = Number(v & 0x7fn) | 0x80; v >>= 7n }
      scratch[pos++] = Number(v)
      return
    }
  }
  if (n < 0) {
    let v = BigInt.asUintN(64, BigInt(n))
    while (v >= 0x80n) { scratch[pos++] = Number(v & 0x7fn) | 0x80; v >>= 7n }
    scratch[pos++] = Number(v)
    return
  }
  while (n >= 0x80) {
    scratch[pos++] = (n % 128) | 0x80
    n = Math.floor(n / 128)
  }
  scratch[pos++] = n
}

function writeString (tag: number, s: string): void {
  ensure(2 + s.length * 3)
  scratch[pos++] = tag
  // Short strings (all of ours) take one length byte; longer ones are moved right after writing.
  const at = pos++
  const n = scratch.write(s, pos, 'utf8')
  pos += n
  closeLength(at, n)
}

/** Writes the length of the `n` bytes after the one byte reserved at `at`, moving them when it takes more bytes. */
function closeLength (at: number, n: number): void {
  if (n < 0x80) { scratch[at] = n; return }
  let extra = 0
  for (let v = n; v >= 0x80; v = Math.floor(v / 128)) extra++
  ensure(extra)
  scratch.copyWithin(at + 1 + extra, at + 1, at + 1 + n)
  const end = pos + extra
  pos = at
  writeVarint(n)
  pos = end
}

/** Starts a nested message: its tag, one reserved length byte; returns where the length goes. */
function open (tag: number): number {
  ensure(2)
  scratch[pos++] = tag
  return pos++
}

function close (at: number): void {
  closeLength(at, pos - at - 1)
}

function writeHeaders (tag: number, hs: RlsHeader[] | undefined): void {
  if (hs === undefined || hs === null) return
  for (let i = 0; i < hs.length; i++) {
    const at = open(tag)
    const h = hs[i]
    if (h.key != null) writeString(10, h.key)
    if (h.value != null) writeString(18, h.value)
    close(at)
  }
}

/**
 * Encodes a RateLimitResponse. Like protobufjs, a field is written when it is present
 * (zero values included), in field-number order; numbers are truncated to their
 * protobuf type (uint32, int64 seconds, int32 nanos) the way its fromObject does.
 */
export function encodeRlsResponse (res: RlsResponse): Buffer {
  pos = 0
  ensure(2)
  if (res.overall_code != null) { scratch[pos++] = 8; writeVarint(CODES[res.overall_code] ?? 0) }
  const ss = res.statuses
  if (ss != null) {
    for (let i = 0; i < ss.length; i++) {
      const s = ss[i]
      const at = open(18)
      if (s.code != null) { ensure(1); scratch[pos++] = 8; writeVarint(CODES[s.code] ?? 0) }
      const l = s.current_limit
      if (l != null) {
        const lat = open(18)
        if (l.requests_per_unit != null) { ensure(1); scratch[pos++] = 8; writeVarint(l.requests_per_unit >>> 0) }
        if (l.unit != null) { ensure(1); scratch[pos++] = 16; writeVarint(UNITS[l.unit] ?? 0) }
        if (l.name != null) writeString(26, l.name)
        close(lat)
      }
      if (s.limit_remaining != null) { ensure(1); scratch[pos++] = 24; writeVarint(s.limit_remaining >>> 0) }
      const d = s.duration_until_reset
      if (d != null) {
        const dat = open(34)
        if (d.seconds != null) { ensure(1); scratch[pos++] = 8; writeVarint(Math.trunc(d.seconds)) }
        if (d.nanos != null) { ensure(1); scratch[pos++] = 16; writeVarint(d.nanos | 0) }
        close(dat)
      }
      close(at)
    }
  }
  writeHeaders(26, res.response_headers_to_add)
  writeHeaders(34, res.request_headers_to_add)
  // A copy: the scratch buffer is reused by the next call.
  const out = Buffer.allocUnsafe(pos)
  scratch.copy(out, 0, 0, pos)
  return out
}
