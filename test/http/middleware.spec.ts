import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import Fastify from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { createLimiter, type Limiter } from '../../src/index.js'
import { createBlocklist } from '../../src/abuse/blocklist.js'
import { meshlimitExpress } from '../../src/http/express.js'
import { meshlimitFastify } from '../../src/http/fastify.js'
import { apiKeyFrom, clientIpFrom } from '../../src/http/keys.js'
import type { MiddlewareInit } from '../../src/http/middleware.js'
import { meshlimitNode } from '../../src/http/node.js'
import { parseList } from './sf-parser.js'

const POLICIES = `
policies:
  - id: per-ip
    key: ip
    limits: [ { limit: 3, window: 1h, algorithm: fixed-window } ]
  - id: uploads
    key: [ip, route]
    match: { route: /upload }
    limits: [ { limit: 10, window: 1h, algorithm: fixed-window } ]
`

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closers.splice(0)) await c()
})

async function listen (server: Server): Promise<string> {
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  closers.push(async () => { server.closeAllConnections(); await new Promise<void>(resolve => server.close(() => { resolve() })) })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

type Framework = (init: MiddlewareInit) => Promise<string>

/** The /slow handler tells the test it is running, then waits for the test to let it finish: no sleeps. */
interface Latch { promise: Promise<void>, resolve: () => void }
function latch (): Latch {
  let resolve!: () => void
  const promise = new Promise<void>(r => { resolve = r })
  return { promise, resolve }
}
let slow = { entered: latch(), release: latch() }
async function holdSlow (): Promise<string> {
  slow.entered.resolve()
  await slow.release.promise
  return 'slow'
}

const frameworks: Record<string, Framework> = {
  'node:http': async init => await listen(createServer(meshlimitNode(init)((req, res) => {
    if (req.url === '/slow') void holdSlow().then(t => res.end(t))
    else res.end('ok')
  }))),
  express: async init => {
    const app = express()
    app.use(meshlimitExpress(init))
    app.get('/slow', (_req, res) => { void holdSlow().then(t => res.send(t)) })
    app.all('/{*rest}', (_req, res) => { res.send('ok') })
    return await listen(createServer(app))
  },
  fastify: async init => {
    const app = Fastify()
    await app.register(meshlimitFastify as never, init)
    app.get('/slow', async () => await holdSlow())
    app.all('/*', async () => 'ok')
    await app.listen({ port: 0, host: '127.0.0.1' })
    closers.push(async () => { await app.close() })
    return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  }
}

const limiters: Limiter[] = []
afterEach(() => { for (const l of limiters.splice(0)) l.close() })
const limiterOf = (policies = POLICIES): Limiter => {
  const l = createLimiter({ policies })
  limiters.push(l)
  return l
}

describe.each(Object.keys(frameworks))('%s middleware', name => {
  const serve = frameworks[name]

  it('sets the headers on admitted responses and refuses with 429, Retry-After and a problem body', async () => {
    const base = await serve({ limiter: limiterOf() })
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${base}/hello`)
      expect(r.status).toBe(200)
      expect(await r.text()).toBe('ok')
      expect(r.headers.get('x-ratelimit-remaining')).toBe(String(2 - i))
      expect(parseList(r.headers.get('ratelimit-policy') as string)).toEqual([{ value: 'per-ip', params: [['q', 3], ['w', 3600]] }])
    }
    const r = await fetch(`${base}/hello?x=1`)
    expect(r.status).toBe(429)
    expect(r.headers.get('content-type')).toBe('application/problem+json')
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(await r.json()).toMatchObject({ status: 429, violatedPolicies: ['per-ip'], instance: '/hello' })
  })

  it('applies per-route overrides: skip, cost and descriptor fields', async () => {
    const base = await serve({
      limiter: limiterOf(),
      routes: { '/healthz': { skip: true }, 'POST /upload': { cost: 3 }, '/static/*': { descriptor: { ip: 'shared-static' } } }
    })
    for (let i = 0; i < 5; i++) expect((await fetch(`${base}/healthz`)).headers.get('x-ratelimit-limit')).toBeNull()
    const up = await fetch(`${base}/upload`, { method: 'POST' })
    expect(up.status).toBe(200)
    expect(up.headers.get('ratelimit')).toMatch(/^"per-ip";r=0;t=\d+, "uploads";r=7;t=\d+$/)
    // The static prefix is keyed on one shared value, not on this client's address.
    expect((await fetch(`${base}/static/a.css`)).headers.get('x-ratelimit-remaining')).toBe('2')
  })

  it('calls onDenied, which may write its own response', async () => {
    const seen: string[] = []
    const base = await serve({
      limiter: limiterOf(),
      onDenied: (req, res, r) => {
        seen.push(`${req.url ?? ''} ${r.decision?.policy ?? ''}`)
        res.statusCode = 503
        res.end('go away')
        return true
      }
    })
    for (let i = 0; i < 3; i++) await fetch(`${base}/x`)
    const r = await fetch(`${base}/x`)
    expect(r.status).toBe(503)
    expect(await r.text()).toBe('go away')
    expect(seen).toEqual(['/x per-ip'])
  })

  it('holds concurrency leases until the response finishes', async () => {
    const base = await serve({
      limiter: limiterOf(`
policies:
  - id: in-flight
    key: ip
    limits: [ { algorithm: concurrency, limit: 1 } ]
`)
    })
    slow = { entered: latch(), release: latch() }
    const pending = fetch(`${base}/slow`)
    await slow.entered.promise
    const during = await fetch(`${base}/fast`)
    expect(during.status).toBe(429)
    slow.release.resolve()
    const done = await pending
    expect(done.status).toBe(200)
    expect(await done.text()).toBe('slow')
    expect(await (await fetch(`${base}/fast`)).text()).toBe('ok')
  })

  it('refuses blocked clients before the limiter', async () => {
    const blocklist = createBlocklist()
    blocklist.block('apiKey:bad', 60_000, 'abuse')
    const key = apiKeyFrom()
    const ip = clientIpFrom()
    const base = await serve({ limiter: limiterOf(), blocklist, descriptor: (req, path) => ({ ip: ip(req), apiKey: key(req), route: path }) })
    const r = await fetch(`${base}/x`, { headers: { 'x-api-key': 'bad' } })
    expect(r.status).toBe(429)
    expect(await r.json()).toMatchObject({ type: 'urn:meshlimit:problem:blocked' })
    expect((await fetch(`${base}/x`, { headers: { 'x-api-key': 'good' } })).status).toBe(200)
    blocklist.close()
  })
})

describe('run-time dependencies', () => {
  it('the middleware never imports express or fastify (they are dev dependencies)', async () => {
    const { readFile, readdir } = await import('node:fs/promises')
    for (const dir of ['src/http', 'src/sidecar', 'src/cli']) {
      for (const f of await readdir(dir)) {
        if (!f.endsWith('.ts')) continue
        const text = await readFile(`${dir}/${f}`, 'utf8')
        expect(text, `${dir}/${f}`).not.toMatch(/from '(express|fastify|autocannon|ioredis)'/)
        expect(text, `${dir}/${f}`).not.toMatch(/import\('(express|fastify)'\)/)
      }
    }
  })
})

describe('failures inside admission', () => {
  it('node:http answers 500 and keeps serving when the descriptor function throws', async () => {
    const errors: unknown[] = []
    let fail = true
    const base = await listen(createServer(meshlimitNode({
      limiter: limiterOf(),
      descriptor: () => { if (fail) throw new Error('boom'); return { ip: '1.2.3.4' } },
      onError: err => { errors.push(err) }
    })((_req, res) => { res.end('ok') })))
    const r = await fetch(`${base}/x`)
    expect(r.status).toBe(500)
    expect(r.headers.get('content-type')).toBe('application/problem+json')
    expect(errors).toHaveLength(1)
    fail = false
    expect((await fetch(`${base}/x`)).status).toBe(200)
  })
})
