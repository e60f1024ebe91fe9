import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreateIdentity } from '../../gossip/identity.js'
import { generateSwarmKey } from '../../gossip/psk.js'
import type { PolicyDocument } from '../../src/policy/types.js'
import type { Scenario } from '../scenario.js'
import type { Marker, Series, Summary } from '../summary.js'
import { newTally } from '../sim/audit.js'
import { sampler, stream } from '../sim/random.js'
import { Samples } from '../sim/samples.js'
import { summarize } from '../sim/summarize.js'
import { LimitTruth } from '../sim/truth.js'
import { createWorkload } from '../sim/workload.js'
import { hashString } from '../../crdt/hash.js'
import { finalAudit, lagging, type AuditSetup, type Incarnation, type Snapshot } from './audit.js'
import { createFleet, type Fleet } from './fleet.js'
import { measure, RequestLog } from './measure.js'
import { createNetns, netnsUnavailable, removeStaleNamespaces, type NetnsTopology } from './netns.js'
import { planFleet, selectNodes, type PlanOptions } from './plan.js'
import { RESULT_FIELDS, type NodeInit, type NodeStats, type Ready, type Report, type ViewOf } from './protocol.js'
import { RealSamples } from './samples.js'

export interface RealRunOptions extends PlanOptions {
  /** @default the scenario's seed */
  seed?: number
  /**
   * Runs every node in a network namespace of its own (root, Linux): partitions are
   * routing rules instead of the libp2p connection gater.
   * @default false
   */
  netns?: boolean
  /**
   * Bootstrap peers per region every node lists (the first nodes of each region);
   * undefined: every node lists every other node of the initial fleet.
   * @default undefined
   */
  seedsPerRegion?: number
  /** The node program. @default chaos/real/child.js beside this module */
  childModule?: string
  /** Node.js options of the node processes. @default [] */
  execArgv?: string[]
  /** Keeps the run's folder (node logs, identities, key) here instead of a removed temporary one. */
  keepDir?: string
  /** Level of the nodes' mesh logs. @default "info" */
  logLevel?: string
  /** Told one line per event and per second of traffic. */
  onProgress?: (line: string) => void
  /**
   * Adds each node's connections, gossipsub mesh and live members to the progress lines.
   * @default false
   */
  verbose?: boolean
  /** Bound on the wait for the initial fleet to start and form a mesh, ms. @default 60000 */
  startTimeoutMs?: number
}

/** A partition of the run, as membership saw it. */
export interface PartitionFacts {
  atMs: number
  /** Node indexes on each side (nodes running at the cut). */
  sides: number[][]
  /** From the cut until every node held every node of other sides not alive (suspect after 3 heartbeats); null: not before the heal. */
  detectedMs: number | null
  healAtMs: number | null
  /** From the heal until every node held every other alive again. */
  rejoinedMs: number | null
}

/** What a restarted node did. */
export interface RestartFacts {
  node: number
  peerId: string
  /** Replica keys before and after: the same peer id, a new incarnation. */
  before: string
  after: string | null
  /** From spawn to ready (start-up pull included), ms. */
  readyMs: number | null
  startupSync: Ready['startupSync'] | null
  /** From ready until its view held every count the mesh had when it was ready (audited keys); null: never. */
  caughtUpMs: number | null
}

export interface RealFacts {
  mode: 'gater' | 'netns'
  /** Node processes spawned (restarts and joins included). */
  processes: number
  /** From the first spawn until every initial node was ready, and until all saw each other alive, ms. */
  startMs: number
  formedMs: number | null
  partitions: PartitionFacts[]
  restarts: RestartFacts[]
  /** Requests sent to a node that was killed before it answered (counted as unserved). */
  lostInFlight: number
  /** Staleness the bound used: the flush interval plus the slowest converged sample, ms. */
  stalenessMs: number
  /** Bytes on each namespace's interface per node per second (IP and TCP headers included); netns mode only. */
  wireBytesPerNodePerSec: number | null
  /** Counter-message payload published per node per second (flushes and re-publication). */
  countersPayloadBytesPerNodePerSec: number
  /** Keys the fleet held (distinct keys with admissions, per limit). */
  keys: number[]
  /** Node processes that ended without being asked to, with the reason. */
  nodeFailures: string[]
  /** The folder with the nodes' logs (kept only with keepDir). */
  dir: string | undefined
}

export interface RealSummary extends Summary {
  mode: 'real'
  real: RealFacts
}

export interface RealResult {
  summary: RealSummary
  series: Series
  markers: Marker[]
}

const TICK_MS = 5
const HEARTBEAT_MS = 1000
const SYNC_TIMEOUT_MS = 5000

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

async function freePorts (n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, async () => await new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => { resolve(srv) })
  })))
  const ports = servers.map(s => (s.address() as AddressInfo).port)
  await Promise.all(servers.map(async s => { await new Promise(resolve => s.close(resolve)) }))
  return ports
}

/**
 * Runs a scenario on real processes: one mesh node per process (libp2p over TCP, a
 * fresh private-network key, identities in files), traffic from this process through
 * each node's check(), partitions by connection gater or network namespaces, SIGKILLs
 * and restarts; then audits every node's counters against every admission.
 */
export async function runReal (input: Scenario, policies: PolicyDocument, opts: RealRunOptions = {}): Promise<RealResult> {
  const plan = planFleet(input, opts)
  const s = plan.scenario
  const seed = opts.seed ?? s.seed
  const { size, initial, regionOf, groupOf, labelOf } = plan
  const durationMs = s.durationMs
  const quietMs = s.quietMs
  const F = s.gossip.flushIntervalMs
  const metas = [...s.limits.values()]
  const progress = opts.onProgress ?? (() => {})
  if (opts.netns === true) {
    const why = netnsUnavailable()
    if (why !== undefined) throw new Error(`the network-namespace mode is unavailable: ${why}`)
    const stale = removeStaleNamespaces()
    if (stale.length > 0) progress(`removed ${stale.length} namespaces left by earlier runs`)
  }
  const dir = opts.keepDir ?? mkdtempSync(join(tmpdir(), 'meshlimit-real-'))
  mkdirSync(dir, { recursive: true })

  let netns: NetnsTopology | undefined
  let fleet: Fleet | undefined
  const timers = new Set<ReturnType<typeof setTimeout>>()
  let cleaned = false
  const cleanupSync = (): void => {
    if (cleaned) return
    cleaned = true
    for (const t of timers) clearTimeout(t)
    netns?.destroy()
    if (opts.keepDir === undefined) rmSync(dir, { recursive: true, force: true })
  }
  // Namespaces must not outlive the run, even when it is interrupted.
  const onSignal = (sig: NodeJS.Signals): void => {
    void (fleet?.killAll() ?? Promise.resolve()).finally(() => {
      cleanupSync()
      process.kill(process.pid, sig)
    })
  }
  const onExit = (): void => { cleanupSync() }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  process.once('exit', onExit)
  try {
    return await execute()
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    process.off('exit', onExit)
    await fleet?.killAll()
    cleanupSync()
  }

  async function execute (): Promise<RealResult> {
    // --- identities, key, addresses ------------------------------------------------
    const pskFile = join(dir, 'mesh.key')
    writeFileSync(pskFile, generateSwarmKey(), { mode: 0o600 })
    const peerIds: string[] = []
    for (let i = 0; i < size; i++) peerIds.push(peerIdFromPrivateKey((await loadOrCreateIdentity(join(dir, `node-${i}.key`))).privateKey).toString())
    if (opts.netns === true) {
      netns = createNetns(regionOf, s.regions.length)
      for (let i = 0; i < initial; i++) netns.addNode(i)
    }
    const ports = netns === undefined ? await freePorts(size) : []
    const listenOf = (i: number): string => netns === undefined ? `/ip4/127.0.0.1/tcp/${ports[i]}` : `/ip4/${netns.addressOf(i)}/tcp/4001`
    const dialOf = (i: number): string => `${listenOf(i)}/p2p/${peerIds[i]}`
    const seedNodes = opts.seedsPerRegion === undefined
      ? undefined
      : s.regions.flatMap((_, r) => Array.from({ length: initial }, (_, i) => i).filter(i => regionOf[i] === r).slice(0, opts.seedsPerRegion))
    const bootstrapOf = (i: number): string[] => (seedNodes ?? Array.from({ length: Math.max(initial, i) }, (_, j) => j)).filter(j => j !== i).map(dialOf)
    const rClock = stream(seed, 'clocks')
    const skew = s.clocks.skew === undefined ? undefined : sampler(s.clocks.skew, rClock)
    const offsets = Array.from({ length: size }, () => skew === undefined ? 0 : Math.round(skew()))

    // --- state -------------------------------------------------------------------------
    const mode: RealFacts['mode'] = netns === undefined ? 'gater' : 'netns'
    const truths = metas.map(m => new LimitTruth(m.name, (m.limit.algorithm === 'fixed-window' ? 1 : m.limit.slots + 1) + 64, key => hashString(key, 0)))
    const reps: Incarnation[] = []
    const repIndex = new Map<string, number>()
    const curRep = new Int32Array(size).fill(-1)
    const state: Array<'down' | 'starting' | 'live' | 'stopping'> = new Array(size).fill('down')
    const live: number[][] = s.regions.map(() => [])
    const exited = new Map<number, () => void>()
    const waiters = new Map<number, { resolve: (r: Ready) => void, reject: (e: Error) => void }>()
    const pending = new Map<number, { key: string, node: number }>()
    const inspects = new Map<number, (v: { now: number, views: Array<ViewOf | null> } | undefined) => void>()
    const statsWaiters = new Map<number, (s: NodeStats | undefined) => void>()
    const lastStats = new Map<number, NodeStats>()
    const baseStats = new Map<number, NodeStats>()
    const nodeFailures: string[] = []
    const restarts: RestartFacts[] = []
    const partitions: PartitionFacts[] = []
    const markers: Marker[] = []
    const phases: Int32Array[] = []
    const starts: number[] = []
    const crashes: number[] = []
    const healTimes: Array<number | null> = []
    const log = new RequestLog()
    let cutSide: Int32Array | undefined
    let requests = 0
    let admitted = 0
    let denied = 0
    let unserved = 0
    let lostInFlight = 0
    let processes = 0
    let nextId = 0
    let t0 = Infinity
    const windowMax = Math.max(...metas.map(m => m.limit.windowMs))
    const slotMax = Math.max(...metas.map(m => m.slotMs))
    const spread = Math.max(0, ...offsets) - Math.min(0, ...offsets)
    const samples = new RealSamples(s.measure.samplesPerSec > 0 ? 1000 / s.measure.samplesPerSec : 0, windowMax + 2 * slotMax + spread, (node, sid) => { fleet?.send(node, { t: 'unwatch', sid }) })
    const maxSkewMs = s.limiter.maxClockSkewMs ?? 500
    const pastSlots = (k: number): number => metas[k].limit.algorithm === 'fixed-window' ? 1 : metas[k].limit.slots + 1
    const futureSlots = (k: number): number => maxSkewMs <= 0 ? 0 : Math.min(pastSlots(k), Math.ceil(maxSkewMs / metas[k].slotMs))
    const isCut = (a: number, b: number): boolean => cutSide !== undefined && cutSide[a] !== cutSide[b]
    const setup: AuditSetup = {
      metas,
      truths,
      reps,
      repIndex,
      pastSlots,
      futureSlots,
      aggregated: k => metas[k].scope === 'global' && s.gossip.topology === 'region',
      cut: isCut
    }
    const at = (ms: number, fn: () => void): void => {
      const t = setTimeout(() => { timers.delete(t); fn() }, Math.max(0, ms))
      timers.add(t)
    }
    const rel = (): number => Date.now() - t0
    const say = (line: string): void => { progress(`[${Number.isFinite(t0) ? (rel() / 1000).toFixed(1).padStart(5) : '  -  '} s] ${line}`) }

    const removeLive = (i: number): void => {
      const list = live[regionOf[i]]
      const p = list.indexOf(i)
      if (p >= 0) list.splice(p, 1)
    }

    // --- reports ---------------------------------------------------------------------
    const ingest = (i: number, r: number[]): void => {
      for (let j = 0; j < r.length; j += RESULT_FIELDS) {
        const p = pending.get(r[j])
        if (p === undefined) continue
        pending.delete(r[j])
        requests++
        const k = r[j + 2]
        if (k < 0) continue
        const allowed = r[j + 1] === 1
        const meta = metas[k]
        const t = r[j + 4]
        const domain = meta.scope === 'global' ? '*' : meta.scope === 'region' ? labelOf[i] : peerIds[i]
        log.add(t, k, p.key, domain, allowed)
        if (!allowed) {
          denied++
          continue
        }
        admitted++
        const rep = curRep[i]
        const epoch = r[j + 3]
        const count = truths[k].admit(p.key, epoch, rep, 1)
        if (meta.scope !== 'node' && samples.due(t)) {
          const receivers: number[] = []
          for (let n = 0; n < size; n++) if (n !== i && state[n] === 'live' && groupOf[n] === groupOf[i] && !isCut(i, n)) receivers.push(n)
          const sid = samples.take(i, t, receivers)
          if (sid !== undefined) for (const n of receivers) fleet?.send(n, { t: 'watch', sid, limit: k, key: p.key, replica: reps[rep].key, epoch, count })
        }
      }
    }

    const onReport = (i: number, r: Report): void => {
      switch (r.t) {
        case 'ready': {
          const rep = reps.length
          reps.push({ node: i, group: groupOf[i], region: labelOf[i], key: r.replica, readyAt: r.readyAt, crashedAt: undefined })
          repIndex.set(r.replica, rep)
          curRep[i] = rep
          if (state[i] === 'starting') {
            state[i] = 'live'
            const list = live[regionOf[i]]
            list.push(i)
            list.sort((a, b) => a - b)
          }
          waiters.get(i)?.resolve(r)
          waiters.delete(i)
          return
        }
        case 'res': ingest(i, r.r); return
        case 'views': inspects.get(r.id)?.({ now: r.now, views: r.views }); inspects.delete(r.id); return
        case 'held': samples.held(r.sid, i, r.at); return
        case 'stats': lastStats.set(curRep[i], r); statsWaiters.get(r.id)?.(r); statsWaiters.delete(r.id); return
        case 'failed':
          nodeFailures.push(`node ${i}: ${r.error.split('\n')[0]}`)
          waiters.get(i)?.reject(new Error(`node ${i} failed: ${r.error}`))
          waiters.delete(i)
      }
    }

    const onExit = (i: number, exit: { code: number | null, signal: NodeJS.Signals | null, expected: boolean }): void => {
      if (!exit.expected) nodeFailures.push(`node ${i} exited on its own (code ${exit.code ?? '-'}, signal ${exit.signal ?? '-'})`)
      removeLive(i)
      state[i] = 'down'
      for (const [id, p] of pending) {
        if (p.node !== i) continue
        pending.delete(id)
        lostInFlight++
        unserved++
      }
      samples.drop(i, Date.now())
      waiters.get(i)?.reject(new Error(`node ${i} exited before it was ready (code ${exit.code ?? '-'}, signal ${exit.signal ?? '-'}); see node-${i}.log`))
      waiters.delete(i)
      const e = exited.get(i)
      exited.delete(i)
      e?.()
    }

    fleet = createFleet({ dir, childModule: opts.childModule ?? join(dirname(fileURLToPath(import.meta.url)), 'child.js'), execArgv: opts.execArgv ?? [], netns, onReport, onExit })

    const spawnNode = async (i: number): Promise<Ready> => {
      const f = fleet as Fleet
      if (f.running(i)) await new Promise<void>(resolve => exited.set(i, resolve))
      const init: NodeInit = {
        t: 'init',
        index: i,
        identityFile: join(dir, `node-${i}.key`),
        pskFile,
        listen: [listenOf(i)],
        bootstrap: bootstrapOf(i),
        mesh: 'chaos',
        region: labelOf[i],
        policies,
        field: s.workload.field,
        limits: metas.map(m => m.name),
        slotMs: metas.map(m => m.slotMs),
        flushIntervalMs: F,
        limiter: s.limiter,
        clockOffsetMs: offsets[i],
        blocked: netns === undefined && cutSide !== undefined ? peerIds.filter((_, j) => (cutSide as Int32Array)[j] !== (cutSide as Int32Array)[i]) : [],
        heartbeatIntervalMs: HEARTBEAT_MS,
        syncTimeoutMs: SYNC_TIMEOUT_MS,
        logLevel: opts.logLevel ?? 'info'
      }
      state[i] = 'starting'
      processes++
      const ready = new Promise<Ready>((resolve, reject) => waiters.set(i, { resolve, reject }))
      f.spawn(i, init)
      return await ready
    }

    /** Asks every live node for its views of `keys` (per limit); nodes that do not answer in time are left out. */
    let inspectId = 0
    const snapshot = async (keys: string[][], only?: number[]): Promise<Snapshot[]> => {
      const nodes = (only ?? Array.from({ length: size }, (_, i) => i)).filter(i => state[i] === 'live')
      const q: Array<[number, string]> = keys.flatMap((ks, k) => ks.map(key => [k, key] as [number, string]))
      const answers = await Promise.all(nodes.map(async i => {
        const id = inspectId++
        const v = await new Promise<{ now: number, views: Array<ViewOf | null> } | undefined>(resolve => {
          inspects.set(id, resolve)
          setTimeout(() => { inspects.delete(id); resolve(undefined) }, 10_000).unref()
          fleet?.send(i, { t: 'inspect', id, q })
        })
        if (v === undefined || state[i] !== 'live') return undefined
        const views = metas.map(() => new Map<string, ViewOf | null>())
        q.forEach(([k, key], n) => views[k].set(key, v.views[n]))
        return { node: i, rep: curRep[i], now: v.now, views }
      }))
      return answers.filter((a): a is Snapshot => a !== undefined)
    }

    let statsId = 0
    const collectStats = async (): Promise<NodeStats[]> => {
      const nodes = Array.from({ length: size }, (_, i) => i).filter(i => state[i] === 'live')
      const out = await Promise.all(nodes.map(async i => await new Promise<NodeStats | undefined>(resolve => {
        const id = statsId++
        statsWaiters.set(id, resolve)
        setTimeout(() => { statsWaiters.delete(id); resolve(undefined) }, 5000).unref()
        fleet?.send(i, { t: 'stats', id })
      })))
      return out.filter((x): x is NodeStats => x !== undefined)
    }

    // --- start the initial fleet and wait for the mesh to form --------------------------
    const startAt = Date.now()
    const startTimeout = opts.startTimeoutMs ?? 60_000
    say(`starting ${initial} node processes (${mode} mode${netns === undefined ? ', 127.0.0.1' : `, namespaces ${netns.prefix}*`})`)
    let startTimer: ReturnType<typeof setTimeout> | undefined
    try {
      await Promise.race([
        Promise.all(Array.from({ length: initial }, async (_, i) => await spawnNode(i))),
        new Promise((resolve, reject) => { startTimer = setTimeout(() => { reject(new Error(`the fleet did not start within ${startTimeout} ms; see the node logs (--keep DIR)`)) }, startTimeout) })
      ])
    } finally {
      clearTimeout(startTimer)
    }
    const startMs = Date.now() - startAt
    let formedMs: number | null = null
    const formDeadline = Date.now() + Math.max(1000, startTimeout - startMs)
    while (Date.now() < formDeadline) {
      const st = await collectStats()
      if (st.length === initial && st.every(x => x.alive >= initial - 1)) {
        formedMs = Date.now() - startAt
        break
      }
      await sleep(200)
    }
    say(formedMs === null ? 'WARNING: the mesh did not form (not every node sees every other alive); starting traffic anyway' : `fleet ready in ${startMs} ms, mesh formed in ${formedMs} ms`)

    // --- traffic -----------------------------------------------------------------------
    t0 = Date.now()
    await collectStats()
    for (const [rep, st] of lastStats) baseStats.set(rep, st)
    const workload = createWorkload(s.workload, s.regions, durationMs)
    const rWork = stream(seed, 'workload')
    const rFault = stream(seed, 'faults')
    const rAudit = stream(seed, 'audit')
    const nextAt = s.workload.clients.map((_, c) => workload.nextArrival(c, 0, durationMs, rWork))
    const sticky = new Map<string, number>()
    const pickNode = (region: number, key: string): number => {
      const list = live[region]
      if (list.length === 0) return -1
      if (s.workload.spread === 'uniform') return list[Math.floor(rWork() * list.length)]
      const id = `${region}\u0000${key}`
      const held = sticky.get(id)
      if (held !== undefined && state[held] === 'live') return held
      const pick = list[hashString(key, region + 7) % list.length]
      sticky.set(id, pick)
      return pick
    }
    let trafficDone = false
    const tick = (): void => {
      const now = rel()
      const batches = new Map<number, Array<number | string>>()
      for (;;) {
        let c = -1
        for (let x = 0; x < nextAt.length; x++) if (nextAt[x] <= now && (c < 0 || nextAt[x] < nextAt[c])) c = x
        if (c < 0) break
        const region = workload.drawRegion(c, rWork)
        const key = workload.drawKey(rWork)
        const i = pickNode(region, key)
        nextAt[c] = workload.nextArrival(c, nextAt[c], durationMs, rWork)
        if (i < 0) {
          unserved++
          continue
        }
        const id = nextId++
        pending.set(id, { key, node: i })
        let b = batches.get(i)
        if (b === undefined) batches.set(i, b = [])
        b.push(id, key)
      }
      for (const [i, q] of batches) fleet?.send(i, { t: 'req', q })
      if (nextAt.every(x => x === Infinity) || now >= durationMs) {
        trafficDone = true
        return
      }
      at(TICK_MS, tick)
    }
    tick()

    // --- the timeline --------------------------------------------------------------------
    const running = (): number[] => Array.from({ length: size }, (_, i) => i).filter(i => state[i] === 'live')
    const auditKeysOf = (k: number): string[] => {
      const all = [...truths[k].byKey.values()]
      const n = s.measure.auditKeys
      if (all.length <= n) return all.map(c => c.key)
      const top = all.slice().sort((a, b) => b.total - a.total || (a.key < b.key ? -1 : 1)).slice(0, Math.ceil(n / 2))
      const chosen = new Set(top.map(c => c.key))
      while (chosen.size < n) chosen.add(all[Math.floor(rAudit() * all.length)].key)
      return [...chosen]
    }
    /** The counts every cell of the audited keys has now (what views must reach). */
    const countsNow = (keys: string[][]): (k: number, cells: { epoch: number[], rep: number[], key: string }, j: number) => number | undefined => {
      const snap = keys.map((ks, k) => new Map(ks.map(key => {
        const cells = truths[k].byKey.get(key)
        const m = new Map<string, number>()
        if (cells !== undefined) for (let j = 0; j < cells.epoch.length; j++) m.set(`${cells.epoch[j]}|${cells.rep[j]}`, cells.count[j])
        return [key, m]
      })))
      return (k, cells, j) => snap[k].get(cells.key)?.get(`${cells.epoch[j]}|${cells.rep[j]}`)
    }
    const runEnd = (): number => t0 + durationMs + quietMs
    /** Polls views of the audited keys until none lags `expected`; ms from `from`, or null at the end of the run. */
    const pollConverged = async (from: number, keys: string[][], expected: ReturnType<typeof countsNow>, only?: number, everyMs = 100): Promise<number | null> => {
      for (;;) {
        const snaps = await snapshot(keys)
        const judged = only === undefined ? snaps : snaps.filter(x => x.node === only)
        const examples: string[] = []
        if (judged.length > 0 && lagging(setup, snaps, keys, expected, only, examples) === 0) return Date.now() - from
        if (Date.now() + everyMs > runEnd()) {
          say(`still lagging at the end of the run: ${examples.join('; ')}`)
          return null
        }
        await sleep(everyMs)
      }
    }
    const convergenceTasks: Array<Promise<void>> = []
    /** Polls members alive on every live node until each holds exactly want(i) alive, while `valid()`; ms or null. */
    const pollMembers = async (valid: () => boolean, want: (i: number) => number): Promise<number | null> => {
      const from = Date.now()
      while (valid() && Date.now() < runEnd()) {
        const st = await collectStats()
        if (st.length > 0 && st.every(x => x.alive === want(x.node))) return Date.now() - from
        await sleep(100)
      }
      return null
    }

    const applyCut = (side: Int32Array | undefined): void => {
      const before = cutSide
      cutSide = side
      if (netns !== undefined) {
        if (side === undefined) netns.heal()
        else netns.cut(side)
        return
      }
      for (const i of running()) {
        if (side === undefined) {
          if (before !== undefined) fleet?.send(i, { t: 'unblock', peers: peerIds.filter((_, j) => before[j] !== before[i]) })
        } else fleet?.send(i, { t: 'block', peers: peerIds.filter((_, j) => side[j] !== side[i]) })
      }
    }

    const restart = (i: number, before: number): void => {
      const facts: RestartFacts = { node: i, peerId: peerIds[i], before: reps[before].key, after: null, readyMs: null, startupSync: null, caughtUpMs: null }
      restarts.push(facts)
      const spawnedAt = Date.now()
      say(`restart node ${i} (same identity file, new incarnation)`)
      convergenceTasks.push(spawnNode(i).then(async ready => {
        facts.after = ready.replica
        facts.readyMs = ready.readyAt - spawnedAt
        facts.startupSync = ready.startupSync
        starts.push(ready.readyAt - t0)
        markers.push({ atMs: ready.readyAt - t0, kind: 'restart', label: `node ${i} back` })
        const keys = metas.map((_, k) => auditKeysOf(k))
        facts.caughtUpMs = await pollConverged(ready.readyAt, keys, countsNow(keys), i)
        say(`node ${i} ready ${facts.readyMs} ms after restart (start-up pull merged ${ready.startupSync?.merged ?? 0} entries from ${ready.startupSync?.peers ?? 0} peers), caught up ${facts.caughtUpMs === null ? 'never' : `${facts.caughtUpMs} ms later`}`)
      }, (err: Error) => { nodeFailures.push(`restart of node ${i}: ${err.message.split('\n')[0]}`) }))
    }

    s.events.forEach((e, idx) => {
      const fire = (atMs: number): void => {
        at(t0 + atMs - Date.now(), () => {
          switch (e.kind) {
            case 'partition': {
              const side = new Int32Array(size).fill(e.groups.length)
              e.groups.forEach((sels, g) => { for (const sel of sels) for (const i of selectNodes(plan, running(), sel, rFault)) side[i] = g })
              const cutAt = Date.now()
              applyCut(side)
              phases.push(side.slice())
              const label = `split into ${new Set(side).size} groups`
              markers.push({ atMs, kind: 'partition', label })
              const sides = [...new Set(side)].sort((a, b) => a - b).map(g => Array.from(side).flatMap((x, i) => x === g && state[i] !== 'down' ? [i] : [])).filter(g => g.length > 0)
              const facts: PartitionFacts = { atMs, sides, detectedMs: null, healAtMs: null, rejoinedMs: null }
              partitions.push(facts)
              say(`partition: ${sides.map(g => `[${g.join(',')}]`).join(' | ')} (${netns === undefined ? 'connection gater + hang-up' : 'blackhole routing rules'})`)
              // Membership detection: every node holds the other sides' members not alive.
              convergenceTasks.push(pollMembers(() => cutSide === side, i => running().filter(j => j !== i && side[j] === side[i]).length).then(ms => {
                if (ms !== null) facts.detectedMs = Date.now() - cutAt
                say(ms === null ? 'membership did not see the partition before it healed' : `membership saw the partition after ${facts.detectedMs} ms`)
              }))
              return
            }
            case 'heal': {
              const healAt = Date.now()
              applyCut(undefined)
              markers.push({ atMs, kind: 'heal', label: 'heal' })
              const facts = partitions[partitions.length - 1]
              if (facts !== undefined) {
                facts.healAtMs = atMs
                convergenceTasks.push(pollMembers(() => cutSide === undefined, i => running().filter(j => j !== i).length).then(ms => {
                  if (ms !== null) facts.rejoinedMs = Date.now() - healAt
                  say(ms === null ? 'members did not all see each other alive again' : `every node sees every other alive again ${facts.rejoinedMs} ms after the heal`)
                }))
              }
              const slot = healTimes.length
              healTimes.push(null)
              say('heal')
              const keys = metas.map((_, k) => auditKeysOf(k))
              const expected = countsNow(keys)
              convergenceTasks.push(pollConverged(healAt, keys, expected).then(ms => {
                healTimes[slot] = ms
                say(`views converged ${ms === null ? 'never' : `${ms} ms`} after the heal`)
              }))
              return
            }
            case 'crash': {
              const victims = selectNodes(plan, running(), e.nodes, rFault)
              const now = Date.now()
              for (const i of victims) {
                const before = curRep[i]
                fleet?.kill(i)
                state[i] = 'down'
                removeLive(i)
                reps[before].crashedAt = now
                crashes.push(now - t0)
                samples.crashed(i, now, F + 100)
                if (e.restartAfterMs !== undefined) at(e.restartAfterMs, () => { if (state[i] === 'down') restart(i, before) })
              }
              markers.push({ atMs, kind: 'crash', label: `crash ${victims.length}` })
              say(`SIGKILL node${victims.length === 1 ? '' : 's'} ${victims.join(', ')}`)
              if (e.everyMs !== undefined) {
                const next = atMs + e.everyMs
                if (next <= (e.untilMs ?? durationMs) && next < durationMs) fire(next)
              }
              return
            }
            case 'join': {
              const list = plan.joinNodes.get(idx) as number[]
              for (const i of list) {
                netns?.addNode(i)
                convergenceTasks.push(spawnNode(i).then(r => { starts.push(r.readyAt - t0) }, (err: Error) => { nodeFailures.push(`join of node ${i}: ${err.message.split('\n')[0]}`) }))
              }
              markers.push({ atMs, kind: 'join', label: `join ${list.length} in ${e.region}` })
              say(`join nodes ${list.join(', ')}`)
              return
            }
            case 'leave': {
              const gone = selectNodes(plan, running(), e.nodes, rFault)
              for (const i of gone) {
                state[i] = 'stopping'
                removeLive(i)
                void fleet?.stop(i)
              }
              markers.push({ atMs, kind: 'leave', label: `leave ${gone.length}` })
              say(`nodes ${gone.join(', ')} leave (graceful stop)`)
            }
          }
        })
      }
      fire(e.atMs)
    })

    // Progress once a second; samples past their age expire.
    let lastRequests = 0
    const second = (): void => {
      samples.expire(Date.now())
      if (rel() >= durationMs + quietMs) return
      // Fresh statistics of every node, so a SIGKILLed one leaves its last second's figures.
      void collectStats().then(st => { if (opts.verbose === true) say(`per node: connected peers/counter-topic peers/gossipsub mesh/members alive: ${st.map(x => `${x.peers}/${x.topicPeers}/${x.meshPeers}/${x.alive}`).join(' ')}`) })
      if (rel() < durationMs) say(`${running().length}/${size} nodes live, ${requests - lastRequests} requests/s, ${admitted} admitted, ${denied} denied${cutSide === undefined ? '' : ', partitioned'}`)
      lastRequests = requests
      at(1000, second)
    }
    at(1000, second)

    // --- end of traffic, quiet period, final audit -----------------------------------------
    await sleep(durationMs)
    while (!trafficDone) await sleep(TICK_MS)
    const trafficEnd = Date.now()
    const drainBy = Date.now() + 5000
    while (pending.size > 0 && Date.now() < drainBy) await sleep(10)
    say(`traffic over: ${requests} requests, ${admitted} admitted; quiet for ${quietMs} ms`)
    const allKeys = metas.map((_, k) => auditKeysOf(k))
    const afterTraffic = await pollConverged(trafficEnd, allKeys, countsNow(allKeys), undefined, 50)
    await sleep(Math.max(0, runEnd() - Date.now()))
    await Promise.all(convergenceTasks)
    samples.expire(Date.now())
    samples.finish()
    const endAt = Date.now()
    await collectStats()
    const keysHeld = metas.map((_, k) => [...truths[k].byKey.keys()])
    const finalSnaps = await snapshot(keysHeld)
    const audit = finalAudit(setup, finalSnaps)
    for (const line of audit.missing) say(`missing: ${line}`)
    say(`final audit of ${keysHeld.reduce((a, k) => a + k.length, 0)} keys on ${finalSnaps.length} nodes: ${audit.countsLost} units lost, ${audit.countsLostAtCrash} died with SIGKILLed processes`)
    await Promise.all(running().map(async i => { state[i] = 'stopping'; await fleet?.stop(i) }))
    say('node processes stopped')

    // --- summary ---------------------------------------------------------------------------
    const measureEnd = t0 + durationMs + quietMs
    let nodeSeconds = 0
    const bytesSent = new Float64Array(size)
    const payloadBytesSent = new Float64Array(size)
    let wire = 0
    let wireKnown = true
    let published = 0
    let delivered = 0
    let rejected = 0
    reps.forEach((r, idx) => {
      const from = Math.max(r.readyAt, t0)
      const to = Math.min(r.crashedAt ?? endAt, measureEnd)
      if (to > from) nodeSeconds += (to - from) / 1000
      const last = lastStats.get(idx)
      if (last === undefined) return
      const base = r.readyAt <= t0 ? baseStats.get(idx) : undefined
      bytesSent[r.node] += last.socketBytes - (base?.socketBytes ?? 0)
      payloadBytesSent[r.node] += last.countersBytes - (base?.countersBytes ?? 0)
      if (last.wireBytes === undefined) wireKnown = false
      else wire += last.wireBytes - (base?.wireBytes ?? 0)
      published += last.countersPublished - (base?.countersPublished ?? 0)
      delivered += last.countersReceived - (base?.countersReceived ?? 0)
      rejected += last.countersRejected - (base?.countersRejected ?? 0)
    })
    const maxConverged = samples.times.length === 0 ? undefined : Math.max(...samples.times)
    const latencyMs = maxConverged ?? 0
    // The bound with the staleness this run had: flush interval + the slowest sample.
    const boundScenario: Scenario = {
      ...s,
      network: { ...s.network, intraRegion: { dist: 'fixed', ms: latencyMs }, interRegion: { dist: 'fixed', ms: latencyMs }, loss: 0, duplicate: 0, reorder: 0 },
      gossip: { ...s.gossip, delivery: 'direct' }
    }
    const chartKey = s.workload.hotKeys.length > 0 ? s.workload.hotKeys[0].key : 'k0'
    const chartDomain = metas[0].scope === 'global' ? '*' : metas[0].scope === 'region' ? labelOf[0] : peerIds[0]
    const m = measure(log, s, metas, t0, { key: chartKey, domain: chartDomain })
    const simSamples = new Samples(0, 0, 0)
    simSamples.times.push(...samples.times)
    simSamples.unconverged = samples.unconverged
    const { summary, series } = summarize({
      scenario: boundScenario,
      seed,
      durationMs,
      nodes: initial,
      size,
      metas,
      keyStates: m.keyStates,
      workload,
      phases,
      regionOf,
      starts,
      crashes,
      network: {
        published,
        copiesSent: 0,
        delivered,
        duplicated: 0,
        reordered: 0,
        droppedLoss: 0,
        droppedPartition: 0,
        rejected,
        duplicatesSuppressed: 0,
        requests: 0,
        requestFailures: 0,
        bytesSent,
        payloadBytesSent
      },
      nodeSeconds,
      requests,
      admitted,
      denied,
      underLimit: m.underLimit,
      falseDenials: m.falseDenials,
      unserved,
      samples: simSamples,
      healTimes,
      afterTraffic,
      tally: newTally(),
      finalTally: audit.tally,
      countsLost: audit.countsLost,
      lostAtCrash: audit.countsLostAtCrash,
      series: m.series,
      markers
    })
    // Real nodes run anti-entropy: no violation here is waiting for it.
    for (const v of summary.violations) delete v.needs
    summary.lagging = { dropped: 0, blankStart: 0, partitioned: audit.tally.lag.partitioned, clockSkew: 0 }
    const perNodeSecond = nodeSeconds > 0 ? 1 / nodeSeconds : 0
    const real: RealFacts = {
      mode,
      processes,
      startMs,
      formedMs,
      partitions,
      restarts,
      lostInFlight,
      stalenessMs: F + latencyMs,
      wireBytesPerNodePerSec: wireKnown && mode === 'netns' ? Math.round(wire * perNodeSecond) : null,
      countersPayloadBytesPerNodePerSec: summary.payloadBytesPerNodePerSec,
      keys: truths.map(t => t.byKey.size),
      nodeFailures,
      dir: opts.keepDir
    }
    return { summary: { ...summary, mode: 'real', real }, series, markers }
  }
}
