import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createLoopbackNetwork } from '../../gossip/loopback.js'
import { generateSwarmKey } from '../../gossip/psk.js'
import { seededRandom } from '../../membership/random.js'
import { MeshlimitError } from '../errors.js'
import { createHttpLimiter } from '../http/middleware.js'
import { headerValue, pathOf } from '../http/keys.js'
import { createLogger } from '../log.js'
import { configWith, libp2pTransport, loopbackTransport, startSidecar, type Sidecar, type TransportFactory } from '../sidecar/index.js'
import { durationFlag, intFlag, runUntilStopped, takeSwitch } from './args.js'
import type { CliCommand, CliIO } from './types.js'

/** The demo's policy: one sliding-window limit per user, shared by the whole mesh. */
export const DEMO_LIMIT = 100
export const DEMO_POLICIES = `version: 1
policies:
  - id: per-user
    description: every user, ${DEMO_LIMIT} requests per 10 seconds, mesh-wide
    key: user
    limits: [ { limit: ${DEMO_LIMIT}, window: 10s, slots: 10 } ]
`

/** Users of the generated traffic and their share of it: alice alone wants more than her limit. */
const USERS: ReadonlyArray<readonly [string, number]> = [['alice', 0.7], ['bob', 0.2], ['carol', 0.1]]

interface NodeView {
  name: string
  sidecar: Sidecar
  api: Server
  url: string
  sent: number
  allowed: number
  denied: number
  failed: number
  lastSent: number
  lastAllowed: number
  lastDenied: number
}

interface DemoSummary {
  event: 'demo-summary'
  nodes: number
  durationMs: number
  rate: number
  limit: number
  windowMs: number
  requests: number
  allowed: number
  denied: number
  failed: number
  perNode: Array<{ node: string, sent: number, allowed: number, denied: number }>
  /** What each node believes each user has left at the end: equal values across nodes mean they converged. */
  remainingByNode: Record<string, number[]>
  converged: boolean
  /** How long the nodes took to agree after traffic stopped, in ms (3000: they did not). */
  settleMs: number
  /** How the nodes talked: libp2p over TCP on 127.0.0.1, or the in-process loopback. */
  transport: 'libp2p-tcp' | 'in-process'
}

function table (views: NodeView[], elapsedS: number, live: boolean): string[] {
  const lines = [
    `meshlimit demo: ${views.length} nodes on one mesh, per-user limit ${DEMO_LIMIT} per 10 s, ${elapsedS.toFixed(0)} s`,
    'node      api                      req/s  allowed/s  denied/s   alice left  bob left  carol left'
  ]
  for (const v of views) {
    const left = USERS.map(([u]) => v.sidecar.node.limiter.peek({ user: u }).remaining)
    lines.push(`${v.name.padEnd(9)} ${v.url.padEnd(24)} ${String(v.sent - v.lastSent).padStart(5)}  ${String(v.allowed - v.lastAllowed).padStart(9)}  ${String(v.denied - v.lastDenied).padStart(8)}   ${String(left[0]).padStart(10)}  ${String(left[1]).padStart(8)}  ${String(left[2]).padStart(10)}`)
    v.lastSent = v.sent
    v.lastAllowed = v.allowed
    v.lastDenied = v.denied
  }
  lines.push(live ? 'Every node shows the same "left" figures: they count the whole mesh. Ctrl-C stops.' : '')
  return lines
}

async function startDemo (io: CliIO, n: number, rate: number, durationMs: number | undefined, quiet: boolean, inProcess: boolean): Promise<DemoSummary> {
  const net = createLoopbackNetwork()
  // A private network of the demo's own: a fresh key no other mesh has.
  const psk = generateSwarmKey()
  const transportOf = (name: string, first: Sidecar | undefined): TransportFactory => inProcess
    ? loopbackTransport(net, name)
    : libp2pTransport({ listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: first === undefined ? [] : first.node.multiaddrs(), psk })
  const logger = createLogger({ level: io.env.MESHLIMIT_LOG_LEVEL ?? 'silent' })
  const views: NodeView[] = []
  const t0 = Date.now()
  try {
    for (let i = 0; i < n; i++) {
      const name = `node-${String.fromCharCode(97 + i)}`
      const sidecar = await startSidecar({
        config: configWith({ policies: DEMO_POLICIES, http: { port: 0 }, grpc: { enabled: false }, admin: { enabled: false }, limiter: { flushIntervalMs: 50 }, escalation: { enabled: false } }),
        transport: transportOf(name, views[0]?.sidecar),
        logger
      })
      // The demo API: a tiny JSON service behind the node's middleware, keyed on the X-User header.
      const user = headerValue('x-user')
      const mw = createHttpLimiter({ limiter: sidecar.node.limiter, blocklist: sidecar.node.blocklist, observers: [sidecar.metrics], descriptor: (req, path) => ({ user: user(req), route: path }) })
      const api = createServer((req, res) => {
        if (!mw.handle(req, res)) return
        const body = JSON.stringify({ hello: user(req) ?? 'anonymous', path: pathOf(req), servedBy: name })
        res.setHeader('Content-Type', 'application/json')
        res.end(body)
      })
      views.push({ name, sidecar, api, url: '', sent: 0, allowed: 0, denied: 0, failed: 0, lastSent: 0, lastAllowed: 0, lastDenied: 0 })
      await new Promise<void>(resolve => api.listen(0, '127.0.0.1', resolve))
      views[i].url = `http://127.0.0.1:${(api.address() as AddressInfo).port}`
    }
  } catch (err) {
    await Promise.all(views.map(async v => { v.api.close(); await v.sidecar.close() }))
    throw err
  }
  // Traffic starts once every node hears every other (heartbeats relay through the
  // gossipsub mesh, so this also means the mesh has formed), bounded at 10 s.
  const formedBy = Date.now() + 10_000
  const alive = (v: NodeView): number => v.sidecar.node.meshNode?.membership.members().filter(m => m.state === 'alive').length ?? 0
  while (views.some(v => alive(v) < n - 1) && Date.now() < formedBy) await new Promise(resolve => setTimeout(resolve, 20))
  if (views.some(v => alive(v) < n - 1)) io.err('warning: the mesh has not fully formed after 10 s; starting traffic anyway')
  io.err(`demo up in ${Date.now() - t0} ms (${inProcess ? 'in-process gossip' : 'libp2p over TCP on 127.0.0.1'}): ${views.map(v => `${v.name} API ${v.url} (metrics ${v.sidecar.httpUrl}/metrics)`).join(', ')}`)

  // Traffic: every 20 ms, rate/50 requests spread over users by share and over nodes at random.
  const random = seededRandom(42)
  const TICK_MS = 20
  let owed = 0
  let inFlight = 0
  const send = (): void => {
    const r = random()
    let acc = 0
    let u = USERS[USERS.length - 1][0]
    for (const [name, share] of USERS) { acc += share; if (r < acc) { u = name; break } }
    const v = views[Math.floor(random() * views.length)]
    v.sent++
    inFlight++
    fetch(`${v.url}/v1/hello`, { headers: { 'x-user': u } }).then(async res => {
      await res.arrayBuffer()
      if (res.status === 200) v.allowed++
      else if (res.status === 429) v.denied++
      else v.failed++
    }, () => { v.failed++ }).finally(() => { inFlight-- })
  }
  const generator = setInterval(() => {
    owed += rate * TICK_MS / 1000
    // Never pile up more than a second of requests on a slow machine.
    while (owed >= 1 && inFlight < rate) { owed--; send() }
  }, TICK_MS)

  const live = process.stdout.isTTY === true && !quiet
  let shown = 0
  const view = setInterval(() => {
    const lines = table(views, (Date.now() - t0) / 1000, live)
    if (live) {
      io.out(`${shown > 0 ? `\x1b[${shown}A` : ''}${lines.map(l => `\x1b[2K${l}`).join('\n')}`)
      shown = lines.length
    } else if (!quiet) for (const l of lines) io.err(l)
  }, 1000)

  const why = await runUntilStopped(durationMs)
  clearInterval(generator)
  clearInterval(view)
  if (why === 'signal') io.err('stopping...')
  // Let requests in flight finish (bounded), then one more gossip round so the nodes agree.
  const deadline = Date.now() + 2000
  while (inFlight > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
  // Then wait (bounded, 3 s) for the nodes to agree: the last flushes, or gap repair of anything lost (a request to the sender within a few flushes).
  const remainingByNode: Record<string, number[]> = {}
  const agreed = (): boolean => {
    for (const [u] of USERS) remainingByNode[u] = views.map(v => v.sidecar.node.limiter.peek({ user: u }).remaining)
    return Object.values(remainingByNode).every(r => new Set(r).size === 1)
  }
  const settleBy = Date.now() + 3000
  while (!agreed() && Date.now() < settleBy) await new Promise(resolve => setTimeout(resolve, 50))
  const settleMs = Date.now() - (settleBy - 3000)
  const summary: DemoSummary = {
    event: 'demo-summary',
    nodes: n,
    durationMs: Date.now() - t0,
    rate,
    limit: DEMO_LIMIT,
    windowMs: 10_000,
    requests: views.reduce((s, v) => s + v.sent, 0),
    allowed: views.reduce((s, v) => s + v.allowed, 0),
    denied: views.reduce((s, v) => s + v.denied, 0),
    failed: views.reduce((s, v) => s + v.failed, 0),
    perNode: views.map(v => ({ node: v.name, sent: v.sent, allowed: v.allowed, denied: v.denied })),
    remainingByNode,
    converged: agreed(),
    settleMs,
    transport: inProcess ? 'in-process' : 'libp2p-tcp'
  }
  await Promise.all(views.map(async v => {
    v.api.closeAllConnections()
    await new Promise<void>(resolve => v.api.close(() => { resolve() }))
    await v.sidecar.close()
  }))
  return summary
}

export const demo: CliCommand = {
  summary: 'run a 3-node mesh on localhost with demo APIs, generated traffic and a live view',
  usage: `meshlimit demo [--duration TIME] [--nodes N] [--rate N] [--quiet] [--in-process]

Starts N nodes (default 3) in one process, each in front of a small demo API on a free
127.0.0.1 port, connects them into one libp2p mesh over TCP on 127.0.0.1 (a private
network with a fresh key; --in-process skips the sockets and gossips through memory),
and sends generated traffic (default 40
requests/s: alice 70%, bob 20%, carol 10%) to random nodes. The per-user limit is ${DEMO_LIMIT}
per 10 s across the mesh: watch alice get denied on every node, and every node show
the same remaining quota. Stops on Ctrl-C or after --duration; prints a JSON summary
as the last line of standard output.`,
  async run (argv, io) {
    const args = [...argv]
    let durationMs: number | undefined
    let nodes: number
    let rate: number
    let quiet: boolean
    let inProcess: boolean
    try {
      durationMs = durationFlag(args, '--duration')
      nodes = intFlag(args, '--nodes', 1, 9) ?? 3
      rate = intFlag(args, '--rate', 1, 5000) ?? 40
      quiet = takeSwitch(args, '--quiet')
      inProcess = takeSwitch(args, '--in-process')
      if (args.length > 0) {
        io.err(`meshlimit demo: unknown argument ${JSON.stringify(args[0])}; see meshlimit demo --help`)
        return 2
      }
    } catch (err) {
      io.err(`meshlimit demo: ${(err as Error).message}`)
      return err instanceof MeshlimitError ? 2 : 1
    }
    const summary = await startDemo(io, nodes, rate, durationMs, quiet, inProcess)
    io.out(JSON.stringify(summary))
    return 0
  }
}
