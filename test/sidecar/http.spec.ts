import { request } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import type { Sidecar } from '../../src/sidecar/index.js'
import { parseList } from '../http/sf-parser.js'
import { TOKEN, check, memoryLogger, sidecar } from './helpers.js'

const POLICIES = `
version: 7
policies:
  - id: per-user
    key: user
    limits: [ { limit: 3, window: 1h, algorithm: fixed-window } ]
  - id: per-route
    key: route
    limits: [ { limit: 1000, window: 1h, algorithm: fixed-window } ]
`

let running: Sidecar[] = []
afterEach(async () => {
  await Promise.all(running.map(async s => { await s.close() }))
  running = []
})
const start = async (...a: Parameters<typeof sidecar>): Promise<Sidecar> => {
  const s = await sidecar(...a)
  running.push(s)
  return s
}

describe('decision API (POST /v1/check)', () => {
  it('answers decisions with the headers to set, then 429 with a problem naming the policy', async () => {
    const s = await start(POLICIES, { escalation: { enabled: false } })
    const a = await check(s.httpUrl, { descriptor: { user: 'u1', route: '/v1/search' } })
    expect(a.status).toBe(200)
    expect(a.json.allowed).toBe(true)
    expect(a.json.status).toBe(200)
    expect(a.json.decision).toMatchObject({ allowed: true, policy: 'per-user', limit: 3, remaining: 2 })
    expect(a.json.headers).toMatchObject({ 'X-RateLimit-Limit': '3', 'X-RateLimit-Remaining': '2' })
    expect(parseList(a.json.headers['RateLimit-Policy'])).toEqual([
      { value: 'per-user', params: [['q', 3], ['w', 3600]] },
      { value: 'per-route', params: [['q', 1000], ['w', 3600]] }
    ])
    expect(a.json.headers.RateLimit).toMatch(/^"per-user";r=2;t=\d+, "per-route";r=999;t=\d+$/)
    await check(s.httpUrl, { descriptor: { user: 'u1', route: '/v1/search' }, cost: 2 })
    const d = await check(s.httpUrl, { descriptor: { user: 'u1', route: '/v1/search' } })
    expect(d.json.allowed).toBe(false)
    expect(d.json.status).toBe(429)
    expect(Number(d.json.headers['Retry-After'])).toBeGreaterThan(0)
    expect(d.json.problem).toMatchObject({ type: 'urn:meshlimit:problem:rate-limited', status: 429, violatedPolicies: ['per-user'] })
    // A denied request consumed nothing from the per-route limit.
    const other = await check(s.httpUrl, { descriptor: { user: 'u2', route: '/v1/search' } })
    expect(other.json.decision.limits.find((l: any) => l.policy === 'per-route').remaining).toBe(996)
  })

  it('refuses malformed requests with 400 and a reason, in problem+json', async () => {
    const s = await start(POLICIES)
    const cases: Array<[unknown, RegExp]> = [
      ['{not json', /not valid JSON/],
      [[1, 2], /must be a JSON object/],
      [{ descriptor: 'u1' }, /"descriptor" must be an object/],
      [{ descriptor: { user: 42 } }, /descriptor.user must be a string/],
      [{ descriptor: { user: 'u' }, cost: 0 }, /"cost" must be an integer/],
      [{ descriptor: { user: 'u' }, cost: 1.5 }, /"cost" must be an integer/],
      [{ descriptor: { user: 'u' }, extra: true }, /unknown field "extra"/],
      [{ descriptor: { 'bad name!': 'x' } }, /field name/],
      [{ descriptor: { user: 'x'.repeat(5000) } }, /at most 4096/]
    ]
    for (const [body, reason] of cases) {
      const r = await check(s.httpUrl, body)
      expect(r.status, JSON.stringify(body)).toBe(400)
      expect(r.headers.get('content-type')).toBe('application/problem+json')
      expect(r.json.title).toBe('Bad Request')
      expect(r.json.detail).toMatch(reason)
    }
    expect((await check(s.httpUrl, '{"descriptor":{}}', { 'content-type': 'text/plain' })).status).toBe(200)
    expect((await check(s.httpUrl, JSON.stringify({ descriptor: { user: 'x'.repeat(70_000) } }))).status).toBe(413)
    const get = await fetch(`${s.httpUrl}/v1/check`)
    expect(get.status).toBe(405)
    expect(get.headers.get('allow')).toBe('POST')
    expect((await fetch(`${s.httpUrl}/nope`)).status).toBe(404)
    // Nothing bad was counted.
    const ok = await check(s.httpUrl, { descriptor: { user: 'u' } })
    expect(ok.json.decision.remaining).toBe(2)
  })

  it('reads bodies sent in several chunks, and refuses a chunked body past the limit with 413', async () => {
    const s = await start(POLICIES, { escalation: { enabled: false }, http: { port: 0, maxBodyBytes: 1024 } })
    const post = async (pieces: string[]): Promise<{ status: number, body: string }> => await new Promise((resolve, reject) => {
      // No content-length: chunked transfer, one 'data' event per piece.
      const req = request(`${s.httpUrl}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' } }, res => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { body += c })
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
      })
      req.on('error', reject)
      for (const p of pieces) req.write(p)
      req.end()
    })
    const ok = await post(['{"descriptor":', '{"user":', '"chunky"}}'])
    expect(ok.status).toBe(200)
    expect(JSON.parse(ok.body).decision.remaining).toBe(2)
    const big = await post(['{"descriptor":{"user":"', 'x'.repeat(600), 'x'.repeat(600), '"}}'])
    expect(big.status).toBe(413)
  })

  it('serves /healthz, /readyz and Prometheus /metrics with decisions, denies by policy and latency', async () => {
    const s = await start(POLICIES, { escalation: { enabled: false } })
    for (let i = 0; i < 5; i++) await check(s.httpUrl, { descriptor: { user: 'm' } })
    expect(await (await fetch(`${s.httpUrl}/healthz`)).json()).toEqual({ status: 'ok' })
    expect(await (await fetch(`${s.httpUrl}/readyz`)).json()).toEqual({ status: 'ready', policyVersion: 7 })
    const res = await fetch(`${s.httpUrl}/metrics`)
    expect(res.headers.get('content-type')).toContain('text/plain')
    const text = await res.text()
    expect(text).toContain('meshlimit_decisions_total{api="http",result="allowed"} 3')
    expect(text).toContain('meshlimit_decisions_total{api="http",result="denied"} 2')
    expect(text).toContain('meshlimit_denied_total{policy="per-user"} 2')
    expect(text).toContain('meshlimit_check_duration_seconds_count 5')
    expect(text).toContain('meshlimit_policy_version 7')
    expect(text).toContain('meshlimit_peers 0')
    expect(text).toMatch(/meshlimit_keys\{limit="per-user\/0"\} 1/)
    // Event-loop stalls and collection pauses, to correlate latency tails with (bench:sidecar reads them).
    expect(text).toMatch(/^meshlimit_process_nodejs_eventloop_lag_p99_seconds \d/m)
    expect(text).toMatch(/^meshlimit_process_nodejs_eventloop_lag_max_seconds \d/m)
    expect(text).toContain('# TYPE meshlimit_process_nodejs_gc_duration_seconds histogram')
  })

  it('logs every throttle with a hashed key, policy, latency, node and region; samples allowed decisions', async () => {
    const { logger, lines } = memoryLogger()
    const s = await start(POLICIES, { escalation: { enabled: false }, log: { sampleEvery: 2 }, region: 'eu' }, { logger })
    for (let i = 0; i < 5; i++) await check(s.httpUrl, { descriptor: { user: 'secret-user' } })
    await s.close()
    const throttles = lines.filter(l => l.event === 'throttle')
    expect(throttles).toHaveLength(2)
    expect(throttles[0]).toMatchObject({ decision: 'denied', policy: 'per-user', node: 'local', region: 'eu', api: 'http' })
    expect(typeof throttles[0].latencyMs).toBe('number')
    expect(throttles[0].key).toMatch(/^[0-9a-f]{14}$/)
    expect(JSON.stringify(lines)).not.toContain('secret-user')
    expect(lines.filter(l => l.event === 'decision')).toHaveLength(1)
  })
})

describe('admin API and block list', () => {
  it('needs the bearer token; blocks and unblocks clients, refusing them before the limiter', async () => {
    const s = await start(POLICIES)
    const admin = async (method: string, path: string, body?: unknown, token = TOKEN): Promise<Response> =>
      await fetch(`${s.adminUrl as string}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
    const denied = await admin('GET', '/admin/v1/blocklist', undefined, 'wrong-token')
    expect(denied.status).toBe(401)
    expect(denied.headers.get('www-authenticate')).toContain('Bearer')
    expect((await fetch(`${s.adminUrl as string}/admin/v1/blocklist`)).status).toBe(401)

    const b = await admin('POST', '/admin/v1/blocklist', { key: 'user:evil', duration: '10m', reason: 'scraping' })
    expect(b.status).toBe(201)
    expect(await b.json()).toMatchObject({ key: 'user:evil', present: true, reason: 'scraping' })
    const r = await check(s.httpUrl, { descriptor: { user: 'evil' } })
    expect(r.json).toMatchObject({ allowed: false, status: 429, problem: { type: 'urn:meshlimit:problem:blocked' } })
    expect(Number(r.json.headers['Retry-After'])).toBeGreaterThan(590)
    expect(((await (await admin('GET', '/admin/v1/blocklist')).json()) as { blocked: unknown[] }).blocked).toHaveLength(1)

    expect((await admin('DELETE', '/admin/v1/blocklist?key=user%3Aevil')).status).toBe(200)
    expect((await check(s.httpUrl, { descriptor: { user: 'evil' } })).json.allowed).toBe(true)
    expect((await admin('DELETE', '/admin/v1/blocklist?key=user%3Aevil')).status).toBe(404)

    const bad = await admin('POST', '/admin/v1/blocklist', { key: 'k', duration: 'forever' })
    expect(bad.status).toBe(400)
    expect(await bad.json()).toMatchObject({ code: 'MESHLIMIT_OPTION_INVALID', field: 'duration' })
    expect((await admin('POST', '/admin/v1/blocklist', 'x'.repeat(2 << 20))).status).toBe(413)
    expect((await admin('GET', '/admin/v1/status')).status).toBe(200)
    const text = await (await fetch(`${s.httpUrl}/metrics`)).text()
    expect(text).toContain('meshlimit_blocks_total{source="manual"} 1')
    expect(text).toContain('meshlimit_decisions_total{api="http",result="blocked"} 1')
  })

  it('mounts extra admin routes behind the same authentication', async () => {
    const s = await start(POLICIES, {}, {
      adminRoutes: [{ method: 'POST', path: '/admin/v1/echo', handler: (_req, res, body) => { res.end(body) } }]
    })
    const r = await fetch(`${s.adminUrl as string}/admin/v1/echo`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: 'hello' })
    expect(await r.text()).toBe('hello')
    expect((await fetch(`${s.adminUrl as string}/admin/v1/echo`, { method: 'POST', body: 'x' })).status).toBe(401)
  })

  it('escalates a client denied on many policies and endpoints to a block', async () => {
    const s = await start(`
policies:
  - id: per-user-route
    key: [user, route]
    limits: [ { limit: 1, window: 1h, algorithm: fixed-window } ]
`, { escalation: { threshold: 3 } })
    for (const route of ['/a', '/b', '/c']) {
      await check(s.httpUrl, { descriptor: { user: 'probe', route } })
      const d = await check(s.httpUrl, { descriptor: { user: 'probe', route } })
      expect(d.json.allowed).toBe(false)
    }
    const r = await check(s.httpUrl, { descriptor: { user: 'probe', route: '/fresh' } })
    expect(r.json.problem.type).toBe('urn:meshlimit:problem:blocked')
    expect(s.node.blocklist.blocked('user:probe')?.reason).toContain('escalation')
  })
})

describe('answer text', () => {
  // The answer is written as text (src/sidecar/answer-json.ts), not by JSON.stringify: it must be
  // JSON.stringify's own text of the same value, and Content-Length its size in bytes.
  const raw = async (url: string, body: string): Promise<{ length: number, bytes: Buffer }> => await new Promise((resolve, reject) => {
    const req = request(`${url}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' } }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ length: Number(res.headers['content-length']), bytes: Buffer.concat(chunks) }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })

  it('is JSON.stringify text with an exact Content-Length: allowed, denied, unmatched, blocked with a non-ASCII reason', async () => {
    const s = await start(POLICIES, { escalation: { enabled: false } })
    s.node.blocklist.block('user:\u00fcml', 60_000, 'scraping \u2013 caf\u00e9 \ud83d\ude00')
    const bodies = [
      { descriptor: { user: 'a1', route: '/v1/search' } },
      { descriptor: { user: 'a1', route: '/v1/search' }, cost: 2 },
      { descriptor: { user: 'a1', route: '/v1/search' } },
      { descriptor: { user: 'a2' }, cost: 5 },
      { descriptor: { other: 'x' } },
      { descriptor: { user: '\u00fcml' } }
    ]
    const seen = new Set<string>()
    for (const b of bodies) {
      const r = await raw(s.httpUrl, JSON.stringify(b))
      expect(r.length, JSON.stringify(b)).toBe(r.bytes.length)
      const text = r.bytes.toString('utf8')
      const v = JSON.parse(text)
      expect(text).toBe(JSON.stringify(v))
      seen.add(v.problem?.type ?? (v.decision.policy === undefined ? 'unmatched' : 'allowed'))
    }
    expect([...seen].sort()).toEqual(['allowed', 'unmatched', 'urn:meshlimit:problem:blocked', 'urn:meshlimit:problem:rate-limited'])
  })

  it('answers many requests in flight at once, each with its own bytes', async () => {
    // Answers share slabs (src/http/json-out.ts): one written over before its socket sent it would show here.
    const s = await start(`
policies:
  - id: per-user
    key: user
    limits: [ { limit: 100000, window: 1h, algorithm: fixed-window } ]
`, { escalation: { enabled: false } })
    const n = 400
    const answers = await Promise.all(Array.from({ length: n }, async (_, i) => await raw(s.httpUrl, JSON.stringify({ descriptor: { user: `u${i}` }, cost: i + 1 }))))
    answers.forEach((r, i) => {
      expect(r.length).toBe(r.bytes.length)
      const v = JSON.parse(r.bytes.toString('utf8'))
      expect(v.decision.remaining, `answer ${i}`).toBe(100000 - (i + 1))
      expect(v.headers['X-RateLimit-Remaining']).toBe(String(100000 - (i + 1)))
    })
  })
})

describe('hostile field names', () => {
  it('descriptor fields named like Object.prototype members are accepted as plain fields', async () => {
    const s = await start(POLICIES, { escalation: { enabled: false } })
    const body = '{"descriptor":{"user":"h1","constructor":"c1","__proto__":"p","toString":"t"}}'
    const a = await check(s.httpUrl, body)
    expect(a.status).toBe(200)
    expect(a.json.decision).toMatchObject({ policy: 'per-user', remaining: 2 })
  })
})
