import { afterEach, describe, expect, it } from 'vitest'
import { createLimiter, VirtualClock } from '../../src/index.js'
import { ErrorCode } from '../../src/errors.js'
import { POLICY_ADMIN_PATH, policyAdminRoutes } from '../../src/policy/admin.js'
import { contentHash, encodeBundle, generateOperatorKey, signBundle } from '../../src/policy/bundle.js'
import { DENY_ALL_POLICIES, createPolicyManager, type PolicyManager } from '../../src/policy/manager.js'
import type { PolicyDocument } from '../../src/policy/types.js'
import { startAdminServer, type TestAdminServer } from '../helpers/admin-server.js'

const T0 = 1_800_000_000_000
const OPERATOR = generateOperatorKey()
const STRANGER = generateOperatorKey()
const TOKEN = 'admin-token-for-tests'

function doc (version: number, limit: number): PolicyDocument {
  return { version, policies: [{ id: 'per-user', key: 'user', limits: [{ id: 'minute', limit, window: '1m' }] }] }
}

let server: TestAdminServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

async function setup (): Promise<{ manager: PolicyManager, url: string }> {
  const clock = new VirtualClock(T0)
  const manager = createPolicyManager({ trustedKeys: [OPERATOR.text], limiter: createLimiter({ clock, policies: DENY_ALL_POLICIES }), clock })
  server = await startAdminServer(policyAdminRoutes(manager), TOKEN)
  return { manager, url: server.url + POLICY_ADMIN_PATH }
}

async function post (url: string, body: Uint8Array | string, token = TOKEN): Promise<{ status: number, type: string | null, body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', body, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } })
  return { status: res.status, type: res.headers.get('content-type'), body: await res.json() as Record<string, unknown> }
}

describe('policy admin routes (on a plain node:http server)', () => {
  it('POST installs a signed bundle; posting it again says it is current; GET reports it', async () => {
    const { manager, url } = await setup()
    const empty = await (await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as Record<string, unknown>
    expect(empty).toMatchObject({ version: 0, hash: null, source: 'fallback' })
    const bytes = encodeBundle(signBundle(doc(1, 5), OPERATOR))
    const r = await post(url, bytes)
    expect(r).toMatchObject({ status: 200, body: { status: 'installed', version: 1, hash: contentHash(doc(1, 5)), keyId: OPERATOR.keyId, source: 'admin', previousVersion: 0 } })
    expect(manager.version).toBe(1)
    expect((await post(url, bytes)).body).toMatchObject({ status: 'current', version: 1 })
    const info = await (await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as Record<string, unknown>
    expect(info).toMatchObject({ version: 1, hash: contentHash(doc(1, 5)), keyId: OPERATOR.keyId, source: 'admin', policies: 1, stats: { installed: 1, current: 1 } })
    const raw = await fetch(url + '/bundle', { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(new Uint8Array(await raw.arrayBuffer())).toEqual(bytes)
  })

  it('every rejection is a problem+json with the code and a status that says whose fault it is', async () => {
    const { manager, url } = await setup()
    await post(url, encodeBundle(signBundle(doc(5, 5), OPERATOR)))
    const signed = signBundle(doc(6, 5), OPERATOR)
    const cases: Array<[Uint8Array | string, number, string]> = [
      ['{"version":6,"policies":[]}', 400, ErrorCode.BUNDLE_MALFORMED],
      ['not json at all', 400, ErrorCode.BUNDLE_MALFORMED],
      [encodeBundle(signBundle(doc(6, 5), STRANGER)), 403, ErrorCode.BUNDLE_UNTRUSTED_KEY],
      [encodeBundle({ ...signed, content: doc(6, 500) }), 403, ErrorCode.BUNDLE_BAD_SIGNATURE],
      [encodeBundle(signBundle(doc(4, 5), OPERATOR)), 409, ErrorCode.BUNDLE_STALE],
      [new Uint8Array((1 << 20) + 1).fill(0x20), 413, ErrorCode.BUNDLE_TOO_LARGE]
    ]
    for (const [body, status, code] of cases) {
      const r = await post(url, body)
      expect({ status: r.status, code: r.body.code }).toEqual({ status, code })
      expect(r.type).toBe('application/problem+json')
      expect(r.body.detail).toMatch(/Fix:/)
    }
    expect(manager.version).toBe(5)
    expect(manager.stats.rejected).toMatchObject({ [ErrorCode.BUNDLE_MALFORMED]: 2, [ErrorCode.BUNDLE_STALE]: 1 })
  })

  it('the bundle route answers 404 while the fallback runs', async () => {
    const { url } = await setup()
    const res = await fetch(url + '/bundle', { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(res.status).toBe(404)
    expect(await res.json()).toMatchObject({ code: ErrorCode.STATE_INVALID })
  })
})
