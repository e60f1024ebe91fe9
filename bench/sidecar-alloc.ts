/**
 * Garbage per request of the sidecar's decision paths: a sidecar in this process, a
 * client in a worker thread (its own heap), and V8's sampling heap profiler counting
 * every allocation of the sidecar's heap, collected ones included, over a fixed number
 * of requests. Allocation is what the collector pays for, and unlike latency on a shared
 * machine it does not depend on the load.
 *
 *   node dist/bench/sidecar-alloc.js [--api grpc|http] [--calls N] [--root DIR] [--top N] [--json]
 *
 * `--root` loads the sidecar from another checkout's build (e.g. /work/main) for an A/B
 * run with the same client. The last stdout line is one JSON object.
 */
import { Session } from 'node:inspector/promises'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { benchArgs } from './args.js'

interface Args { api: 'grpc' | 'http', calls: number, root: string, top: number, json: boolean }

function parseArgs (argv: string[]): Args {
  const f = benchArgs('sidecar-alloc', argv, { api: 'grpc', calls: 20_000, root: fileURLToPath(new URL('../..', import.meta.url)), top: 15, json: false }, {}, ['calls'])
  if (f.api !== 'grpc' && f.api !== 'http') throw new Error(`--api is grpc or http, got ${f.api}`)
  return { ...f, api: f.api }
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
  const { startSidecar, configWith } = await import(dist('sidecar/index.js')) as typeof import('../src/sidecar/index.js')
  const { createLogger } = await import(dist('log.js')) as typeof import('../src/log.js')
  const s = await startSidecar({
    logger: createLogger({ level: 'silent' }),
    config: configWith({ policies: POLICIES, http: { port: 0 }, grpc: { port: 0 }, admin: { enabled: false }, escalation: { enabled: false } })
  })
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
  let total = 0
  const walk = (n: ProfileNode): void => {
    const f = n.callFrame
    const k = `${f.functionName === '' ? '(anonymous)' : f.functionName} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`
    total += n.selfSize
    self.set(k, (self.get(k) ?? 0) + n.selfSize)
    for (const c of n.children) walk(c)
  }
  walk(profile.head)
  const top = [...self].sort((x, y) => y[1] - x[1]).slice(0, a.top).map(([site, bytes]) => ({ site, bytesPerCall: Math.round(bytes / a.calls) }))
  const result = { bench: 'sidecar-alloc', node: process.version, api: a.api, root: a.root, calls: a.calls, bytesPerCall: Math.round(total / a.calls), top }
  if (!a.json) {
    process.stderr.write(`${a.api}: ${result.bytesPerCall} bytes allocated per request (sampled)\n`)
    for (const t of top) process.stderr.write(`${String(t.bytesPerCall).padStart(7)}  ${t.site}\n`)
  }
  process.stdout.write(JSON.stringify(result) + '\n')
}

main().catch((err: unknown) => {
  process.stderr.write(`sidecar-alloc failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
