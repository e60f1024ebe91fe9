/**
 * What the sidecar's gRPC path promotes to the old generation, from V8's own GC trace.
 * The parent process runs a child under `--trace-gc-nvp`; the child starts a sidecar
 * in-process and drives ShouldRateLimit with h2load (nghttp2's native generator: one
 * connection, `--streams` calls in flight at most, groups of 5 calls every 0.5 ms at
 * `--rate`, as bench:sidecar's `--h2load-pacing script`). The parent keeps the trace
 * lines of the measured run and sums them: scavenges, their pauses, bytes promoted per
 * scavenge and per call, full collections. `--full-gc-at-ms` (default 1000, 0: none)
 * forces one full collection that long into the measured run, as a sidecar that has
 * been up for a while has had: what the young generation then promotes differs.
 *
 * `--stream-table keep` is an experiment, not a fix: it swaps each HTTP/2 session's
 * table of open streams (node's `session[kState].streams`, a Map that gets one entry
 * added and one deleted per call) for a Map whose entries are set to undefined instead
 * of deleted, so that it never rehashes on deletes (it grows with every stream id).
 * Comparing it with `churn` (node as it is) isolates what the churning Map costs.
 *
 *   node dist/bench/grpc-promotion.js [--rate N] [--seconds N] [--streams N] [--stream-table churn|keep] [--full-gc-at-ms N] [--root DIR] [--json]
 *
 * Needs h2load (Debian package nghttp2-client). The last stdout line is one JSON object.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type * as Http2 from 'node:http2'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { benchArgs } from './args.js'
import { RLS_PATH, rlsRequestBody, timingScript } from './h2load.js'

interface Args { rate: number, seconds: number, streams: number, streamTable: string, fullGcAtMs: number, root: string, json: boolean, child: boolean }

const POLICIES = `policies:
  - id: per-user
    key: user
    limits: [ { algorithm: token-bucket, ratePerSecond: 100, burst: 100 } ]
`
const START = 'grpc-promotion: run starts'
const END = 'grpc-promotion: run ends'

/** Makes every HTTP/2 session's stream table one that never deletes (see the file comment). */
function keepStreamTables (): void {
  // The CommonJS module object grpc-js requires (an ES namespace cannot be patched).
  const http2 = createRequire(import.meta.url)('node:http2') as typeof Http2
  const create = http2.createServer
  const patched = (...args: Parameters<typeof Http2.createServer>): Http2.Http2Server => {
    const server = create(...args)
    server.on('session', (session: Http2.ServerHttp2Session) => {
      const kState = Object.getOwnPropertySymbols(session).find(s => s.description === 'state')
      const state = kState === undefined ? undefined : (session as unknown as Record<symbol, { streams?: unknown }>)[kState]
      // node's SafeMap is a Map whose prototype chain does not reach Map.prototype.
      if (state === undefined || Object.prototype.toString.call(state.streams) !== '[object Map]' || (state.streams as { size: number }).size !== 0) throw new Error('grpc-promotion: this node has no empty session[kState].streams Map to swap')
      const m = new Map<number, unknown>()
      let live = 0
      state.streams = {
        get: (id: number) => m.get(id),
        has: (id: number) => m.get(id) !== undefined,
        set (id: number, v: unknown) { if (m.get(id) === undefined) live++; m.set(id, v); return this },
        delete: (id: number) => { if (m.get(id) === undefined) return false; live--; m.set(id, undefined); return true },
        get size () { return live },
        forEach: (f: (v: unknown, k: number) => void) => { m.forEach((v, k) => { if (v !== undefined) f(v, k) }) },
        * values () { for (const v of m.values()) if (v !== undefined) yield v }
      }
    })
    return server
  }
  ;(http2 as { createServer: unknown }).createServer = patched
}

async function child (a: Args): Promise<void> {
  if (a.streamTable === 'keep') keepStreamTables()
  const dist = (rel: string): string => new URL(`file://${a.root}/dist/src/${rel}`).href
  const { startSidecar, configWith } = await import(dist('sidecar/index.js')) as typeof import('../src/sidecar/index.js')
  const { createLogger } = await import(dist('log.js')) as typeof import('../src/log.js')
  const s = await startSidecar({
    logger: createLogger({ level: 'silent' }),
    config: configWith({ policies: POLICIES, http: { port: 0 }, grpc: { port: 0 }, admin: { enabled: false }, escalation: { enabled: false } })
  })
  const dir = mkdtempSync(join(tmpdir(), 'grpc-promotion-'))
  const h2load = async (calls: number): Promise<string> => {
    writeFileSync(join(dir, 'body'), rlsRequestBody('u0'))
    writeFileSync(join(dir, 'script'), timingScript(`http://${s.grpcAddress ?? ''}${RLS_PATH}`, a.rate, calls, 0, 5))
    // libev's select backend and a 1 ns timer slack for sub-ms waits, as bench:sidecar runs it.
    const args = ['-c', '1', '-m', String(a.streams), '-t', '1', '-d', join(dir, 'body'), '--timing-script-file', join(dir, 'script'), '-n', String(calls), '-H', 'content-type: application/grpc', '-H', 'te: trailers']
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn('sh', ['-c', '{ echo 1 > /proc/self/timerslack_ns; } 2>/dev/null; exec h2load "$@"', 'h2load', ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, LIBEV_FLAGS: '1' } })
      let text = ''
      p.stdout.on('data', (b: Buffer) => { text += b.toString() })
      p.on('error', reject)
      p.on('close', code => { if (code === 0) resolve(text); else reject(new Error(`h2load exited with ${String(code)} (is nghttp2-client installed?): ${text}`)) })
    })
    const ok = /(\d+) succeeded/.exec(out)
    if (ok === null || Number(ok[1]) !== calls) throw new Error(`h2load did not complete every call: ${out}`)
    return out
  }
  try {
    await h2load(a.rate * 2) // warm-up: code optimised
    process.stdout.write(START + '\n')
    const t0 = performance.now()
    // A long-running sidecar has had full collections on its connections; one early in the run stands for them.
    const gc = (globalThis as { gc?: () => void }).gc
    const timer = a.fullGcAtMs > 0 && gc !== undefined ? setTimeout(gc, a.fullGcAtMs) : undefined
    const out = await h2load(a.rate * a.seconds)
    clearTimeout(timer)
    const ms = performance.now() - t0
    process.stdout.write(END + '\n')
    const mean = /time for request:\s+\S+\s+\S+\s+(\d+(?:\.\d+)?)(us|ms|s)/.exec(out)
    const meanMs = mean === null ? null : Number(mean[1]) * (mean[2] === 'us' ? 0.001 : mean[2] === 'ms' ? 1 : 1000)
    process.stdout.write(JSON.stringify({ calls: a.rate * a.seconds, achievedPerSec: Math.round(a.rate * a.seconds / ms * 1000), h2loadMeanMs: meanMs }) + '\n')
  } finally {
    rmSync(dir, { recursive: true, force: true })
    await s.close()
  }
}

interface Gc { kind: string, pause: number, promoted: number }

async function parent (a: Args, argv: string[]): Promise<void> {
  const p = spawn(process.execPath, ['--trace-gc-nvp', '--expose-gc', fileURLToPath(import.meta.url), '--child', ...argv], { stdio: ['ignore', 'pipe', 'inherit'] })
  const gcs: Gc[] = []
  let inRun = false
  let run: { calls: number, achievedPerSec: number, h2loadMeanMs: number | null } | undefined
  createInterface({ input: p.stdout }).on('line', line => {
    if (line === START) inRun = true
    else if (line === END) inRun = false
    else if (line.startsWith('{')) run = JSON.parse(line)
    else if (inRun && line.includes(' gc=')) {
      const f = (k: string): string | undefined => new RegExp(`(?:^|\\s)${k}=(\\S+)`).exec(line)?.[1]
      gcs.push({ kind: f('gc') ?? '?', pause: Number(f('pause')), promoted: Number(f('promoted')) })
    }
  })
  const code = await new Promise<number | null>(resolve => p.on('close', resolve))
  if (code !== 0 || run === undefined) throw new Error(`the measuring child failed (exit ${String(code)})`)
  const sc = gcs.filter(g => g.kind === 's')
  const full = gcs.filter(g => g.kind !== 's')
  const promoted = sc.reduce((n, g) => n + g.promoted, 0) + full.reduce((n, g) => n + g.promoted, 0)
  const r2 = (x: number): number => Math.round(x * 100) / 100
  const result = {
    bench: 'grpc-promotion',
    node: process.version,
    root: a.root,
    streamTable: a.streamTable,
    rate: a.rate,
    streams: a.streams,
    ...run,
    scavenges: sc.length,
    scavengePauseMeanMs: sc.length === 0 ? 0 : r2(sc.reduce((n, g) => n + g.pause, 0) / sc.length),
    scavengePauseMaxMs: sc.reduce((m, g) => Math.max(m, g.pause), 0),
    promotedPerScavengeKB: sc.length === 0 ? 0 : Math.round(sc.reduce((n, g) => n + g.promoted, 0) / sc.length / 1024),
    scavengesPromotingOver1MB: sc.filter(g => g.promoted > 1 << 20).length,
    promotedBytesPerCall: Math.round(promoted / run.calls),
    fullGcs: full.length,
    fullGcMs: Math.round(full.reduce((n, g) => n + g.pause, 0))
  }
  if (!a.json) {
    process.stderr.write(`${result.calls} calls at ${result.achievedPerSec}/s (stream table: ${a.streamTable}), h2load mean ${String(result.h2loadMeanMs)} ms: ` +
      `${result.scavenges} scavenges (mean ${result.scavengePauseMeanMs} ms, max ${result.scavengePauseMaxMs} ms), ${result.promotedPerScavengeKB} KB promoted per scavenge ` +
      `(${result.scavengesPromotingOver1MB} over 1 MB), ${result.promotedBytesPerCall} B per call; ${result.fullGcs} full collections (${result.fullGcMs} ms)\n`)
  }
  process.stdout.write(JSON.stringify(result) + '\n')
}

async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  const a: Args = benchArgs('grpc-promotion', argv, { rate: 10_000, seconds: 8, streams: 256, streamTable: 'churn', fullGcAtMs: 1000, root: fileURLToPath(new URL('../..', import.meta.url)), json: false, child: false }, {}, ['rate', 'seconds', 'streams'])
  if (a.streamTable !== 'churn' && a.streamTable !== 'keep') throw new Error(`--stream-table is churn or keep, got ${a.streamTable}`)
  if (a.child) await child(a)
  else await parent(a, argv)
}

main().catch((err: unknown) => {
  process.stderr.write(`grpc-promotion failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
