/** The floor server's answers (bench/floor-server.ts), apart from the server so tests can import them. */
import type { RlsResponse } from '../src/sidecar/rls-codec.js'

/** The gRPC answer with the fields the sidecar fills in for the bench policy (per user, 100 per second), from its HTTP answer. */
export function floorRlsResponse (answer: { decision: { policy: string, remaining: number, resetMs: number }, headers: Record<string, string> }): RlsResponse {
  const reset = answer.decision.resetMs
  return {
    overall_code: 'OK',
    statuses: [{
      code: 'OK',
      current_limit: { name: answer.decision.policy, requests_per_unit: 100, unit: 'SECOND' },
      limit_remaining: answer.decision.remaining,
      duration_until_reset: { seconds: Math.floor(reset / 1000), nanos: Math.round((reset % 1000) * 1e6) }
    }],
    response_headers_to_add: Object.entries(answer.headers).map(([key, value]) => ({ key, value }))
  }
}
