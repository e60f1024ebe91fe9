import { join } from 'node:path'
import type { PolicyDocument } from '../../src/policy/types.js'
import type { LimitMeta } from '../scenario.js'
import type { Incarnation, Snapshot } from './audit.js'
import { createFleet, type Fleet } from './fleet.js'
import type { NetnsTopology } from './netns.js'
import type { RealPlan } from './plan.js'
import { RESULT_FIELDS, type Command, type NodeInit, type NodeStats, type Ready, type Report, type ViewOf } from './protocol.js'

/** Membership heartbeat of the nodes, ms (suspect after 3, dead after 10). */
export const HEARTBEAT_MS = 1000
/** Bound on a node's start-up wait for peers and its first pull, ms. */
export const SYNC_TIMEOUT_MS = 5000

export type NodeState = 'down' | 'starting' | 'live' | 'stopping'

export interface ClusterInit {
  plan: RealPlan
  metas: LimitMeta[]
  policies: PolicyDocument
  /** The run's folder: identity files node-<i>.key, the key mesh.key, the logs. */
  dir: string
  peerIds: string[]
  listenOf: (i: number) => string
  bootstrapOf: (i: number) => string[]
  offsets: number[]
  netns: NetnsTopology | undefined
  childModule: string
  execArgv: string[]
  logLevel: string
  /** One answered request: the node, its incarnation, the request's key, and the node's result fields. */
  onResult: (node: number, rep: number, key: string, allowed: boolean, limit: number, epoch: number, t: number) => void
  /** A watched cell reached a node. */
  onHeld: (sid: number, node: number, at: number) => void
  /** A node process ended (crash, stop or failure). */
  onGone: (node: number) => void
}

/**
 * The node processes of a real run and what the parent knows of them: their state,
 * incarnations, requests in flight, and the queries (views, statistics) it asks them.
 */
export interface Cluster {
  readonly reps: Incarnation[]
  readonly repIndex: Map<string, number>
  /** Current (or last) incarnation of each node, -1 before its first start. */
  readonly curRep: Int32Array
  readonly state: NodeState[]
  /** Live nodes of each region, sorted. */
  readonly live: number[][]
  /** Last statistics of each incarnation. */
  readonly lastStats: Map<number, NodeStats>
  readonly nodeFailures: string[]
  /** The sides of the cut in force, if any. */
  readonly cut: Int32Array | undefined
  processes: number
  /** Requests sent to nodes that died before answering. */
  lostInFlight: number
  running(): number[]
  isCut(a: number, b: number): boolean
  /** Starts node i (after its previous process has exited); resolves when it is ready. */
  spawn(i: number): Promise<Ready>
  /** SIGKILLs node i; returns the index of the incarnation that died. */
  kill(i: number): number
  /** Stops node i gracefully (it flushes and leaves). */
  stop(i: number): Promise<void>
  /** Sends requests: [request id, key] pairs, flat. */
  request(i: number, q: Array<number | string>): void
  /** Ids of the next requests. */
  nextRequestId(key: string, node: number): number
  send(i: number, cmd: Command): void
  /** Cuts the cluster into sides (connection gater, or the namespaces' routing), or heals it (undefined). */
  applyCut(side: Int32Array | undefined): void
  /** Every live node's views of `keys` (per limit index); nodes that do not answer within 10 s are left out. */
  snapshot(keys: string[][]): Promise<Snapshot[]>
  /** Statistics of every live node (5 s bound per node). */
  stats(): Promise<NodeStats[]>
  killAll(): Promise<void>
}

export function createCluster (init: ClusterInit): Cluster {
  const { plan, metas, peerIds, netns } = init
  const { size, regionOf, groupOf, labelOf } = plan
  const s = plan.scenario
  const reps: Incarnation[] = []
  const repIndex = new Map<string, number>()
  const curRep = new Int32Array(size).fill(-1)
  const state: NodeState[] = new Array(size).fill('down')
  const live: number[][] = s.regions.map(() => [])
  const lastStats = new Map<number, NodeStats>()
  const nodeFailures: string[] = []
  const exited = new Map<number, () => void>()
  const waiters = new Map<number, { resolve: (r: Ready) => void, reject: (e: Error) => void }>()
  const pending = new Map<number, { key: string, node: number }>()
  const inspects = new Map<number, (v: { now: number, views: Array<ViewOf | null> } | undefined) => void>()
  const statsWaiters = new Map<number, (s: NodeStats | undefined) => void>()
  let nextId = 0
  let queryId = 0
  let cut: Int32Array | undefined

  const removeLive = (i: number): void => {
    const list = live[regionOf[i]]
    const p = list.indexOf(i)
    if (p >= 0) list.splice(p, 1)
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
      case 'res': {
        const q = r.r
        for (let j = 0; j < q.length; j += RESULT_FIELDS) {
          const p = pending.get(q[j])
          if (p === undefined) continue
          pending.delete(q[j])
          init.onResult(i, curRep[i], p.key, q[j + 1] === 1, q[j + 2], q[j + 3], q[j + 4])
        }
        return
      }
      case 'views': inspects.get(r.id)?.({ now: r.now, views: r.views }); inspects.delete(r.id); return
      case 'held': init.onHeld(r.sid, i, r.at); return
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
      cluster.lostInFlight++
    }
    init.onGone(i)
    waiters.get(i)?.reject(new Error(`node ${i} exited before it was ready (code ${exit.code ?? '-'}, signal ${exit.signal ?? '-'}); see node-${i}.log`))
    waiters.delete(i)
    const e = exited.get(i)
    exited.delete(i)
    e?.()
  }

  const fleet: Fleet = createFleet({ dir: init.dir, childModule: init.childModule, execArgv: init.execArgv, netns, onReport, onExit })

  /** Peers node i must refuse under the gater cut `side`. */
  const blockedBy = (side: Int32Array, i: number): string[] => peerIds.filter((_, j) => side[j] !== side[i])

  const cluster: Cluster = {
    reps,
    repIndex,
    curRep,
    state,
    live,
    lastStats,
    nodeFailures,
    get cut () { return cut },
    processes: 0,
    lostInFlight: 0,
    running: () => Array.from({ length: size }, (_, i) => i).filter(i => state[i] === 'live'),
    isCut: (a, b) => cut !== undefined && cut[a] !== cut[b],
    async spawn (i) {
      if (fleet.running(i)) await new Promise<void>(resolve => exited.set(i, resolve))
      const nodeInit: NodeInit = {
        t: 'init',
        index: i,
        identityFile: join(init.dir, `node-${i}.key`),
        pskFile: join(init.dir, 'mesh.key'),
        listen: [init.listenOf(i)],
        bootstrap: init.bootstrapOf(i),
        mesh: 'chaos',
        region: labelOf[i],
        policies: init.policies,
        field: s.workload.field,
        limits: metas.map(m => m.name),
        slotMs: metas.map(m => m.slotMs),
        flushIntervalMs: s.gossip.flushIntervalMs,
        limiter: s.limiter,
        clockOffsetMs: init.offsets[i],
        // A restart during a gater cut must not talk across it even once.
        blocked: netns === undefined && cut !== undefined ? blockedBy(cut, i) : [],
        heartbeatIntervalMs: HEARTBEAT_MS,
        syncTimeoutMs: SYNC_TIMEOUT_MS,
        logLevel: init.logLevel
      }
      state[i] = 'starting'
      cluster.processes++
      const ready = new Promise<Ready>((resolve, reject) => waiters.set(i, { resolve, reject }))
      fleet.spawn(i, nodeInit)
      return await ready
    },
    kill (i) {
      const rep = curRep[i]
      fleet.kill(i)
      state[i] = 'down'
      removeLive(i)
      reps[rep].crashedAt = Date.now()
      return rep
    },
    async stop (i) {
      state[i] = 'stopping'
      removeLive(i)
      await fleet.stop(i)
    },
    request: (i, q) => { fleet.send(i, { t: 'req', q }) },
    nextRequestId (key, node) {
      const id = nextId++
      pending.set(id, { key, node })
      return id
    },
    send: (i, cmd) => { fleet.send(i, cmd) },
    applyCut (side) {
      const before = cut
      cut = side
      if (netns !== undefined) {
        if (side === undefined) netns.heal()
        else netns.cut(side)
        return
      }
      for (const i of cluster.running()) {
        if (side !== undefined) fleet.send(i, { t: 'block', peers: blockedBy(side, i) })
        else if (before !== undefined) fleet.send(i, { t: 'unblock', peers: blockedBy(before, i) })
      }
    },
    async snapshot (keys) {
      const q: Array<[number, string]> = keys.flatMap((ks, k) => ks.map(key => [k, key] as [number, string]))
      const answers = await Promise.all(cluster.running().map(async i => {
        const id = queryId++
        const v = await new Promise<{ now: number, views: Array<ViewOf | null> } | undefined>(resolve => {
          inspects.set(id, resolve)
          setTimeout(() => { inspects.delete(id); resolve(undefined) }, 10_000).unref()
          fleet.send(i, { t: 'inspect', id, q })
        })
        if (v === undefined || state[i] !== 'live') return undefined
        const views = metas.map(() => new Map<string, ViewOf | null>())
        q.forEach(([k, key], n) => views[k].set(key, v.views[n]))
        return { node: i, rep: curRep[i], now: v.now, views }
      }))
      return answers.filter((a): a is Snapshot => a !== undefined)
    },
    async stats () {
      const out = await Promise.all(cluster.running().map(async i => await new Promise<NodeStats | undefined>(resolve => {
        const id = queryId++
        statsWaiters.set(id, resolve)
        setTimeout(() => { statsWaiters.delete(id); resolve(undefined) }, 5000).unref()
        fleet.send(i, { t: 'stats', id })
      })))
      return out.filter((x): x is NodeStats => x !== undefined)
    },
    killAll: async () => { await fleet.killAll() }
  }
  return cluster
}
