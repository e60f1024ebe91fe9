import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { hashString } from '../../crdt/hash.js'
import { loadOrCreateIdentity } from '../../gossip/identity.js'
import { generateSwarmKey } from '../../gossip/psk.js'
import type { PolicyDocument } from '../../src/policy/types.js'
import type { Scenario } from '../scenario.js'
import type { Marker, Series } from '../summary.js'
import { sampler, stream } from '../sim/random.js'
import { LimitTruth } from '../sim/truth.js'
import { createWorkload } from '../sim/workload.js'
import { assembleSummary, type RealFacts, type RealSummary } from './assemble.js'
import { finalAudit, type AuditSetup } from './audit.js'
import { createCluster, type Cluster } from './cluster.js'
import { measure, RequestLog } from './measure.js'
import { createNetns, netnsUnavailable, removeStaleNamespaces, type NetnsTopology } from './netns.js'
import { planFleet, type PlanOptions } from './plan.js'
import { createProbes } from './probes.js'
import { RealSamples } from './samples.js'
import { scheduleTimeline } from './timeline.js'

export type { RealFacts, RealSummary } from './assemble.js'
export type { PartitionFacts, RestartFacts } from './timeline.js'

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
  /**
   * Node.js options of the node processes.
   * @default []
   */
  execArgv?: string[]
  /** Keeps the run's folder (node logs, identities, key) here instead of a removed temporary one. */
  keepDir?: string
  /**
   * Level of the nodes' mesh logs.
   * @default "info"
   */
  logLevel?: string
  /** Told one line per event and per second of traffic. */
  onProgress?: (line: string) => void
  /**
   * Adds each node's connections, gossipsub mesh and live members to the progress lines.
   * @default false
   */
  verbose?: boolean
  /**
   * Bound on the wait for the initial fleet to start and form a mesh, ms.
   * @default 60000
   */
  startTimeoutMs?: number
}

export interface RealResult {
  summary: RealSummary
  series: Series
  markers: Marker[]
}

/** Interval of the traffic generator, ms: requests due are sent to their nodes in one message each. */
const TICK_MS = 5

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
  const progress = opts.onProgress ?? (() => {})
  if (opts.netns === true) {
    const why = netnsUnavailable()
    if (why !== undefined) throw new Error(`the network-namespace mode is unavailable: ${why}`)
    const stale = removeStaleNamespaces()
    if (stale.length > 0) progress(`removed ${stale.length} namespaces left by earlier runs`)
  }
  const dir = opts.keepDir ?? mkdtempSync(join(tmpdir(), 'meshlimit-real-'))
  mkdirSync(dir, { recursive: true })
  const timers = new Set<ReturnType<typeof setTimeout>>()
  let netns: NetnsTopology | undefined
  let cluster: Cluster | undefined
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
    void (cluster?.killAll() ?? Promise.resolve()).finally(() => {
      cleanupSync()
      process.kill(process.pid, sig)
    })
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  process.once('exit', cleanupSync)
  try {
    return await execute()
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    process.off('exit', cleanupSync)
    await cluster?.killAll()
    cleanupSync()
  }

  async function execute (): Promise<RealResult> {
    const s = plan.scenario
    const seed = opts.seed ?? s.seed
    const { size, initial, regionOf, groupOf, labelOf } = plan
    const durationMs = s.durationMs
    const quietMs = s.quietMs
    const metas = [...s.limits.values()]
    let t0 = Infinity
    const rel = (): number => Date.now() - t0
    const say = (line: string): void => { progress(`[${Number.isFinite(t0) ? (rel() / 1000).toFixed(1).padStart(5) : '  -  '} s] ${line}`) }
    const at = (ms: number, fn: () => void): void => {
      const t = setTimeout(() => { timers.delete(t); fn() }, Math.max(0, ms))
      timers.add(t)
    }

    // --- identities, key, addresses, namespaces -----------------------------------------
    writeFileSync(join(dir, 'mesh.key'), generateSwarmKey(), { mode: 0o600 })
    const peerIds: string[] = []
    for (let i = 0; i < size; i++) peerIds.push(peerIdFromPrivateKey((await loadOrCreateIdentity(join(dir, `node-${i}.key`))).privateKey).toString())
    if (opts.netns === true) {
      netns = createNetns(regionOf, s.regions.length)
      for (let i = 0; i < size; i++) netns.addNode(i)
    }
    const topology = netns
    const ports = topology === undefined ? await freePorts(size) : []
    const listenOf = (i: number): string => topology === undefined ? `/ip4/127.0.0.1/tcp/${ports[i]}` : `/ip4/${topology.addressOf(i)}/tcp/4001`
    const seeds = opts.seedsPerRegion === undefined
      ? undefined
      : s.regions.flatMap((_, r) => Array.from({ length: initial }, (_, i) => i).filter(i => regionOf[i] === r).slice(0, opts.seedsPerRegion))
    const bootstrapOf = (i: number): string[] => (seeds ?? Array.from({ length: Math.max(initial, i) }, (_, j) => j)).filter(j => j !== i).map(j => `${listenOf(j)}/p2p/${peerIds[j]}`)
    const skew = s.clocks.skew === undefined ? undefined : sampler(s.clocks.skew, stream(seed, 'clocks'))
    const offsets = Array.from({ length: size }, () => skew === undefined ? 0 : Math.round(skew()))

    // --- truth, samples, the cluster --------------------------------------------------
    const mode: RealFacts['mode'] = topology === undefined ? 'gater' : 'netns'
    const truths = metas.map(m => new LimitTruth(m.name, (m.limit.algorithm === 'fixed-window' ? 1 : m.limit.slots + 1) + 64, key => hashString(key, 0)))
    const log = new RequestLog()
    let requests = 0
    let admitted = 0
    let denied = 0
    let unserved = 0
    const maxAgeMs = Math.max(...metas.map(m => m.limit.windowMs)) + 2 * Math.max(...metas.map(m => m.slotMs)) + Math.max(0, ...offsets) - Math.min(0, ...offsets)
    const samples = new RealSamples(s.measure.samplesPerSec > 0 ? 1000 / s.measure.samplesPerSec : 0, maxAgeMs, (node, sid) => { cluster?.send(node, { t: 'unwatch', sid }) })
    const c = createCluster({
      plan,
      metas,
      policies,
      dir,
      peerIds,
      listenOf,
      bootstrapOf,
      offsets,
      netns: topology,
      childModule: opts.childModule ?? join(dirname(fileURLToPath(import.meta.url)), 'child.js'),
      execArgv: opts.execArgv ?? [],
      logLevel: opts.logLevel ?? 'info',
      onResult (i, rep, key, allowed, k, epoch, t) {
        requests++
        if (k < 0) return
        const meta = metas[k]
        log.add(t, k, key, meta.scope === 'global' ? '*' : meta.scope === 'region' ? labelOf[i] : peerIds[i], allowed)
        if (!allowed) {
          denied++
          return
        }
        admitted++
        const count = truths[k].admit(key, epoch, rep, 1)
        if (meta.scope === 'node' || !samples.due(t)) return
        // Watched on every live peer of its gossip group that can hear it now.
        const receivers = c.running().filter(n => n !== i && groupOf[n] === groupOf[i] && !c.isCut(i, n))
        const sid = samples.take(i, t, receivers)
        if (sid !== undefined) for (const n of receivers) c.send(n, { t: 'watch', sid, limit: k, key, replica: c.reps[rep].key, epoch, count })
      },
      onHeld: (sid, node, heldAt) => { samples.held(sid, node, heldAt) },
      onGone: node => { samples.drop(node, Date.now()) }
    })
    cluster = c
    const maxSkewMs = s.limiter.maxClockSkewMs ?? 500
    const pastSlots = (k: number): number => metas[k].limit.algorithm === 'fixed-window' ? 1 : metas[k].limit.slots + 1
    const setup: AuditSetup = {
      metas,
      truths,
      reps: c.reps,
      repIndex: c.repIndex,
      pastSlots,
      futureSlots: k => maxSkewMs <= 0 ? 0 : Math.min(pastSlots(k), Math.ceil(maxSkewMs / metas[k].slotMs)),
      aggregated: k => metas[k].scope === 'global' && s.gossip.topology === 'region',
      cut: (a, b) => c.isCut(a, b)
    }
    const runEnd = (): number => t0 + durationMs + quietMs
    const probes = createProbes({ cluster: c, setup, metas, truths, auditKeys: s.measure.auditKeys, rnd: stream(seed, 'audit'), runEnd, say })

    // --- start the initial fleet and wait for the mesh to form --------------------------
    const startAt = Date.now()
    const startTimeout = opts.startTimeoutMs ?? 60_000
    say(`starting ${initial} node processes (${mode} mode${topology === undefined ? ', 127.0.0.1' : `, namespaces ${topology.prefix}*`})`)
    let startTimer: ReturnType<typeof setTimeout> | undefined
    try {
      await Promise.race([
        Promise.all(Array.from({ length: initial }, async (_, i) => await c.spawn(i))),
        new Promise((resolve, reject) => { startTimer = setTimeout(() => { reject(new Error(`the fleet did not start within ${startTimeout} ms; see the node logs (--keep DIR)`)) }, startTimeout) })
      ])
    } finally {
      clearTimeout(startTimer)
    }
    const startMs = Date.now() - startAt
    let formedMs: number | null = null
    const formDeadline = Date.now() + Math.max(1000, startTimeout - startMs)
    while (Date.now() < formDeadline) {
      const st = await c.stats()
      if (st.length === initial && st.every(x => x.alive >= initial - 1)) {
        formedMs = Date.now() - startAt
        break
      }
      await sleep(200)
    }
    say(formedMs === null ? 'WARNING: the mesh did not form (not every node sees every other alive); starting traffic anyway' : `fleet ready in ${startMs} ms, mesh formed in ${formedMs} ms`)

    // --- traffic and the timeline --------------------------------------------------------
    t0 = Date.now()
    await c.stats()
    const baseStats = new Map(c.lastStats)
    const workload = createWorkload(s.workload, s.regions, durationMs)
    const rWork = stream(seed, 'workload')
    const nextAt = s.workload.clients.map((_, k) => workload.nextArrival(k, 0, durationMs, rWork))
    const sticky = new Map<string, number>()
    const pickNode = (region: number, key: string): number => {
      const list = c.live[region]
      if (list.length === 0) return -1
      if (s.workload.spread === 'uniform') return list[Math.floor(rWork() * list.length)]
      const id = `${region}\u0000${key}`
      const held = sticky.get(id)
      if (held !== undefined && c.state[held] === 'live') return held
      const pick = list[hashString(key, region + 7) % list.length]
      sticky.set(id, pick)
      return pick
    }
    let trafficDone = false
    let sent = 0
    const tick = (): void => {
      const now = rel()
      const batches = new Map<number, Array<number | string>>()
      for (;;) {
        let k = -1
        for (let x = 0; x < nextAt.length; x++) if (nextAt[x] <= now && (k < 0 || nextAt[x] < nextAt[k])) k = x
        if (k < 0) break
        const region = workload.drawRegion(k, rWork)
        const key = workload.drawKey(rWork)
        const i = pickNode(region, key)
        nextAt[k] = workload.nextArrival(k, nextAt[k], durationMs, rWork)
        if (i < 0) {
          unserved++
          continue
        }
        let b = batches.get(i)
        if (b === undefined) batches.set(i, b = [])
        b.push(c.nextRequestId(key, i), key)
        sent++
      }
      for (const [i, q] of batches) c.request(i, q)
      if (nextAt.every(x => x === Infinity) || now >= durationMs) {
        trafficDone = true
        return
      }
      at(TICK_MS, tick)
    }
    tick()
    const tasks: Array<Promise<void>> = []
    const timeline = scheduleTimeline({
      plan,
      cluster: c,
      probes,
      samples,
      t0,
      rnd: stream(seed, 'faults'),
      at,
      say,
      tasks,
      cutBy: topology === undefined ? 'connection gater + hang-up' : 'blackhole routing rules'
    })
    // Once a second: progress, fresh statistics (a SIGKILLed node leaves its last second's), sample expiry.
    let lastRequests = 0
    const second = (): void => {
      samples.expire(Date.now())
      if (rel() >= durationMs + quietMs) return
      void c.stats().then(st => {
        if (opts.verbose === true) say(`per node: connected peers/counter-topic peers/gossipsub mesh/members alive: ${st.map(x => `${x.peers}/${x.topicPeers}/${x.meshPeers}/${x.alive}`).join(' ')}`)
      })
      if (rel() < durationMs) say(`${c.running().length}/${size} nodes live, ${requests - lastRequests} requests/s, ${admitted} admitted, ${denied} denied${c.cut === undefined ? '' : ', partitioned'}`)
      lastRequests = requests
      at(1000, second)
    }
    at(1000, second)

    // --- end of traffic, quiet period, final audit -----------------------------------------
    await sleep(durationMs)
    while (!trafficDone) await sleep(TICK_MS)
    const trafficEnd = Date.now()
    // Answers still on their way (a node killed meanwhile never answers).
    const drainBy = Date.now() + 5000
    while (requests + c.lostInFlight < sent && Date.now() < drainBy) await sleep(10)
    say(`traffic over: ${requests} requests, ${admitted} admitted; quiet for ${quietMs} ms`)
    const afterTrafficMs = await probes.converged(trafficEnd, { everyMs: 50 })
    await sleep(Math.max(0, runEnd() - Date.now()))
    await Promise.all(tasks)
    samples.expire(Date.now())
    samples.finish()
    const endAt = Date.now()
    for (const st of await c.stats()) if (st.rejections.length > 0) say(`node ${st.node} rejected ${st.countersRejected} counter messages, last: ${st.rejections.join('; ')}`)
    const allKeys = metas.map((_, k) => [...truths[k].byKey.keys()])
    const audit = finalAudit(setup, await c.snapshot(allKeys))
    for (const line of audit.missing) say(`missing: ${line}`)
    say(`final audit of ${allKeys.reduce((a, k) => a + k.length, 0)} keys: ${audit.countsLost} units lost, ${audit.countsLostAtCrash} died with SIGKILLed processes`)
    await Promise.all(c.running().map(async i => { await c.stop(i) }))
    say('node processes stopped')

    // --- summary ---------------------------------------------------------------------------
    const chartKey = s.workload.hotKeys.length > 0 ? s.workload.hotKeys[0].key : 'k0'
    const chartDomain = metas[0].scope === 'global' ? '*' : metas[0].scope === 'region' ? labelOf[0] : peerIds[0]
    const { summary, series } = assembleSummary({
      scenario: s,
      seed,
      initial,
      size,
      regionOf,
      metas,
      workload,
      measured: measure(log, s, metas, t0, { key: chartKey, domain: chartDomain }),
      timeline,
      samples,
      audit,
      reps: c.reps,
      baseStats,
      lastStats: c.lastStats,
      t0,
      measureEnd: runEnd(),
      endAt,
      requests,
      admitted,
      denied,
      unserved: unserved + c.lostInFlight,
      afterTrafficMs,
      real: {
        mode,
        processes: c.processes,
        startMs,
        formedMs,
        lostInFlight: c.lostInFlight,
        keys: truths.map(t => t.byKey.size),
        nodeFailures: c.nodeFailures,
        dir: opts.keepDir
      }
    })
    return { summary, series, markers: timeline.markers }
  }
}
