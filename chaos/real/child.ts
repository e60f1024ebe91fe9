import '../../src/polyfill.js'
import { subscribe } from 'node:diagnostics_channel'
import { readFileSync, writeSync } from 'node:fs'
import type { Socket } from 'node:net'
import { replicaKey } from '../../crdt/replica.js'
import { loadOrCreateIdentity } from '../../gossip/identity.js'
import type { Libp2pTransport } from '../../gossip/libp2p.js'
import { readSwarmKey } from '../../gossip/psk.js'
import { coarseClock, type Clock } from '../../membership/clock.js'
import { createLogger } from '../../src/log.js'
import { createMeshNode, type MeshNode } from '../../src/mesh.js'
import { REPORT_FD, type Command, type NodeInit, type Report, type ViewOf, type Watch } from './protocol.js'

/**
 * One node of a real-mode run: a full mesh node (createMeshNode over libp2p TCP, a
 * private network, a persistent identity) driven by the parent over IPC. Requests go
 * through the real limiter's check(); every result, view and statistic goes back on
 * the report pipe. The process exits when the parent goes away.
 */

const encoder = new TextEncoder()

/** Writes one report line, blocking: it is in the pipe before this turn ends. */
function report (r: Report): void {
  const bytes = encoder.encode(JSON.stringify(r) + '\n')
  let off = 0
  while (off < bytes.length) {
    try {
      off += writeSync(REPORT_FD, bytes, off)
    } catch (err) {
      // A full non-blocking pipe: wait for the parent to read (this harness's only busy wait).
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
    }
  }
}

// Bytes written on TCP sockets: libp2p's connections (the IPC channel is not a net socket).
const sockets = new Set<Socket>()
let closedSocketBytes = 0
const track = ({ socket }: { socket: Socket }): void => {
  sockets.add(socket)
  socket.once('close', () => {
    closedSocketBytes += socket.bytesWritten
    sockets.delete(socket)
  })
}
subscribe('net.client.socket', track as (m: unknown) => void)
subscribe('net.server.socket', track as (m: unknown) => void)
const socketBytes = (): number => {
  let sum = closedSocketBytes
  for (const s of sockets) sum += s.bytesWritten
  return sum
}

/** Bytes sent on eth0 of this network namespace (netns mode), undefined elsewhere. */
function wireBytes (): number | undefined {
  try {
    return Number(readFileSync('/sys/class/net/eth0/statistics/tx_bytes', 'utf8'))
  } catch {
    return undefined
  }
}

let node: MeshNode | undefined
let init: NodeInit | undefined
let clock: Clock | undefined
let limitIndex = new Map<string, number>()
const watches = new Map<number, Watch>()
let watchTimer: ReturnType<typeof setInterval> | undefined

function fail (err: unknown): never {
  try {
    report({ t: 'failed', error: err instanceof Error ? err.stack ?? err.message : String(err) })
  } finally {
    process.exit(1)
  }
}

function viewOf (n: MeshNode, limit: string, key: string): ViewOf | null {
  const v = n.limiter.inspect(limit, key, true)
  if (v === undefined) return null
  return { firstEpoch: v.firstEpoch, head: v.head, totals: v.totals, replicas: [...(v.replicas ?? new Map<string, number[]>())] }
}

/** Checks pending watches: held when the cell reached the count, or left this node's range. */
function checkWatches (): void {
  const n = node as MeshNode
  const cfg = init as NodeInit
  const now = (clock as Clock).now()
  for (const [sid, w] of watches) {
    const name = cfg.limits[w.limit]
    const v = n.limiter.inspect(name, w.key, true)
    let held = false
    if (v !== undefined) {
      const slotMs = v.slotMs
      // The range this node accepts right now: cells older than it have expired here.
      const nowEpoch = Math.floor(now / slotMs)
      const past = v.head - v.firstEpoch + 1
      if (w.epoch <= nowEpoch - past) held = true
      const pairs = v.replicas?.get(w.replica)
      if (pairs !== undefined) for (let p = 0; p < pairs.length; p += 2) if (pairs[p] === w.epoch && pairs[p + 1] >= w.count) held = true
    }
    if (held) {
      watches.delete(sid)
      report({ t: 'held', sid, at: Date.now() })
    }
  }
  if (watches.size === 0 && watchTimer !== undefined) {
    clearInterval(watchTimer)
    watchTimer = undefined
  }
}

async function start (cfg: NodeInit): Promise<void> {
  init = cfg
  limitIndex = new Map(cfg.limits.map((name, i) => [name, i]))
  const startedAt = Date.now()
  const base = coarseClock()
  const offset = cfg.clockOffsetMs
  clock = offset === 0 ? base : { now: () => base.now() + offset, fresh: () => (base.fresh?.() ?? base.now()) + offset, setTimer: (ms, fn) => base.setTimer(ms, fn) }
  const { privateKey } = await loadOrCreateIdentity(cfg.identityFile)
  const psk = await readSwarmKey(cfg.pskFile)
  const logger = createLogger({ level: cfg.logLevel, base: { node: cfg.index } })
  node = await createMeshNode({
    mesh: cfg.mesh,
    region: cfg.region,
    policies: cfg.policies,
    clock,
    flushIntervalMs: cfg.flushIntervalMs,
    ...cfg.limiter,
    network: { listen: cfg.listen, bootstrap: cfg.bootstrap, psk, privateKey },
    membership: { heartbeatIntervalMs: cfg.heartbeatIntervalMs },
    syncTimeoutMs: cfg.syncTimeoutMs,
    logger
  })
  const transport = node.transport as Libp2pTransport
  // Before ready: a restart during a partition must not talk across the cut even once.
  for (const p of cfg.blocked) await transport.block(p)
  report({
    t: 'ready',
    peerId: node.peerId,
    incarnation: node.replica.incarnation,
    replica: replicaKey(node.replica),
    multiaddrs: node.multiaddrs(),
    startupSync: node.startupSync,
    startedAt,
    readyAt: Date.now()
  })
}

function handle (cmd: Command): void {
  if (cmd.t === 'init') {
    start(cmd).catch(fail)
    return
  }
  const n = node
  const cfg = init
  if (n === undefined || cfg === undefined) return
  switch (cmd.t) {
    case 'req': {
      const field = cfg.field
      const q = cmd.q
      const out: number[] = []
      const now = clock as Clock
      for (let j = 0; j < q.length; j += 2) {
        const d = n.limiter.check({ [field]: q[j + 1] as string })
        const info = d.info
        let limit = -1
        let epoch = 0
        if (info !== undefined) {
          limit = limitIndex.get(`${info.policy}/${info.id}`) ?? -1
          // The coarse clock has not moved since check(): this is the slot it counted in.
          if (limit >= 0) epoch = Math.floor(now.now() / cfg.slotMs[limit])
        }
        out.push(q[j] as number, d.allowed ? 1 : 0, limit, epoch, Date.now())
      }
      report({ t: 'res', r: out })
      return
    }
    case 'block':
      for (const p of cmd.peers) void (n.transport as Libp2pTransport).block(p)
      return
    case 'unblock':
      for (const p of cmd.peers) (n.transport as Libp2pTransport).unblock(p)
      return
    case 'inspect': {
      const views = cmd.q.map(([limit, key]) => viewOf(n, cfg.limits[limit], key))
      report({ t: 'views', id: cmd.id, now: (clock as Clock).now(), views })
      return
    }
    case 'watch':
      watches.set(cmd.sid, cmd)
      watchTimer ??= setInterval(checkWatches, 5)
      checkWatches()
      return
    case 'unwatch':
      watches.delete(cmd.sid)
      return
    case 'stats': {
      const s = n.limiter.stats()
      const pubsub = (n.transport as Libp2pTransport).libp2p.services.pubsub
      report({
        t: 'stats',
        id: cmd.id,
        node: cfg.index,
        socketBytes: socketBytes(),
        wireBytes: wireBytes(),
        countersPublished: s.replicator?.messagesSent ?? 0,
        countersBytes: s.replicator?.bytesSent ?? 0,
        countersReceived: s.replicator?.messagesReceived ?? 0,
        countersRejected: s.replicator?.messagesRejected ?? 0,
        rejections: s.replicator?.lastRejections.slice(-3) ?? [],
        aggregatesPublished: n.aggregator.stats.published,
        aggregatesBytes: n.aggregator.stats.bytesPublished,
        heartbeatsSent: n.membership.stats.heartbeatsSent,
        alive: n.membership.aliveCount(),
        peers: n.transport.peers().length,
        topicPeers: pubsub.getSubscribers(n.topics.counters(cfg.region)).length,
        meshPeers: (pubsub as unknown as { getMeshPeers: (t: string) => string[] }).getMeshPeers(n.topics.counters(cfg.region)).length
      })
      return
    }
    case 'stop':
      n.stop().then(() => process.exit(0), fail)
  }
}

process.on('message', m => {
  try {
    handle(m as Command)
  } catch (err) {
    fail(err)
  }
})
// The parent is gone (or killed): never outlive it.
process.on('disconnect', () => { process.exit(2) })
