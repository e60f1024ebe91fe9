/**
 * Garbage per request of the sidecar's decision paths: a sidecar in this process, a
 * client in a worker thread (its own heap), and V8's sampling heap profiler counting
 * every allocation of the sidecar's heap, collected ones included, over a fixed number
 * of requests. Allocation is what the collector pays for, and unlike latency on a shared
 * machine it does not depend on the load.
 *
 *   node dist/bench/sidecar-alloc.js [--api grpc|http|http-floor] [--calls N] [--root DIR] [--top N] [--stack N] [--json]
 *
 * `--root` loads the sidecar from another checkout's build (e.g. /work/main) for an A/B
 * run with the same client. `--api http-floor` measures node itself: the same HTTP client
 * against a bare node:http server that reads the body, JSON.parses it and answers a fixed
 * JSON body as long as a typical allowed decision, what no decision API can go below
 * (reported as `floorBytesPerCall` too). `--stack N` prints N callers under each top site.
 * The last stdout line is one JSON object.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { Session } from 'node:inspector/promises'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { benchArgs } from './args.js'

type Api = 'grpc' | 'http' | 'http-floor'
interface Args { api: Api, calls: number, root: string, top: number, stack: number, json: boolean }

function parseArgs (argv: string[]): Args {
  const f = benchArgs('sidecar-alloc', argv, { api: 'grpc', calls: 20_000, root: fileURLToPath(new URL('../..', import.meta.url)), top: 15, stack: 0, json: false }, {}, ['calls'])
  if (f.api !== 'grpc' && f.api !== 'http' && f.api !== 'http-floor') throw new Error(`--api is grpc, http or http-floor, got ${f.api}`)
  return { ...f, api: f.api }
}

// A typical allowed answer of the bench's policy (591 bytes): the floor server sends this many.
const FLOOR_BODY = '{"allowed":true,"status":200,"decision":{"allowed":true,"policy":"per-user","limitId":"0","algorithm":"token-bucket","scope":"global","limit":100,"windowMs":1000,"remaining":99,"resetMs":102,"retryAfterMs":0,"shadowDenied":false,"limits":[{"policy":"per-user","id":"0","algorithm":"token-bucket","scope":"global","limit":100,"windowMs":1000,"remaining":99,"resetMs":102,"retryAfterMs":0,"allowed":true,"shadow":false}]},"headers":{"X-RateLimit-Limit":"100","X-RateLimit-Remaining":"99","X-RateLimit-Reset":"1","RateLimit-Policy":"\\"per-user\\";q=100;w=1","RateLimit":"\\"per-user\\";r=99;t=1"}}'
const FLOOR_HEADERS = ['Content-Type', 'application/json', 'Content-Length', String(Buffer.byteLength(FLOOR_BODY))]

/** The floor: node:http with nothing of ours, the same keep-alive setting as the sidecar. */
async function startFloor (): Promise<{ httpUrl: string, close: () => Promise<void> }> {
  const server = createServer({ keepAliveTimeout: 65_000 }, (req: IncomingMessage, res: ServerResponse) => {
    let body: Buffer | undefined
    req.on('data', (c: Buffer) => { body = body === undefined ? c : Buffer.concat([body, c]) })
    req.on('end', () => {
      JSON.parse((body as Buffer).toString('utf8'))
      // Headers as one flat array (no per-response header object), the body as one string: the
      // header and body then go out as one chunk. A fixed Buffer saves ~200 B more, but an answer is built per request.
      res.writeHead(200, FLOOR_HEADERS)
      res.end(FLOOR_BODY)
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    httpUrl: `http://127.0.0.1:${port}`,
    close: async () => { server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) }
  }
}

const POLICIES = `policies:
  - id: per-user
    key: user
    limits: [ { algorithm: token-bucket, ratePerSecond: 100, burst: 100 } ]
`

// The clients: 16 requests in flight, 10,000 users, requests encoded before the run.
const GRPC_CLIENT = `
const { workerData, parentPort } = require('node:worker_threads')
const http2 = require('node:http2')
;(async () => {
  const { loadRls } = await import(workerData.grpcModule)
  const m = loadRls().envoy.service.ratelimit.v3.RateLimitService.service.ShouldRateLimit
  const reqs = Array.from({ length: 10000 }, (_, i) => {
    const b = m.requestSerialize({ domain: 'bench', descriptors: [{ entries: [{ key: 'user', value: 'u' + i }] }] })
    const f = Buffer.alloc(5 + b.length); f.writeUInt32BE(b.length, 1); b.copy(f, 5); return f
  })
  const session = http2.connect('http://' + workerData.grpc)
  const headers = { ':method': 'POST', ':path': m.path, 'content-type': 'application/grpc', te: 'trailers' }
  parentPort.on('message', calls => {
    let n = 0, inflight = 0
    const one = () => {
      inflight++
      const st = session.request(headers)
      st.on('data', () => {})
      st.on('error', () => {})
      st.on('close', () => { inflight--; if (n < calls) one(); else if (inflight === 0) parentPort.postMessage('done') })
      st.end(reqs[n++ % 10000])
    }
    for (let i = 0; i < 16; i++) one()
  })
  parentPort.postMessage('ready')
})()
`
const HTTP_CLIENT = `
const { workerData, parentPort } = require('node:worker_threads')
const http = require('node:http')
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 })
const bodies = Array.from({ length: 10000 }, (_, i) => JSON.stringify({ descriptor: { user: 'u' + i } }))
const u = new URL(workerData.http)
parentPort.on('message', calls => {
  let n = 0, inflight = 0
  const one = () => {
    inflight++
    const b = bodies[n++ % 10000]
    const req = http.request({ host: u.hostname, port: u.port, path: '/v1/check', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) } }, res => {
      res.resume()
      res.on('end', () => { inflight--; if (n < calls) one(); else if (inflight === 0) parentPort.postMessage('done') })
    })
    req.end(b)
  }
  for (let i = 0; i < 16; i++) one()
})
parentPort.postMessage('ready')
`

interface ProfileNode { callFrame: { functionName: string, url: string, lineNumber: number }, selfSize: number, children: ProfileNode[] }

async function main (): Promise<void> {
  const a = parseArgs(process.argv.slice(2))
  const dist = (rel: string): string => new URL(`file://${a.root}/dist/src/${rel}`).href
  let s: { grpcAddress?: string, httpUrl: string, close: () => Promise<void> }
  if (a.api === 'http-floor') s = await startFloor()
  else {
    const { startSidecar, configWith } = await import(dist('sidecar/index.js')) as typeof import('../src/sidecar/index.js')
    const { createLogger } = await import(dist('log.js')) as typeof import('../src/log.js')
    s = await startSidecar({
      logger: createLogger({ level: 'silent' }),
      config: configWith({ policies: POLICIES, http: { port: 0 }, grpc: { port: 0 }, admin: { enabled: false }, escalation: { enabled: false } })
    })
  }
  const worker = new Worker(a.api === 'grpc' ? GRPC_CLIENT : HTTP_CLIENT, { eval: true, workerData: { grpc: s.grpcAddress, http: s.httpUrl, grpcModule: dist('sidecar/grpc.js') } })
  const next = async (): Promise<void> => { await new Promise(resolve => worker.once('message', resolve)) }
  await next()
  const run = async (calls: number): Promise<void> => { worker.postMessage(calls); await next() }
  await run(a.calls) // warm-up: code optimised, keys created
  const session = new Session()
  session.connect()
  await session.post('HeapProfiler.enable')
  await session.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true })
  await run(a.calls)
  const { profile } = await session.post('HeapProfiler.stopSampling') as unknown as { profile: { head: ProfileNode } }
  session.disconnect()
  await worker.terminate()
  await s.close()

  const self = new Map<string, number>()
  // Per site, the bytes by chain of `--stack` callers.
  const callers = new Map<string, Map<string, number>>()
  let total = 0
  const name = (f: ProfileNode['callFrame']): string => `${f.functionName === '' ? '(anonymous)' : f.functionName} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`
  const path: string[] = []
  const walk = (n: ProfileNode): void => {
    const k = name(n.callFrame)
    total += n.selfSize
    self.set(k, (self.get(k) ?? 0) + n.selfSize)
    if (a.stack > 0 && n.selfSize > 0) {
      const chain = path.slice(-a.stack).reverse().join(' < ')
      const m = callers.get(k) ?? new Map<string, number>()
      callers.set(k, m.set(chain, (m.get(chain) ?? 0) + n.selfSize))
    }
    path.push(k)
    for (const c of n.children) walk(c)
    path.pop()
  }
  walk(profile.head)
  const top = [...self].sort((x, y) => y[1] - x[1]).slice(0, a.top).map(([site, bytes]) => ({ site, bytesPerCall: Math.round(bytes / a.calls) }))
  const bytesPerCall = Math.round(total / a.calls)
  const result = { bench: 'sidecar-alloc', node: process.version, api: a.api, root: a.root, calls: a.calls, bytesPerCall, ...(a.api === 'http-floor' ? { floorBytesPerCall: bytesPerCall } : {}), top }
  if (!a.json) {
    process.stderr.write(`${a.api}: ${result.bytesPerCall} bytes allocated per request (sampled)\n`)
    for (const t of top) {
      process.stderr.write(`${String(t.bytesPerCall).padStart(7)}  ${t.site}\n`)
      const m = callers.get(t.site)
      if (m !== undefined) {
        for (const [chain, bytes] of [...m].sort((x, y) => y[1] - x[1]).slice(0, 3)) process.stderr.write(`${String(Math.round(bytes / a.calls)).padStart(15)}  < ${chain}\n`)
      }
    }
  }
  process.stdout.write(JSON.stringify(result) + '\n')
}

main().catch((err: unknown) => {
  process.stderr.write(`sidecar-alloc failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
