/**
 * Sidecar benchmark: the decision API over HTTP and the Envoy rate limit service over
 * gRPC, each at saturation and at a fixed offered rate, against the same decision API
 * backed by a Redis token bucket (a Lua script per decision, as central-store limiters
 * do it) on a real redis-server on loopback.
 *
 *   npm run bench:sidecar -- [--json] [--no-saturation] [--duration S] [--http-rate N] [--grpc-rate N]
 *                            [--connections N] [--rate-connections N] [--users N] [--no-redis] [--no-floor]
 *                            [--only grpc|http|redis] [--pin] [--http-paced] [--sidecar-cli PATH]
 *                            [--sidecar-node-args "ARGS"] [--stall-watch MS] [--grpc-max-streams N]
 *                            [--generator node|h2load] [--h2load-keys K] [--h2load-processes P]
 *                            [--h2load-pacing rps|script]
 *                            [--h2load-grpc-clients N] [--h2load-streams N] [--h2load-http-clients N]
 *
 * `--generator h2load` drives every phase with h2load (nghttp2-client, native: it does
 * not stall like our node generators) instead of autocannon and the gRPC client loop;
 * see bench/sidecar-h2load.ts. It posts one body per process, so it spreads its load
 * over `--h2load-keys` users (default 1) where the node generators use `--users`.
 *
 * The floor (`baselines.floor*`, skip with `--no-floor`): after the sidecar, the same
 * phases against bench/floor-server.ts, node's HTTP server and grpc-js serving the same
 * requests with the sidecar's answer and no limiter behind them. Its latency is what the
 * sidecar's would be if meshlimit cost nothing on this machine, so `ratios.*VsFloor`
 * say what meshlimit adds, and a floor above a target says the target is the
 * platform's (node, grpc-js, two shared cores), not ours.
 *
 * `--sidecar-cli` runs another build's CLI (main's dist) under the same load generators,
 * for back-to-back comparisons; `--sidecar-node-args` passes node/V8 flags to the sidecar
 * (`--trace-gc`, `--cpu-prof`...; its extra stdout lines are copied to stderr).
 *
 * Stalls are located, not guessed: every fixed-rate phase reports the sidecar's
 * event-loop delay (p99, max, from its /metrics, which reset at each scrape) and this
 * process's own (the generator's lateness would otherwise look like server latency),
 * and for gRPC how many calls took over 5 ms and in how many 50 ms windows they fell.
 * `--stall-watch MS` runs the sidecar (and the floor) with MESHLIMIT_STALL_WATCH_MS=MS: its stalls of MS
 * or more are then split into collection pauses, long tasks and waits for a CPU.
 * `--grpc-max-streams N` runs it with MESHLIMIT_GRPC_MAX_STREAMS=N (calls in flight per
 * connection; the generator's session then queues the rest).
 *
 * Saturation phases keep `connections` requests in flight (HTTP connections, gRPC
 * calls); fixed-rate phases offer `--http-rate` / `--grpc-rate` requests per second
 * over `rate-connections` connections (calls in flight are then whatever the rate needs).
 *
 * The sidecar and the Redis baseline run in child processes; the load generators
 * (autocannon for HTTP, or with --http-paced our paced client for the fixed rate,
 * since autocannon's rate is a per-second budget sent in bursts; a gRPC client loop)
 * run in this one (`--pin`: servers on CPU 0,
 * this process on CPU 1). Installs redis-server with
 * apt-get when it is missing. The last stdout line is one JSON object.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { round3 } from './stats.js'
import { requireH2load, type H2loadOptions } from './sidecar-h2load.js'
import { parseArgs } from './sidecar-args.js'
import { apiPhases, bodies, h2loadRuns, httpPhase, warmS, type ApiRuns, type FixedHttpRun } from './sidecar-phases.js'

const log = (s: string): void => { process.stderr.write(s + '\n') }
const dist = (rel: string): string => fileURLToPath(new URL(rel, import.meta.url))

/** Same limit on both sides: a token bucket of 100 per second, burst 100, per user. */
const POLICIES = `policies:
  - id: per-user
    key: user
    limits: [ { algorithm: token-bucket, ratePerSecond: 100, burst: 100 } ]
`

/**
 * With --pin, servers (sidecar, Redis and its front end) run on CPU 0 and this process
 * (the load generators) on CPU 1, so a server's latency is not the generator's queueing
 * (needs taskset, util-linux).
 */
let pinned = false
const onServerCpu = (cmd: string, args: string[]): [string, string[]] => pinned ? ['taskset', ['-c', '0', cmd, ...args]] : [cmd, args]

/** Spawns a child and resolves with the first JSON line it prints on stdout. */
async function startChild (args: string[], env?: Record<string, string>): Promise<{ child: ChildProcess, ready: Record<string, string> }> {
  const [cmd, argv] = onServerCpu(process.execPath, args)
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  const ready = await new Promise<Record<string, string>>((resolve, reject) => {
    const t = setTimeout(() => { reject(new Error(`${args.join(' ')} did not start within 20 s`)) }, 20_000)
    child.once('exit', code => { clearTimeout(t); reject(new Error(`${args.join(' ')} exited with ${String(code)}`)) })
    let started = false
    // Lines other than the ready line (--trace-gc output through --sidecar-node-args) go to stderr.
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', line => {
      if (started || !line.startsWith('{')) { log(`[child] ${line}`); return }
      started = true
      clearTimeout(t)
      resolve(JSON.parse(line) as Record<string, string>)
    })
  })
  return { child, ready }
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  await new Promise<void>(resolve => {
    child.once('exit', () => { resolve() })
    child.kill('SIGTERM')
    setTimeout(() => { child.kill('SIGKILL') }, 5000).unref()
  })
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => { resolve(port) })
    })
  })
}


function ensureRedis (): string {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim()
  if (found !== '') return found
  log('redis-server is missing: apt-get install -y redis-server')
  const r = spawnSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server'], { stdio: 'inherit' })
  if (r.status !== 0) throw new Error('could not install redis-server; install it or pass --no-redis')
  return spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim()
}
async function main (): Promise<void> {
  const a = parseArgs(process.argv.slice(2))
  if (a.generator === 'h2load') requireH2load()
  if (a.pin) {
    // Every thread of this process (load generators) to CPU 1; servers go to CPU 0.
    const r = spawnSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`--pin needs taskset and 2 CPUs: ${r.stderr ?? r.error?.message ?? ''}`)
    pinned = true
  }
  const dir = mkdtempSync(join(tmpdir(), 'meshlimit-bench-'))
  const policyFile = join(dir, 'policies.yaml')
  writeFileSync(policyFile, POLICIES)
  const h2: H2loadOptions | undefined = a.generator === 'h2load'
    ? { dir, keys: a.h2loadKeys, processes: a.h2loadProcesses, grpcClients: a.h2loadGrpcClients, grpcPacing: a.h2loadPacing, streams: a.h2loadStreams, httpClients: a.h2loadHttpClients, connections: a.connections }
    : undefined
  const children: ChildProcess[] = []
  const cleanup = async (): Promise<void> => { await Promise.all(children.map(stopChild)) }
  // Whatever ends this process (an uncaught error included), no server outlives it.
  process.on('exit', () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL') })
  try {
    log(`sidecar bench: ${a.durationS} s per phase, ${a.connections} connections, ${h2 === undefined ? `${a.users} users` : `h2load, ${h2.keys} user(s)`}; offered rates HTTP ${a.httpRate}/s, gRPC ${a.grpcRate}/s`)
    const side = await startChild([...a.sidecarNodeArgs, a.sidecarCli ?? dist('../src/cli/index.js'), 'start', '--port', '0', '--grpc-port', '0', '--no-admin', '--no-escalation', '--log-level', 'silent', '--policies', policyFile], {
      ...(a.stallWatchMs > 0 ? { MESHLIMIT_STALL_WATCH_MS: String(a.stallWatchMs) } : {}),
      ...(a.grpcMaxStreams > 0 ? { MESHLIMIT_GRPC_MAX_STREAMS: String(a.grpcMaxStreams) } : {})
    })
    children.push(side.child)
    const want = (phase: string): boolean => a.only === undefined || a.only === phase
    const ours = await apiPhases({ name: '', http: side.ready.http, grpc: side.ready.grpc, pid: side.child.pid, sidecar: true }, a, h2, want)
    const answerFile = join(dir, 'answer.json')
    writeFileSync(answerFile, JSON.stringify({ http: await (await fetch(`${side.ready.http}/v1/check`, { method: 'POST', body: bodies(1)[0] })).text() }))
    await stopChild(side.child)

    let floor: ApiRuns | undefined
    if (a.floor && (want('grpc') || want('http'))) {
      const f = await startChild([dist('./floor-server.js'), answerFile], a.stallWatchMs > 0 ? { MESHLIMIT_STALL_WATCH_MS: String(a.stallWatchMs) } : undefined)
      children.push(f.child)
      floor = await apiPhases({ name: 'floor', http: f.ready.http, grpc: f.ready.grpc, pid: f.child.pid, sidecar: false }, a, h2, want)
      await stopChild(f.child)
    }

    let redis: { sat: FixedHttpRun, fixed: FixedHttpRun } | undefined
    if (a.redis && want('redis')) {
      const bin = ensureRedis()
      const port = await freePort()
      const [rcmd, rargs] = onServerCpu(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'])
      const server = spawn(rcmd, rargs, { stdio: 'ignore' })
      children.push(server)
      await new Promise(resolve => setTimeout(resolve, 500))
      const base = await startChild([dist('./redis-baseline.js'), String(port)])
      children.push(base.child)
      await httpPhase('redisWarmUp', base.ready.http, a, h2, undefined, warmS(a), false)
      const sat = await httpPhase('redisSaturation', base.ready.http, a, h2, undefined, a.durationS, false)
      log(`Redis baseline saturation: ${sat.reqPerSec} req/s, p99 ${sat.p99Ms} ms`)
      const fixed = await httpPhase('redisFixed', base.ready.http, a, h2, a.httpRate, a.durationS, false)
      log(`Redis baseline at ${a.httpRate}/s offered: ${fixed.reqPerSec} req/s, p50 ${fixed.p50Ms} ms, p99 ${fixed.p99Ms} ms (autocannon: ${fixed.autocannonP99Ms ?? '-'} ms; paced, from the scheduled time: ${fixed.scheduledP99Ms ?? '-'} ms)`)
      redis = { sat, fixed }
    }
    const result = {
      bench: 'sidecar',
      node: process.version,
      pinned,
      generator: a.generator,
      durationS: a.durationS,
      connections: a.connections,
      rateConnections: a.rateConnections,
      users: h2 === undefined ? a.users : h2.keys,
      httpReqPerSec: ours.httpSat.reqPerSec,
      httpP99Ms: ours.httpFixed.p99Ms,
      httpOfferedRate: a.httpRate,
      httpAchievedRate: ours.httpFixed.reqPerSec,
      httpP50Ms: ours.httpFixed.p50Ms,
      httpP999Ms: ours.httpFixed.p999Ms,
      httpMaxMs: ours.httpFixed.maxMs,
      httpPaced: a.httpPaced,
      httpAutocannonP99Ms: ours.httpFixed.autocannonP99Ms,
      httpScheduledP99Ms: ours.httpFixed.scheduledP99Ms,
      httpClientLoopMaxMs: ours.httpFixed.clientLoopMaxMs,
      httpSaturationP99Ms: ours.httpSat.p99Ms,
      grpcReqPerSec: ours.grpcSat.reqPerSec,
      grpcP99Ms: ours.grpcFixed.p99Ms,
      grpcOfferedRate: a.grpcRate,
      grpcAchievedRate: ours.grpcFixed.reqPerSec,
      grpcP50Ms: ours.grpcFixed.p50Ms,
      grpcP999Ms: ours.grpcFixed.p999Ms,
      grpcMaxMs: ours.grpcFixed.maxMs,
      grpcScheduledP99Ms: ours.grpcFixed.scheduledP99Ms,
      grpcSaturationP99Ms: ours.grpcSat.p99Ms,
      grpcServerCpuUsPerCall: ours.grpcServerCpuUs,
      grpcServerLoopP99Ms: ours.grpcServerLoop.p99Ms,
      grpcServerLoopMaxMs: ours.grpcServerLoop.maxMs,
      grpcClientLoopMaxMs: ours.grpcFixed.clientLoopMaxMs,
      grpcSlowCalls: ours.grpcFixed.slowCalls,
      grpcSlowWindows: ours.grpcFixed.slowWindows,
      httpServerCpuUsPerRequest: ours.httpServerCpuUs,
      httpServerLoopP99Ms: ours.httpServerLoop.p99Ms,
      httpServerLoopMaxMs: ours.httpServerLoop.maxMs,
      grpcStalls: a.stallWatchMs > 0 ? ours.grpcStalls : null,
      httpStalls: a.stallWatchMs > 0 ? ours.httpStalls : null,
      h2load: h2 === undefined ? null : h2loadRuns,
      errors: ours.httpSat.errors + ours.httpFixed.errors + ours.grpcSat.errors + ours.grpcFixed.errors,
      baselines: redis === undefined && floor === undefined
        ? null
        : {
            ...(redis === undefined
              ? {}
              : {
                  redisReqPerSec: redis.sat.reqPerSec,
                  redisP99Ms: redis.fixed.p99Ms,
                  redisP999Ms: redis.fixed.p999Ms,
                  redisMaxMs: redis.fixed.maxMs,
                  redisAchievedRate: redis.fixed.reqPerSec,
                  redisAutocannonP99Ms: redis.fixed.autocannonP99Ms,
                  redisScheduledP99Ms: redis.fixed.scheduledP99Ms,
                  redisSaturationP99Ms: redis.sat.p99Ms
                }),
            ...(floor === undefined
              ? {}
              : {
                  floorHttpReqPerSec: floor.httpSat.reqPerSec,
                  floorHttpAchievedRate: floor.httpFixed.reqPerSec,
                  floorHttpP50Ms: floor.httpFixed.p50Ms,
                  floorHttpP99Ms: floor.httpFixed.p99Ms,
                  floorHttpP999Ms: floor.httpFixed.p999Ms,
                  floorHttpMaxMs: floor.httpFixed.maxMs,
                  floorHttpServerCpuUsPerRequest: floor.httpServerCpuUs,
                  floorGrpcReqPerSec: floor.grpcSat.reqPerSec,
                  floorGrpcAchievedRate: floor.grpcFixed.reqPerSec,
                  floorGrpcP50Ms: floor.grpcFixed.p50Ms,
                  floorGrpcP99Ms: floor.grpcFixed.p99Ms,
                  floorGrpcP999Ms: floor.grpcFixed.p999Ms,
                  floorGrpcMaxMs: floor.grpcFixed.maxMs,
                  floorGrpcServerCpuUsPerCall: floor.grpcServerCpuUs,
                  floorHttpServerLoopP99Ms: floor.httpServerLoop.p99Ms,
                  floorGrpcServerLoopP99Ms: floor.grpcServerLoop.p99Ms,
                  floorHttpStalls: a.stallWatchMs > 0 ? floor.httpStalls : null,
                  floorGrpcStalls: a.stallWatchMs > 0 ? floor.grpcStalls : null
                })
          },
      ratios: redis === undefined && floor === undefined
        ? null
        : {
            ...(redis === undefined ? {} : { httpReqPerSecVsRedis: round3(ours.httpSat.reqPerSec / redis.sat.reqPerSec), httpP99VsRedis: round3(ours.httpFixed.p99Ms / redis.fixed.p99Ms) }),
            ...(floor === undefined
              ? {}
              : {
                  httpP99VsFloor: round3(ours.httpFixed.p99Ms / floor.httpFixed.p99Ms),
                  httpCpuVsFloor: round3(ours.httpServerCpuUs / floor.httpServerCpuUs),
                  httpReqPerSecVsFloor: round3(ours.httpSat.reqPerSec / floor.httpSat.reqPerSec),
                  grpcP99VsFloor: round3(ours.grpcFixed.p99Ms / floor.grpcFixed.p99Ms),
                  grpcCpuVsFloor: round3(ours.grpcServerCpuUs / floor.grpcServerCpuUs),
                  grpcReqPerSecVsFloor: round3(ours.grpcSat.reqPerSec / floor.grpcSat.reqPerSec)
                })
          }
    }
    if (!a.json) log(JSON.stringify(result, null, 2))
    process.stdout.write(JSON.stringify(result) + '\n')
  } finally {
    await cleanup()
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:sidecar failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
