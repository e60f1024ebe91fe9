import { describe, expect, it } from 'vitest'
import { floorRlsResponse } from '../../bench/floor.js'
import { loadRls } from '../../src/sidecar/grpc.js'
import { encodeRlsResponse } from '../../src/sidecar/rls-codec.js'

const method = (loadRls() as any).envoy.service.ratelimit.v3.RateLimitService.service.ShouldRateLimit

describe('the floor server\'s gRPC answer', () => {
  it('carries the sidecar\'s decision and headers, and reads back through the proto as the h2load check wants it', () => {
    const headers = { 'x-ratelimit-limit': '100', 'x-ratelimit-remaining': '41', ratelimit: '"per-user";r=41;t=1' }
    const res = method.responseDeserialize(encodeRlsResponse(floorRlsResponse({ decision: { policy: 'per-user', remaining: 41, resetMs: 1_250.5 }, headers })))
    expect(res.overall_code).toBe('OK')
    expect(res.statuses).toHaveLength(1)
    const s = res.statuses[0]
    expect(s.code).toBe(res.overall_code)
    expect(s.current_limit).toMatchObject({ name: 'per-user', requests_per_unit: 100, unit: 'SECOND' })
    expect(s.limit_remaining).toBe(41)
    expect(s.duration_until_reset).toEqual({ seconds: 1, nanos: 250_500_000 })
    expect(res.response_headers_to_add.map((h: any) => [h.key, h.value])).toEqual(Object.entries(headers))
  })
})
