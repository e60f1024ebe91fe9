import { hashString } from '../../crdt/hash.js'
import { DEFAULT_CODEC_LIMITS } from '../../gossip/codec.js'
import { topicsOf } from '../../gossip/topics.js'
import { createRuntime, type LimitRuntime } from '../../src/algorithms.js'
import type { LimitInfo } from '../../src/algorithms.js'
import { MAX_NODES, type Scenario } from '../scenario.js'
import { emptySeries, type Marker } from '../summary.js'
import { finalAudit, newTally, type AuditContext, type ReplicaInfo } from './audit.js'
import { scheduleFaults } from './faults.js'
import { sharedDecoder } from './decode.js'
import { createSimNetwork } from './network.js'
import { createSimNode, SIM_EPOCH_MS, SIM_MESH, type SimNode } from './node.js'
import { sampler, stream } from './random.js'
import { Samples } from './samples.js'
import { createScheduler } from './scheduler.js'
import { summarize, type RunFacts } from './summarize.js'
import { ATTACHED, SERVING, FleetView, type Envelope } from './exchange.js'
import { partialOf, type PartialFacts } from './merge.js'
import { LimitTruth } from './truth.js'
import { KeyWindows } from './windows.js'
import { createWorkload } from './workload.js'
import { windowClasses } from './classes.js'
import { createProbes } from './probes.js'
import { keyReports, type KeyState, type RunOptions, type RunResult } from './result.js'

export type { KeyReport, KeyState, RunOptions, RunResult } from './result.js'

/** Every node index a scenario will ever have: initial nodes region by region, then each join's. */
export interface Fleet {
  initial: number
  size: number
  /** Region index of each node. */
  regionOf: Int32Array
  /** Peer id of each node: region name and its number in the region. */
  peerIdOf: string[]
  /** Node indices each join event (by event index) adds. */
  joinNodes: Map<number, number[]>
}

/** The fleet layout of `s`, the one node numbering the single-threaded and parallel runners share. */
export function fleetOf (s: Scenario): Fleet {
  const regionNames = s.regions.map(r => r.name)
  const initial = s.regions.reduce((n, r) => n + r.nodes, 0)
  const joins = s.events.reduce((n, e) => n + (e.kind === 'join' ? e.nodes : 0), 0)
  const size = initial + joins
  if (size > MAX_NODES) throw new RangeError(`scenario ${s.name}: ${size} nodes, more than the simulator's ${MAX_NODES}`)
  const regionOf = new Int32Array(size)
  const peerIdOf: string[] = []
  const perRegion = s.regions.map(() => 0)
  const addNode = (r: number): number => {
    const i = peerIdOf.length
    regionOf[i] = r
    peerIdOf.push(`${regionNames[r]}-${perRegion[r]++}`)
    return i
  }
  s.regions.forEach((g, r) => { for (let k = 0; k < g.nodes; k++) addNode(r) })
  const joinNodes = new Map<number, number[]>()
  s.events.forEach((e, k) => {
    if (e.kind !== 'join') return
    const r = regionNames.indexOf(e.region)
    joinNodes.set(k, Array.from({ length: e.nodes }, () => addNode(r)))
  })
  return { initial, size, regionOf, peerIdOf, joinNodes }
}

/** Runs a scenario in the simulator; the same scenario and seed give the same result. */
export async function runScenario (s: Scenario, opts: RunOptions = {}): Promise<RunResult> {
  const sim = createSim(s, opts)
  const step = 100
  let done = 0
  while (done < sim.endAt) {
    const target = Math.min(sim.endAt, done + step)
    // Continuations run only when an event asked to yield (no await otherwise: the
    // order of simulated events and promise continuations is part of the result).
    while (!sim.runUntil(target)) await new Promise(resolve => setImmediate(resolve))
    done = target
    opts.onProgress?.(Math.max(0, done - sim.trafficStart), sim.endAt - sim.trafficStart)
  }
  return sim.result()
}

/** One region of a parallel run (chaos/sim/parallel.ts): the unit simulates its nodes only. */
export interface UnitInit {
  region: number
  /** Where envelopes for other units go (in sending order). */
  outbox: Envelope[]
  /** Node state changes for the next exchange (see FleetView). */
  notes: number[]
}

/** A run in progress: advanced by its driver (runScenario, or a parallel host per window). */
export interface Sim {
  readonly endAt: number
  readonly trafficStart: number
  /**
   * Runs every event up to `target` (inclusive); false when an event asked to let
   * promise continuations run first (call again after a setImmediate).
   */
  runUntil(target: number): boolean
  /** Hands over an envelope from another unit (parallel runs). */
  receive(env: Envelope): void
  /** The fleet as of the last exchange (parallel runs). */
  readonly view: FleetView
  /** Final audit and summary (call once, at endAt). */
  result(): RunResult
  /** Final audit and this unit's mergeable figures (parallel runs). */
  partial(): PartialFacts
}

/**
 * Builds a run of `s`. Without `unit`, the whole fleet in one scheduler (runScenario);
 * with it, one region whose random streams are named after it, so its draws do not
 * depend on the other units or on the threads they run on.
 */
export function createSim (s: Scenario, opts: RunOptions = {}, unit?: UnitInit): Sim {
  const seed = opts.seed ?? s.seed
  const durationMs = opts.durationMs ?? s.durationMs
  const F = s.gossip.flushIntervalMs
  const sched = createScheduler()
  const own = (name: string): string => unit === undefined ? name : `${name}/${s.regions[unit.region].name}`
  const rNet = stream(seed, own('network'))
  const rWork = stream(seed, own('workload'))
  const rFault = stream(seed, 'faults')
  const rClock = stream(seed, 'clocks')
  const rBoot = stream(seed, 'boot')
  const rAudit = stream(seed, own('audit'))

  // --- the fleet: every node index that will ever exist, initial ones first --------
  const regionNames = s.regions.map(r => r.name)
  const { initial, size, regionOf, peerIdOf, joinNodes } = fleetOf(s)
  const skew = s.clocks.skew === undefined ? undefined : sampler(s.clocks.skew, rClock)
  const offsets = Float64Array.from({ length: size }, () => skew === undefined ? 0 : skew())
  const topics = topicsOf(SIM_MESH)
  const countersPrefix = topics.counters('x').slice(0, -1)
  /** The region a node's mesh node runs in: its own, or one for all under the mesh topology. */
  const meshRegionOf = (i: number): string => s.gossip.topology === 'mesh' ? 'all' : regionNames[regionOf[i]]
  const groupOf = (i: number): number => s.gossip.topology === 'mesh' ? 0 : regionOf[i]
  const isLocal = (i: number): boolean => unit === undefined || regionOf[i] === unit.region
  const view = new FleetView(size)

  // --- measurement state ----------------------------------------------------------
  const metas = [...s.limits.values()]
  const metaIndex = new Map(metas.map((m, k) => [m.name, k]))
  const infoMeta = new Map<LimitInfo, number>()
  const maxSkewMs = s.limiter.maxClockSkewMs ?? 500
  const pastSlots = (k: number): number => metas[k].limit.algorithm === 'fixed-window' ? 1 : metas[k].limit.slots + 1
  const futureSlots = (k: number): number => maxSkewMs <= 0 ? 0 : Math.min(pastSlots(k), Math.ceil(maxSkewMs / metas[k].slotMs))
  const skewSlots = (k: number): number => Math.ceil((Math.max(0, ...offsets) - Math.min(0, ...offsets)) / metas[k].slotMs)
  const truths = metas.map((m, k) => new LimitTruth(m.name, pastSlots(k) + futureSlots(k) + 2 * skewSlots(k) + 8, key => hashString(key, 0)))
  const oracles: LimitRuntime[] = metas.map(m => createRuntime(m.name, m.limit, { maxKeys: 100_000_000, hashSeed: 0, maxClockSkewMs: 0, replicated: false, samplerSeed: 1 }))
  const keyStates = metas.map(() => new Map<string, KeyState>())
  const windowMsMax = Math.max(...metas.map(m => m.limit.windowMs))
  const samples = new Samples(size, s.measure.samplesPerSec > 0 ? 1000 / s.measure.samplesPerSec : 0, windowMsMax + 2 * Math.max(...metas.map(m => m.slotMs)) + (Math.max(0, ...offsets) - Math.min(0, ...offsets)))
  const lastDrop = new Float64Array(size * size).fill(-Infinity)
  const lastReject = new Float64Array(size * size).fill(-Infinity)
  const tally = newTally()
  const finalTally = newTally()
  const markers: Marker[] = []
  const healTimes: Array<number | null> = []
  const starts: number[] = []
  const crashes: number[] = []
  const phases: Int32Array[] = []
  let requests = 0
  let admitted = 0
  let denied = 0
  let underLimit = 0
  let falseDenials = 0
  let unserved = 0
  let lostAtCrash = 0
  /** Per start after boot: simulated ms from attach to serving. */
  const startedAfterMs: number[] = []

  // --- nodes ----------------------------------------------------------------------
  /** Nodes serving requests (start-up done). */
  const nodes: Array<SimNode | undefined> = new Array(size).fill(undefined)
  /** Nodes attached to the network but still starting (fetching policies, pulling a snapshot). */
  const starting: Array<SimNode | undefined> = new Array(size).fill(undefined)
  const curRep = new Int32Array(size).fill(-1)
  const replicas: ReplicaInfo[] = []
  const replicaIndex = new Map<string, number>()
  const live: number[][] = s.regions.map(() => [])
  let liveCount = 0
  let liveSince = 0
  let nodeSeconds = 0
  const tickLive = (): void => {
    nodeSeconds += liveCount * (sched.now - liveSince) / 1000
    liveSince = sched.now
  }

  const decode = sharedDecoder()
  const codecLimits = { ...DEFAULT_CODEC_LIMITS, maxMessageBytes: s.limiter.maxMessageBytes ?? 65536 }
  const network = createSimNetwork({
    scheduler: sched,
    spec: s.network,
    delivery: s.gossip.delivery === 'relay' ? 'mesh' : 'direct',
    meshDegree: s.gossip.meshDegree,
    regionOf,
    rnd: rNet,
    peerIds: peerIdOf,
    remote: unit === undefined
      ? undefined
      : {
          isLocal,
          attached: i => view.attached[i] === 1,
          // Counter topics stay in their region under the region topology (the only one run in parallel).
          exports: topic => !topic.startsWith(countersPrefix),
          send: env => {
            env.seq = unit.outbox.length
            unit.outbox.push(env)
          },
          note: (i, on) => { unit.notes.push(i, ATTACHED, on ? 1 : 0) }
        },
    observer: {
      published (from, topic, data) {
        // Membership, aggregates and policies travel too; the truth reads counters only.
        if (!topic.startsWith(countersPrefix)) return undefined
        const r = decode(data, codecLimits)
        if (!r.ok) return undefined
        const rep = curRep[from]
        for (const g of r.msg.groups) {
          const k = metaIndex.get(g.limit)
          if (k === undefined) continue
          const e = g.entries
          for (let j = 0; j < e.length; j += 3) truths[k].publish(e[j], e[j + 1], rep, e[j + 2], sched.now)
        }
        return samples.covering(rep, r.msg)
      },
      delivered (tag, from, to, verdict) {
        if (verdict === 'reject') lastReject[from * size + to] = sched.now
        if (tag === undefined || verdict !== 'accept') return
        const b = (nodes[to] ?? starting[to]) as SimNode
        // Held once merged, or nothing to hold when the cell already left the receiver's
        // window (a sender whose clock runs behind); never when it is too far ahead.
        samples.covered(tag as Parameters<Samples['covered']>[0], to, sched.now, x => {
          const nowEpoch = Math.floor(b.clock.now() / metas[x.meta].slotMs)
          return x.epoch <= nowEpoch + futureSlots(x.meta)
        })
      },
      dropped (from, to) {
        lastDrop[from * size + to] = sched.now
      }
    }
  })

  const startNode = (i: number): boolean => {
    if (!isLocal(i)) return false
    const node = createSimNode({
      index: i,
      peerId: peerIdOf[i],
      region: regionNames[regionOf[i]],
      meshRegion: meshRegionOf(i),
      scheduler: sched,
      network,
      clockOffsetMs: offsets[i],
      policies: s.policies,
      flushIntervalMs: F,
      limiter: s.limiter,
      mesh: s.mesh,
      decodeDelta: decode,
      wrapTransport: opts.wrapTransport === undefined ? undefined : t => (opts.wrapTransport as NonNullable<RunOptions['wrapTransport']>)(i, t)
    })
    starting[i] = node
    curRep[i] = replicas.length
    replicaIndex.set(node.replica, replicas.length)
    replicas.push({ node: i, region: regionOf[i], key: node.replica, startedAt: sched.now, crashedAt: undefined })
    // It serves requests once start-up is done (createMeshNode resolved), as a gateway would.
    void node.started.then(() => {
      if (!node.ready || starting[i] !== node) return
      starting[i] = undefined
      tickLive()
      nodes[i] = node
      const list = live[regionOf[i]]
      list.push(i)
      list.sort((a, b) => a - b)
      liveCount++
      startedAfterMs.push(sched.now - node.startedAt)
      unit?.notes.push(i, SERVING, 1)
    })
    return true
  }

  const endNode = (i: number, crash: boolean): void => {
    const node = nodes[i] ?? starting[i]
    if (node === undefined) return
    const serving = nodes[i] !== undefined
    tickLive()
    if (crash && !serving) {
      node.crash()
      replicas[curRep[i]].crashedAt = sched.now
      crashes.push(sched.now)
    } else if (crash) {
      // What the node counted but never published dies with it.
      for (const g of node.limiter.collectDelta()) {
        const k = metaIndex.get(g.limit)
        if (k === undefined) continue
        const e = g.entries
        for (let j = 0; j < e.length; j += 3) {
          const cells = truths[k].byHash.get(e[j])
          const c = cells?.find(e[j + 1], curRep[i]) ?? -1
          if (cells !== undefined && c >= 0) lostAtCrash += cells.count[c] - cells.published[c]
        }
      }
      node.crash()
      samples.crashed(curRep[i])
      replicas[curRep[i]].crashedAt = sched.now
      crashes.push(sched.now)
    } else node.stop()
    nodes[i] = undefined
    starting[i] = undefined
    if (serving) {
      const list = live[regionOf[i]]
      list.splice(list.indexOf(i), 1)
      liveCount--
      unit?.notes.push(i, SERVING, 0)
    }
    samples.drop(i, sched.now)
  }

  // --- workload -------------------------------------------------------------------
  const trafficStart = F
  const trafficEnd = trafficStart + durationMs
  const endAt = trafficEnd + s.quietMs
  const workload = createWorkload(s.workload, s.regions, durationMs)
  const classes = windowClasses(s, trafficStart, trafficEnd)
  const field = s.workload.field
  const sticky = new Map<string, number>()
  const chartKey = s.workload.hotKeys.length > 0 ? s.workload.hotKeys[0].key : 'k0'
  const chartDomain = metas[0].scope === 'global' ? '*' : metas[0].scope === 'region' ? regionNames[s.regions.findIndex(g => g.share > 0 && g.nodes > 0)] : peerIdOf[0]
  const series = emptySeries(metas[0], chartKey, chartDomain, s.measure.chartBucketMs, durationMs + s.quietMs)

  const pickNode = (region: number, key: string): number => {
    const list = live[region]
    if (list.length === 0) return -1
    if (s.workload.spread === 'uniform') return list[Math.floor(rWork() * list.length)]
    const id = `${region}\u0000${key}`
    const held = sticky.get(id)
    if (held !== undefined && nodes[held] !== undefined) return held
    const pick = list[hashString(key, region + 7) % list.length]
    sticky.set(id, pick)
    return pick
  }

  const handle = (node: SimNode, key: string): void => {
    requests++
    const d = node.limiter.check({ [field]: key })
    const info = d.info
    if (info === undefined) return
    let k = infoMeta.get(info)
    if (k === undefined) {
      k = metaIndex.get(`${info.policy}/${info.id}`) as number
      infoMeta.set(info, k)
    }
    const meta = metas[k]
    const domain = meta.scope === 'global' ? '*' : meta.scope === 'region' ? node.region : node.peerId
    const dk = `${domain}\u0000${key}`
    let ks = keyStates[k].get(dk)
    if (ks === undefined) {
      ks = { meta: k, domain, key, win: new KeyWindows(meta.slotsPerWindow, meta.limit.limit, classes(meta)), offered: 0, admitted: 0, falseDenied: 0 }
      keyStates[k].set(dk, ks)
    }
    const now = SIM_EPOCH_MS + sched.now
    const rt = oracles[k]
    const oi = rt.locate(dk, now)
    const fits = rt.usage(oi, now) + 1 <= meta.limit.limit + 1e-9
    if (fits) underLimit++
    ks.offered++
    ks.win.add(Math.floor(now / meta.slotMs), 1, d.allowed ? 1 : 0)
    const b = Math.floor((sched.now - trafficStart) / s.measure.chartBucketMs)
    series.offeredAll[b]++
    const charted = k === 0 && key === chartKey && domain === chartDomain
    if (charted) series.offered[b]++
    if (!d.allowed) {
      denied++
      if (fits) {
        falseDenials++
        ks.falseDenied++
      }
      return
    }
    admitted++
    ks.admitted = (ks.admitted ?? 0) + 1
    series.admittedAll[b]++
    if (charted) series.admitted[b]++
    rt.commit(oi, now, 1)
    const epoch = Math.floor(node.clock.now() / meta.slotMs)
    const rep = curRep[node.index]
    const count = truths[k].admit(key, epoch, rep, 1)
    if (meta.scope !== 'node' && samples.due(sched.now)) {
      const receivers: number[] = []
      for (let j = 0; j < size; j++) {
        if (j !== node.index && nodes[j] !== undefined && groupOf(j) === groupOf(node.index) && network.connected(node.index, j)) receivers.push(j)
      }
      samples.take({ rep, limit: meta.name, key, hash: truths[k].cells(key).hash, epoch, count, at: sched.now, meta: k }, receivers)
    }
  }

  s.workload.clients.forEach((client, c) => {
    // A unit runs its region's share of each client: a Poisson process of rate x share.
    const scale = unit === undefined ? 1 : workload.regionWeights(client)[unit.region]
    if (!(scale > 0)) return
    const arrive = (t: number): void => {
      const at = workload.nextArrival(c, t - trafficStart, durationMs, rWork, scale)
      if (at === Infinity) return
      sched.at(trafficStart + at, () => {
        const region = unit === undefined ? workload.drawRegion(c, rWork) : unit.region
        const key = workload.drawKey(rWork)
        const i = pickNode(region, key)
        if (i < 0) unserved++
        else handle(nodes[i] as SimNode, key)
        arrive(sched.now)
      })
    }
    arrive(trafficStart)
  })

  const auditCtx = (): AuditContext => ({
    now: sched.now,
    nodes,
    replicas,
    replicaIndex,
    groupOf,
    connected: network.connected,
    lastDrop,
    lastReject,
    size,
    settledBefore: node => network.oldestInFlight(node),
    pastSlots: m => pastSlots(metaIndex.get(m.name) as number),
    futureSlots: m => futureSlots(metaIndex.get(m.name) as number),
    aggregated: m => m.scope === 'global' && s.gossip.topology === 'region',
    regionNames,
    judgeAggregates: false
  })

  const { audit, sampleViews, healed } = createProbes({ s, metas, truths, nodes, replicas, samples, network, size, rAudit, tally, now: () => sched.now, auditCtx })

  scheduleFaults({
    scenario: s, sched, network, size, initial, regionNames, regionOf, nodes, trafficStart, durationMs, endAt,
    rnd: rFault, joinNodes, markers, phases, starts, healTimes, startNode, endNode, healed,
    alive: unit === undefined ? undefined : () => view.alive()
  })

  // --- boot, audits, run ------------------------------------------------------------
  for (let i = 0; i < initial; i++) {
    const at = rBoot() * F
    if (isLocal(i)) sched.at(at, () => { startNode(i) })
  }
  const auditEvery = s.measure.auditEveryMs
  const scheduleAudit = (t: number): void => {
    if (t >= trafficEnd) return
    sched.at(t, () => {
      audit()
      scheduleAudit(t + auditEvery)
    })
  }
  if (s.measure.auditKeys > 0) scheduleAudit(trafficStart + auditEvery)
  const scheduleSampleViews = (t: number): void => {
    if (t > endAt) return
    sched.at(t, () => {
      sampleViews()
      scheduleSampleViews(t + F)
    })
  }
  if (s.measure.samplesPerSec > 0) scheduleSampleViews(trafficStart + F)
  // After the last request: how long until the audited views hold everything published.
  let afterTraffic: number | null = null
  const pollQuiet = (): void => {
    if (healed(Infinity)) afterTraffic = sched.now - trafficEnd
    else if (sched.now + 10 <= endAt) sched.after(10, pollQuiet)
  }
  sched.at(trafficEnd, pollQuiet)

  const facts = (): RunFacts => {
    tickLive()
    // --- final audit: after the quiet period every view equals the truth ------------
    const countsLost = finalAudit(auditCtx(), finalTally, metas, truths, pastSlots)
    samples.finish()
    return {
      scenario: s,
      seed,
      durationMs,
      nodes: initial,
      size,
      metas,
      keyStates,
      workload,
      phases,
      regionOf,
      starts,
      crashes,
      network: network.stats,
      nodeSeconds,
      requests,
      admitted,
      denied,
      underLimit,
      falseDenials,
      unserved,
      samples,
      healTimes,
      afterTraffic,
      tally,
      finalTally,
      countsLost,
      lostAtCrash,
      series,
      markers
    }
  }

  const result = (): RunResult => {
    const f = facts()
    const out = summarize(f)
    return opts.keyReport === true ? { ...out, keys: keyReports(f) } : out
  }

  return {
    endAt,
    trafficStart,
    runUntil: target => sched.runUntil(target),
    receive: env => { network.receive(env) },
    view,
    result,
    partial: () => partialOf(facts())
  }
}
