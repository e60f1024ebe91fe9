import type * as grpc from '@grpc/grpc-js'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { loadRls } from '../../src/sidecar/grpc.js'
import { decodeRlsRequest, encodeRlsResponse, type RlsResponse } from '../../src/sidecar/rls-codec.js'

// The reference: protobufjs through proto-loader, as every other gRPC client and server here uses it.
const pkg = loadRls() as unknown as { envoy: { service: { ratelimit: { v3: { RateLimitService: grpc.ServiceClientConstructor } } } } }
const method = pkg.envoy.service.ratelimit.v3.RateLimitService.service.ShouldRateLimit
const refEncodeRequest = (x: unknown): Buffer => method.requestSerialize(x)
const refDecodeRequest = (b: Buffer): any => method.requestDeserialize(b)
const refEncodeResponse = (x: unknown): Buffer => method.responseSerialize(x)
const refDecodeResponse = (b: Buffer): any => method.responseDeserialize(b)

// Well-formed strings (no lone surrogates: UTF-8 cannot carry them), short and past 127 bytes.
const str = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.string({ unit: 'binary', minLength: 40, maxLength: 200 }))
const uint32 = fc.integer({ min: 0, max: 0xffffffff })

const request = fc.record({
  domain: str,
  descriptors: fc.array(fc.record({
    entries: fc.array(fc.record({ key: str, value: str }), { maxLength: 4 }),
    hits_addend: fc.option(fc.record({ value: fc.maxSafeNat() }), { nil: undefined }),
    // Not read by the service: the decoder must step over it.
    limit: fc.option(fc.record({ requests_per_unit: uint32, unit: fc.integer({ min: 0, max: 4 }) }), { nil: undefined })
  }, { requiredKeys: ['entries'] }), { maxLength: 5 }),
  hits_addend: fc.option(uint32, { nil: undefined })
}, { requiredKeys: ['domain', 'descriptors'] })

/** The fields the service reads, from proto-loader's decoded object. */
function project (m: any): unknown {
  return {
    domain: m.domain,
    descriptors: m.descriptors.map((d: any) => ({
      entries: d.entries.map((e: any) => ({ key: e.key, value: e.value })),
      hits_addend: d.hits_addend === null ? null : { value: d.hits_addend.value }
    })),
    hits_addend: m.hits_addend
  }
}

const code = fc.constantFrom('UNKNOWN', 'OK', 'OVER_LIMIT') as fc.Arbitrary<'UNKNOWN' | 'OK' | 'OVER_LIMIT'>
const header = fc.record({ key: str, value: str })
const response: fc.Arbitrary<RlsResponse> = fc.record({
  overall_code: code,
  statuses: fc.array(fc.record({
    code,
    current_limit: fc.record({ name: str, requests_per_unit: uint32, unit: fc.constantFrom('UNKNOWN', 'SECOND', 'MINUTE', 'HOUR', 'DAY') as fc.Arbitrary<'UNKNOWN'> }),
    limit_remaining: uint32,
    duration_until_reset: fc.record({ seconds: fc.integer({ min: 0, max: 2 ** 45 }), nanos: fc.integer({ min: 0, max: 999_999_999 }) })
  }, { requiredKeys: ['code'] }), { maxLength: 5 }),
  response_headers_to_add: fc.array(header, { maxLength: 8 }),
  request_headers_to_add: fc.option(fc.array(header, { maxLength: 3 }), { nil: undefined })
}, { requiredKeys: ['overall_code', 'statuses', 'response_headers_to_add'] })

describe('RLS codec against the proto-loader codec', () => {
  it('decodes every RateLimitRequest proto-loader encodes to the same fields', () => {
    fc.assert(fc.property(request, req => {
      const bytes = refEncodeRequest(req)
      expect(decodeRlsRequest(bytes)).toEqual(project(refDecodeRequest(bytes)))
    }), { numRuns: 500 })
  })

  it('encodes every RateLimitResponse to the bytes proto-loader writes, which decode back to it', () => {
    fc.assert(fc.property(response, res => {
      const ours = encodeRlsResponse(res)
      expect(ours.equals(refEncodeResponse(res))).toBe(true)
      expect(refDecodeResponse(ours)).toEqual(refDecodeResponse(refEncodeResponse(res)))
    }), { numRuns: 500 })
  })

  it('encodes values the way protobuf types truncate them (fractions, uint32, int32)', () => {
    const res = { overall_code: 'OK', statuses: [{ code: 'OK', limit_remaining: 2.7, duration_until_reset: { seconds: 1.9, nanos: 5.5 } }], response_headers_to_add: [] } as unknown as RlsResponse
    expect(encodeRlsResponse(res).equals(refEncodeResponse(res))).toBe(true)
    expect(refDecodeResponse(encodeRlsResponse(res)).statuses[0]).toMatchObject({ limit_remaining: 2, duration_until_reset: { seconds: 1, nanos: 5 } })
  })

  it('encodes any number in any numeric field as protobufjs truncates, wraps or clamps it', () => {
    const num = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(2 ** 32, 2 ** 53, -(2 ** 31) - 1))
    fc.assert(fc.property(num, num, num, num, (a, b, c, d) => {
      const res = { overall_code: 'OK', statuses: [{ code: 'OK', current_limit: { name: 'p', requests_per_unit: a, unit: 'SECOND' }, limit_remaining: b, duration_until_reset: { seconds: c, nanos: d } }], response_headers_to_add: [] } as unknown as RlsResponse
      expect(encodeRlsResponse(res).equals(refEncodeResponse(res))).toBe(true)
    }), { numRuns: 1000 })
  })

  it('writes seconds out of the int64 range, NaN and infinities as protobufjs does (and returns)', () => {
    for (const seconds of [Infinity, -Infinity, NaN, 2 ** 63, 2 ** 64, -(2 ** 63), 2 ** 60, -5]) {
      const res = { overall_code: 'OK', statuses: [{ code: 'OK', duration_until_reset: { seconds, nanos: 0 } }], response_headers_to_add: [] } as unknown as RlsResponse
      expect(encodeRlsResponse(res).equals(refEncodeResponse(res)), String(seconds)).toBe(true)
    }
  })

  it('steps over fields it does not know, of every wire type', () => {
    const base = refEncodeRequest({ domain: 'api', descriptors: [{ entries: [{ key: 'user', value: 'u1' }] }], hits_addend: 3 })
    // Field 9 varint 300, field 10 fixed64, field 11 bytes "xy", field 12 fixed32.
    const unknown = Buffer.from([0x48, 0xac, 0x02, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x5a, 2, 0x78, 0x79, 0x65, 1, 2, 3, 4])
    const bytes = Buffer.concat([unknown, base, unknown])
    expect(decodeRlsRequest(bytes)).toEqual(project(refDecodeRequest(bytes)))
  })

  it('never throws on arbitrary or truncated bytes: it decodes them or says why not', () => {
    const valid = request.map(r => refEncodeRequest(r))
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 64 }).map(a => Buffer.from(a)),
      fc.tuple(valid, fc.nat()).map(([b, n]) => b.subarray(0, b.length === 0 ? 0 : n % b.length))
    )
    fc.assert(fc.property(input, bytes => {
      const r = decodeRlsRequest(bytes)
      if ('malformed' in r) expect(r.malformed).toMatch(/^the request is not a valid RateLimitRequest: /)
      else expect(Array.isArray(r.descriptors)).toBe(true)
    }), { numRuns: 1000 })
  })

  it('names what is wrong with a malformed request', () => {
    expect(decodeRlsRequest(Buffer.from([0x0a, 0x05, 0x61]))).toEqual({ malformed: 'the request is not a valid RateLimitRequest: length-delimited field past the end of its message' })
    expect(decodeRlsRequest(Buffer.from([0x08, 0x01]))).toEqual({ malformed: 'the request is not a valid RateLimitRequest: field domain has wire type 0, expected 2' })
    expect(decodeRlsRequest(Buffer.from([0x4b]))).toEqual({ malformed: 'the request is not a valid RateLimitRequest: unsupported wire type 3' })
  })
})
