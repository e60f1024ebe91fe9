/**
 * The floor of bench:sidecar: node's HTTP server and grpc-js with no limiter behind them.
 * Same ports and protocols as the sidecar, same request parsing, an answer of the same
 * shape and size (taken from the sidecar in the same run), and no decision: what the
 * sidecar's latency would be if meshlimit cost nothing. Started by bench/sidecar.ts.
 *
 *   node dist/bench/floor-server.js ANSWER_FILE
 *
 * ANSWER_FILE holds `{ "http": "<the sidecar's /v1/check answer text>" }`. Prints one JSON
 * line `{"http": url, "grpc": address}` on standard output when both listen.
 *
 * GET /metrics answers the event-loop figures bench:sidecar reads from the sidecar, under
 * the sidecar's names: the delay's p99 and max since the previous scrape and, with
 * MESHLIMIT_STALL_WATCH_MS set, the stall watch's counts (src/sidecar/stalls.ts).
 */
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import * as grpc from '@grpc/grpc-js'
import { rlsServiceDefinition } from '../src/sidecar/grpc.js'
import { createStallWatch, type StallWatch } from '../src/sidecar/stalls.js'
import type { RlsResponse } from '../src/sidecar/rls-codec.js'
import { floorRlsResponse } from './floor.js'

/** The sidecar's event-loop series (their names and units), for bench:sidecar's reader. */
function metricsText (delay: ReturnType<typeof monitorEventLoopDelay>, watch: StallWatch | undefined): string {
  const lines = [
    `meshlimit_process_nodejs_eventloop_lag_p99_seconds ${delay.percentile(99) / 1e9}`,
    `meshlimit_process_nodejs_eventloop_lag_max_seconds ${delay.max / 1e9}`
  ]
  delay.reset()
  if (watch !== undefined) {
    const st = watch.stats()
    for (const [cause, n, ms] of [['gc', st.gcStalls, st.gcStallMs], ['task', st.taskStalls, st.taskStallMs], ['wait', st.waitStalls, st.waitStallMs]] as const) {
      lines.push(`meshlimit_event_loop_stalls_total{cause="${cause}"} ${n}`, `meshlimit_event_loop_stall_seconds_total{cause="${cause}"} ${ms / 1000}`)
    }
  }
  return lines.join('\n') + '\n'
}

async function main (): Promise<void> {
  const delay = monitorEventLoopDelay({ resolution: 10 })
  delay.enable()
  const stallMs = Number(process.env.MESHLIMIT_STALL_WATCH_MS ?? 0)
  const watch = stallMs > 0 ? createStallWatch({ thresholdMs: stallMs }) : undefined
  const text = (JSON.parse(readFileSync(process.argv[2], 'utf8')) as { http: string }).http
  const body = Buffer.from(text)
  const rls = floorRlsResponse(JSON.parse(text))
  // The sidecar's HTTP server options; the body is read and JSON-parsed (the sidecar's reader and checks are not used), then answered as is.
  const http = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      req.resume()
      res.end(metricsText(delay, watch))
      return
    }
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      let user: unknown
      try { user = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { descriptor?: { user?: unknown } }).descriptor?.user } catch {}
      if (req.url !== '/v1/check' || typeof user !== 'string') {
        res.statusCode = 400
        res.end()
        return
      }
      res.statusCode = 200
      res.setHeader('Content-Type', 'application/json')
      res.setHeader('Content-Length', body.length)
      res.end(body)
    })
  })
  await new Promise<void>(resolve => http.listen(0, '127.0.0.1', resolve))
  // The sidecar's gRPC server: its options, its service definition (our request decoder and response encoder).
  const server = new grpc.Server({ 'grpc.enable_channelz': 0 })
  server.addService(rlsServiceDefinition(), {
    ShouldRateLimit (call: grpc.ServerUnaryCall<unknown, RlsResponse>, callback: grpc.sendUnaryData<RlsResponse>) {
      if (typeof call.request !== 'object' || call.request === null || 'malformed' in call.request) callback({ code: grpc.status.INVALID_ARGUMENT })
      else callback(null, rls)
    }
  })
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { if (err !== null) reject(err); else resolve(p) })
  })
  process.stdout.write(JSON.stringify({ http: `http://127.0.0.1:${(http.address() as AddressInfo).port}`, grpc: `127.0.0.1:${port}` }) + '\n')
  process.on('SIGTERM', () => { watch?.stop(); delay.disable(); server.forceShutdown(); http.close(); http.closeAllConnections() })
}

main().catch((err: unknown) => {
  process.stderr.write(`floor-server failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
