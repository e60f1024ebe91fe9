import { EventEmitter } from 'node:events'
import * as http2 from 'node:http2'
import * as grpc from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Gate } from '../../src/gate.js'
import { detachCall, loadRls, rlsServiceDefinition, rlsUnaryInterceptor } from '../../src/sidecar/grpc.js'
import type { Sidecar } from '../../src/sidecar/index.js'
import { parseList } from '../http/sf-parser.js'
import { sidecar } from './helpers.js'

const POLICIES = `
policies:
  - id: per-ip
    key: ip
    match: { domain: edge }
    limits: [ { limit: 2, window: 1m, algorithm: fixed-window } ]
  - id: per-user
    key: user
    limits: [ { limit: 5, window: 1s, algorithm: fixed-window } ]
  - id: per-tenant
    key: tenant
    limits: [ { limit: 10, window: 10s, algorithm: fixed-window } ]
`

type Call = (req: unknown) => Promise<any>

let s: Sidecar
let client: grpc.Client
let should: Call
let pkg: any

beforeAll(async () => {
  s = await sidecar(POLICIES, { escalation: { enabled: false } })
  // A client built from the proto, as Envoy's would be: nothing shared with the server but the wire.
  pkg = loadRls() as any
  const Ctor = pkg.envoy.service.ratelimit.v3.RateLimitService as grpc.ServiceClientConstructor
  client = new Ctor(s.grpcAddress as string, grpc.credentials.createInsecure())
  should = async req => await new Promise((resolve, reject) => {
    (client as any).ShouldRateLimit(req, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, res: unknown) => { if (err !== null) reject(err); else resolve(res) })
  })
})
afterAll(async () => {
  client?.close()
  await s?.close()
})

const entries = (o: Record<string, string>): Array<{ key: string, value: string }> => Object.entries(o).map(([key, value]) => ({ key, value }))

describe('Envoy rate limit service v3 (ShouldRateLimit)', () => {
  it('answers OK with the current limit, remaining and time until reset, then OVER_LIMIT', async () => {
    const req = { domain: 'edge', descriptors: [{ entries: entries({ remote_address: '198.51.100.7' }) }] }
    const a = await should(req)
    expect(a.overall_code).toBe('OK')
    expect(a.statuses).toHaveLength(1)
    expect(a.statuses[0]).toMatchObject({ code: 'OK', current_limit: { name: 'per-ip', requests_per_unit: 2, unit: 'MINUTE' }, limit_remaining: 1 })
    const reset = a.statuses[0].duration_until_reset
    expect(reset.seconds * 1000 + reset.nanos / 1e6).toBeGreaterThan(0)
    expect(reset.seconds).toBeLessThanOrEqual(60)
    await should(req)
    const over = await should(req)
    expect(over.overall_code).toBe('OVER_LIMIT')
    expect(over.statuses[0]).toMatchObject({ code: 'OVER_LIMIT', limit_remaining: 0 })
    const headers = Object.fromEntries(over.response_headers_to_add.map((h: any) => [h.key, h.value]))
    expect(headers['X-RateLimit-Limit']).toBe('2')
    expect(Number(headers['Retry-After'])).toBeGreaterThan(0)
    expect(parseList(headers['RateLimit-Policy'])).toEqual([{ value: 'per-ip', params: [['q', 2], ['w', 60]] }])
  })

  it('limits every descriptor and counts none of them when one is over', async () => {
    const user = { entries: entries({ user: 'alice' }) }
    const tenant = { entries: entries({ tenant: 't1' }) }
    const big = await should({ domain: 'api', descriptors: [user, tenant], hits_addend: 5 })
    expect(big.overall_code).toBe('OK')
    expect(big.statuses.map((x: any) => x.limit_remaining)).toEqual([0, 5])
    // alice is spent: the request is over, and tenant t1 is not charged for it.
    const over = await should({ domain: 'api', descriptors: [user, tenant] })
    expect(over.overall_code).toBe('OVER_LIMIT')
    expect(over.statuses.map((x: any) => x.code)).toEqual(['OVER_LIMIT', 'OK'])
    const peek = await should({ domain: 'api', descriptors: [{ entries: entries({ tenant: 't1' }), hits_addend: { value: 0 } }] })
    expect(peek.statuses[0].limit_remaining).toBe(5)
  })

  it('honours per-descriptor hits_addend, answers OK without a limit for unmatched descriptors', async () => {
    const r = await should({ domain: 'api', descriptors: [{ entries: entries({ tenant: 't2' }), hits_addend: { value: 4 } }, { entries: entries({ nothing: 'x' }) }] })
    expect(r.overall_code).toBe('OK')
    expect(r.statuses[0]).toMatchObject({ code: 'OK', limit_remaining: 6, current_limit: { unit: 'UNKNOWN', requests_per_unit: 10 } })
    expect(r.statuses[1].code).toBe('OK')
    expect(r.statuses[1].current_limit).toBeNull()
  })

  it('refuses malformed requests with INVALID_ARGUMENT and a reason', async () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ domain: '', descriptors: [{ entries: entries({ user: 'x' }) }] }, /domain/],
      [{ domain: 'api', descriptors: [] }, /at least one descriptor/],
      [{ domain: 'api', descriptors: [{ entries: [] }] }, /no entries/],
      [{ domain: 'api', descriptors: [{ entries: [{ key: '', value: 'v' }] }] }, /key must be/],
      [{ domain: 'api', descriptors: [{ entries: entries({ user: 'x' }), hits_addend: { value: 2 ** 40 } }] }, /hits_addend/]
    ]
    for (const [req, reason] of bad) {
      const err = await should(req).then(() => undefined, (e: grpc.ServiceError) => e)
      expect(err?.code, JSON.stringify(req)).toBe(grpc.status.INVALID_ARGUMENT)
      expect(err?.details).toMatch(reason)
    }
  })

  it('refuses bytes that are not a RateLimitRequest with INVALID_ARGUMENT and a reason', async () => {
    // A client that sends raw bytes: a truncated domain field (says 5 bytes, carries 1).
    const path = (pkg.envoy.service.ratelimit.v3.RateLimitService as grpc.ServiceClientConstructor).service.ShouldRateLimit.path
    const err = await new Promise<grpc.ServiceError | null>(resolve => {
      client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0x0a, 0x05, 0x61]), { deadline: Date.now() + 5000 }, e => { resolve(e) })
    })
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT)
    expect(err?.details).toMatch(/not a valid RateLimitRequest: length-delimited field past the end/)
  })

  it('counts gRPC decisions in the metrics', async () => {
    const text = await (await fetch(`${s.httpUrl}/metrics`)).text()
    expect(text).toMatch(/meshlimit_decisions_total\{api="grpc",result="denied"\} [1-9]/)
  })
})

describe('hostile field names', () => {
  it('entry keys named like Object.prototype members are plain fields', async () => {
    const r = await should({ domain: 'api', descriptors: [{ entries: entries({ constructor: 'x', __proto__: 'y', toString: 'z' }) }] })
    expect(r.overall_code).toBe('OK')
  })
})

describe('calls in flight per connection (grpc.maxConcurrentStreams)', () => {
  it('is advertised to clients, which queue the calls past it: every call is answered', async () => {
    const side = await sidecar(POLICIES, { escalation: { enabled: false }, grpc: { port: 0, maxConcurrentStreams: 2 } })
    const session = http2.connect(`http://${side.grpcAddress as string}`)
    try {
      const settings = await new Promise<http2.Settings>(resolve => session.once('remoteSettings', resolve))
      expect(settings.maxConcurrentStreams).toBe(2)
      const method = (loadRls() as any).envoy.service.ratelimit.v3.RateLimitService.service.ShouldRateLimit
      const body = method.requestSerialize({ domain: 'api', descriptors: [{ entries: [{ key: 'tenant', value: 'streams' }] }] }) as Buffer
      const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body])
      const call = async (): Promise<string | undefined> => await new Promise((resolve, reject) => {
        const st = session.request({ ':method': 'POST', ':path': method.path, 'content-type': 'application/grpc', te: 'trailers' })
        let status: string | undefined
        st.on('trailers', t => { status = t['grpc-status'] as string })
        st.on('error', reject)
        st.resume()
        st.on('close', () => { resolve(status) })
        st.end(frame)
      })
      expect(await Promise.all(Array.from({ length: 6 }, call))).toEqual(Array(6).fill('0'))
    } finally {
      session.close()
      await side.close()
    }
  })
})

describe('ShouldRateLimit answered by the interceptor (rlsUnaryInterceptor)', () => {
  // A bare grpc-js server: the interceptor over a gate stub, and a service function that must never run.
  const answers: unknown[] = []
  const gate = {
    headers: { quotaName: () => 'q' },
    checkAll: (ds: unknown[]) => { answers.push(ds); return ds.map(() => ({ allowed: true, headers: { 'X-RateLimit-Limit': '7' } })) }
  } as unknown as Gate
  let server: grpc.Server
  let address: string
  let session: http2.ClientHttp2Session
  let serviceCalls = 0

  beforeAll(async () => {
    server = new grpc.Server({ interceptors: [rlsUnaryInterceptor({ gate })] })
    server.addService(rlsServiceDefinition(), { ShouldRateLimit: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => { serviceCalls++; cb({ code: grpc.status.INTERNAL, details: 'the service function ran' }) } })
    // Another method on the same server: the interceptor passes it through to its handler.
    server.register('/test.Echo/Echo', (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => { cb(null, call.request) }, (b: Buffer) => b, (b: Buffer) => b, 'unary')
    const port = await new Promise<number>((resolve, reject) => { server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => { if (e !== null) reject(e); else resolve(p) }) })
    address = `127.0.0.1:${port}`
    session = http2.connect(`http://${address}`)
  })
  afterAll(async () => {
    await new Promise<void>(resolve => { if (session === undefined) resolve(); else session.close(resolve) })
    server?.forceShutdown()
  })

  const frame = (msg: Buffer): Buffer => Buffer.concat([Buffer.from([0, 0, 0, 0, msg.length]), msg])
  const request = (o: unknown): Buffer => frame((loadRls() as any).envoy.service.ratelimit.v3.RateLimitService.service.ShouldRateLimit.requestSerialize(o) as Buffer)
  /** One call over raw HTTP/2: the response body and the trailers' status. */
  /** One call over raw HTTP/2 (`on`: another session; `headers`: more request headers; `delayMs`: send the body that late). */
  const raw = async (path: string, body: Buffer, o: { on?: http2.ClientHttp2Session, headers?: http2.OutgoingHttpHeaders, delayMs?: number } = {}): Promise<{ status: string | undefined, message: string | undefined, data: Buffer }> => await new Promise((resolve, reject) => {
    const st = (o.on ?? session).request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...o.headers })
    const chunks: Buffer[] = []
    let status: string | undefined
    let message: string | undefined
    const trailers = (t: http2.IncomingHttpHeaders): void => { status ??= t['grpc-status'] as string | undefined; message ??= t['grpc-message'] as string | undefined }
    st.on('response', trailers) // a trailers-only answer carries the status in its headers
    st.on('trailers', trailers)
    st.on('data', (c: Buffer) => chunks.push(c))
    st.on('error', reject)
    st.on('close', () => { resolve({ status, message: message === undefined ? undefined : decodeURIComponent(message), data: Buffer.concat(chunks) }) })
    if (o.delayMs === undefined) st.end(body)
    else setTimeout(() => st.end(body), o.delayMs)
  })
  const PATH = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit'

  it('answers from the gate without running the service function', async () => {
    const r = await raw(PATH, request({ domain: 'api', descriptors: [{ entries: [{ key: 'user', value: 'u1' }] }] }))
    expect(r.status).toBe('0')
    const res = (loadRls() as any).envoy.service.ratelimit.v3.RateLimitService.service.ShouldRateLimit.responseDeserialize(r.data.subarray(5))
    expect(res.overall_code).toBe('OK')
    expect(res.response_headers_to_add.map((h: any) => [h.key, h.value])).toEqual([['X-RateLimit-Limit', '7']])
    expect(answers.at(-1)).toEqual([{ domain: 'api', user: 'u1' }])
    expect(serviceCalls).toBe(0)
  })

  it('refuses a second request message or none at all with UNIMPLEMENTED, as grpc-js does for unary methods', async () => {
    const one = request({ domain: 'api', descriptors: [{ entries: [{ key: 'user', value: 'u2' }] }] })
    const before = answers.length
    const two = await raw(PATH, Buffer.concat([one, one]))
    expect(two.status).toBe(String(grpc.status.UNIMPLEMENTED))
    expect(two.message).toMatch(/one request message; received a second/)
    const none = await raw(PATH, Buffer.alloc(0))
    expect(none.status).toBe(String(grpc.status.UNIMPLEMENTED))
    expect(none.message).toMatch(/received none/)
    expect(answers.length).toBe(before) // nothing was decided
    expect(serviceCalls).toBe(0)
  })

  it('answers INVALID_ARGUMENT for a malformed request and UNKNOWN when answering throws', async () => {
    const bad = await raw(PATH, frame(Buffer.from([0x0a, 0x05, 0x61])))
    expect(bad.status).toBe(String(grpc.status.INVALID_ARGUMENT))
    expect(bad.message).toMatch(/not a valid RateLimitRequest/)
    const throwing = new grpc.Server({ interceptors: [rlsUnaryInterceptor({ gate: { headers: { quotaName: () => 'q' }, checkAll: () => [] } as unknown as Gate })] })
    throwing.addService(rlsServiceDefinition(), { ShouldRateLimit: () => { serviceCalls++ } })
    const port = await new Promise<number>((resolve, reject) => { throwing.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => { if (e !== null) reject(e); else resolve(p) }) })
    const other = http2.connect(`http://127.0.0.1:${port}`)
    try {
      // checkAll returning no result makes worst() read past the end: a bug in answering, not in the request.
      const r = await raw(PATH, request({ domain: 'api', descriptors: [{ entries: [{ key: 'user', value: 'u3' }] }] }), { on: other })
      expect(r.status).toBe(String(grpc.status.UNKNOWN))
    } finally {
      await new Promise<void>(resolve => { other.close(resolve) })
      throwing.forceShutdown()
    }
    expect(serviceCalls).toBe(0)
  })

  it('passes other methods through to their handlers', async () => {
    const r = await raw('/test.Echo/Echo', frame(Buffer.from('hello')))
    expect(r.status).toBe('0')
    expect(r.data.subarray(5).toString()).toBe('hello')
  })

  it('ends with DEADLINE_EXCEEDED when the client deadline passes first, like any grpc-js call', async () => {
    // A deadline of 1 ns has passed before the call is read.
    const r = await raw(PATH, request({ domain: 'api', descriptors: [{ entries: [{ key: 'user', value: 'late' }] }] }), { headers: { 'grpc-timeout': '1n' }, delayMs: 20 })
    expect(r.status).toBe(String(grpc.status.DEADLINE_EXCEEDED))
  })
})

describe('finished calls are cut loose from their HTTP/2 stream (detachCall)', () => {
  it('removes the data and end listeners only once the request side has ended', () => {
    const ended = Object.assign(new EventEmitter(), { readableEnded: true })
    for (const e of ['data', 'end', 'close']) ended.on(e, () => {})
    expect(detachCall({ stream: ended })).toBe(true)
    expect([ended.listenerCount('data'), ended.listenerCount('end'), ended.listenerCount('close')]).toEqual([0, 0, 1])
    // Still reading: node may be waiting on 'end' to destroy the stream.
    const reading = Object.assign(new EventEmitter(), { readableEnded: false })
    reading.on('end', () => {})
    expect(detachCall({ stream: reading })).toBe(false)
    expect(reading.listenerCount('end')).toBe(1)
    expect(detachCall({})).toBe(false)
    expect(detachCall(undefined)).toBe(false)
  })

  it('leaves no listener of grpc-js on an answered call\'s stream, and a cancelled call\'s stream is still destroyed', async () => {
    // A spy interceptor ahead of ours sees grpc-js's base call and its stream.
    const streams: http2.ServerHttp2Stream[] = []
    const spy: grpc.ServerInterceptor = (_m, call) => { streams.push((call as unknown as { stream: http2.ServerHttp2Stream }).stream); return call as grpc.ServerInterceptingCall }
    const gate = { headers: { quotaName: () => 'q' }, checkAll: (ds: unknown[]) => ds.map(() => ({ allowed: true, headers: {} })) } as unknown as Gate
    const server = new grpc.Server({ interceptors: [spy, rlsUnaryInterceptor({ gate })] })
    server.addService(rlsServiceDefinition(), { ShouldRateLimit: () => {} })
    const port = await new Promise<number>((resolve, reject) => { server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => { if (e !== null) reject(e); else resolve(p) }) })
    const session = http2.connect(`http://127.0.0.1:${port}`)
    const waitFor = async (what: string, cond: () => boolean): Promise<void> => {
      for (let i = 0; i < 200 && !cond(); i++) await new Promise(resolve => setTimeout(resolve, 10))
      if (!cond()) throw new Error(`timed out after 2 s waiting for ${what}`)
    }
    try {
      const method = (loadRls() as any).envoy.service.ratelimit.v3.RateLimitService.service.ShouldRateLimit
      const body = method.requestSerialize({ domain: 'api', descriptors: [{ entries: [{ key: 'user', value: 'd1' }] }] }) as Buffer
      const headers = { ':method': 'POST', ':path': method.path, 'content-type': 'application/grpc', te: 'trailers' }
      const status = await new Promise<string | undefined>((resolve, reject) => {
        const st = session.request(headers)
        let s: string | undefined
        st.on('trailers', t => { s = t['grpc-status'] as string })
        st.on('error', reject)
        st.resume()
        st.on('close', () => { resolve(s) })
        st.end(Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]))
      })
      expect(status).toBe('0')
      const answered = streams[0]
      await waitFor('the answered stream to be destroyed', () => answered.destroyed)
      expect([answered.listenerCount('data'), answered.listenerCount('end')]).toEqual([0, 0])
      // A client that sends half a request and cancels: the stream must still be destroyed (no stream left in the session).
      const st = session.request(headers)
      st.on('error', () => {})
      st.write(Buffer.from([0, 0, 0, 0, body.length]))
      await waitFor('the second call to reach the server', () => streams.length === 2)
      st.close(http2.constants.NGHTTP2_CANCEL)
      await waitFor('the cancelled stream to be destroyed', () => streams[1].destroyed)
    } finally {
      await new Promise<void>(resolve => { session.close(resolve) })
      server.forceShutdown()
    }
  })
})
