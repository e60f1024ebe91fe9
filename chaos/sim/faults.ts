import type { Random } from '../../membership/random.js'
import type { Scenario } from '../scenario.js'
import type { Marker } from '../summary.js'
import type { SimNetwork } from './network.js'
import type { SimNode } from './node.js'
import type { Scheduler } from './scheduler.js'

/** What the fault timeline acts on (owned by the run). */
export interface FaultContext {
  scenario: Scenario
  sched: Scheduler
  network: SimNetwork
  size: number
  /** Nodes at the start; `fraction:` selectors pick among them. */
  initial: number
  regionNames: string[]
  regionOf: Int32Array
  nodes: Array<SimNode | undefined>
  trafficStart: number
  durationMs: number
  endAt: number
  rnd: Random
  /** Node indexes each join event (by its index in the scenario) brings up. */
  joinNodes: Map<number, number[]>
  markers: Marker[]
  /** Group ids of every partition, for the bounds. */
  phases: Int32Array[]
  /** Times of node starts after boot (joins, restarts), for the bounds. */
  starts: number[]
  /** Per heal: ms until views converged, null until they do. */
  healTimes: Array<number | null>
  /** Starts node i; false when it is not this run's to start (another unit's, in a parallel run). */
  startNode(i: number): boolean
  endNode(i: number, crash: boolean): void
  /** Whether every audited view holds everything published before `healAt`. */
  healed(healAt: number): boolean
  /**
   * Serving nodes selectors pick among. @default the serving nodes now; a unit of a
   * parallel run passes the fleet as of the last exchange, which every unit shares, so
   * all of them pick the same nodes
   */
  alive?: () => number[]
}

/** Live nodes matching a selector (see docs/chaos.md); random picks draw from ctx.rnd. */
export function selectNodes (ctx: FaultContext, sel: string): number[] {
  const alive = ctx.alive?.() ?? ctx.nodes.flatMap((n, i) => n === undefined ? [] : [i])
  if (sel === 'all') return alive
  const [kind, arg] = [sel.slice(0, sel.indexOf(':')), sel.slice(sel.indexOf(':') + 1)]
  switch (kind) {
    case 'region': return alive.filter(i => ctx.regionNames[ctx.regionOf[i]] === arg)
    case 'nodes': {
      const [a, b] = arg.split('-').map(Number)
      return alive.filter(i => i >= a && i <= b)
    }
    case 'fraction': {
      const [a, b] = arg.split('-').map(Number)
      const n = ctx.initial
      return alive.filter(i => i < n && i >= Math.floor(a * n) && i < Math.floor(b * n))
    }
    default: {
      const n = arg.endsWith('%') ? Math.round(alive.length * Number(arg.slice(0, -1)) / 100) : Number(arg)
      const pool = alive.slice()
      const out: number[] = []
      while (out.length < n && pool.length > 0) out.push(pool.splice(Math.floor(ctx.rnd() * pool.length), 1)[0])
      return out.sort((a, b) => a - b)
    }
  }
}

/** Heals are polled this often until views converge. */
const HEAL_POLL_MS = 50

/** Schedules the scenario's timeline of partitions, heals, crashes, joins and leaves. */
export function scheduleFaults (ctx: FaultContext): void {
  const { sched, network, markers } = ctx
  ctx.scenario.events.forEach((e, idx) => {
    const at = ctx.trafficStart + e.atMs
    switch (e.kind) {
      case 'partition':
        sched.at(at, () => {
          const g = new Int32Array(ctx.size).fill(e.groups.length)
          e.groups.forEach((sels, gi) => { for (const sel of sels) for (const i of selectNodes(ctx, sel)) g[i] = gi })
          network.partition(g)
          ctx.phases.push(g.slice())
          markers.push({ atMs: e.atMs, kind: 'partition', label: `split into ${new Set(g).size} groups` })
        })
        break
      case 'heal':
        sched.at(at, () => {
          network.heal()
          markers.push({ atMs: e.atMs, kind: 'heal', label: 'heal' })
          const slot = ctx.healTimes.length
          ctx.healTimes.push(null)
          const poll = (): void => {
            if (ctx.healed(at)) ctx.healTimes[slot] = sched.now - at
            else if (sched.now + HEAL_POLL_MS < ctx.endAt) sched.after(HEAL_POLL_MS, poll)
          }
          sched.after(0, poll)
        })
        break
      case 'crash': {
        const fire = (t: number): void => {
          sched.at(ctx.trafficStart + t, () => {
            const victims = selectNodes(ctx, e.nodes)
            for (const i of victims) ctx.endNode(i, true)
            markers.push({ atMs: t, kind: 'crash', label: `crash ${victims.length}` })
            if (e.restartAfterMs !== undefined) {
              const back = e.restartAfterMs
              sched.after(back, () => {
                for (const i of victims) if (ctx.nodes[i] === undefined && ctx.startNode(i)) ctx.starts.push(sched.now)
                markers.push({ atMs: t + back, kind: 'restart', label: `restart ${victims.length}` })
              })
            }
          })
          if (e.everyMs !== undefined) {
            const next = t + e.everyMs
            if (next <= (e.untilMs ?? ctx.durationMs) && next < ctx.durationMs) fire(next)
          }
        }
        fire(e.atMs)
        break
      }
      case 'join':
        sched.at(at, () => {
          const list = ctx.joinNodes.get(idx) as number[]
          for (const i of list) if (ctx.startNode(i)) ctx.starts.push(sched.now)
          markers.push({ atMs: e.atMs, kind: 'join', label: `join ${list.length} in ${e.region}` })
        })
        break
      case 'leave':
        sched.at(at, () => {
          const gone = selectNodes(ctx, e.nodes)
          for (const i of gone) ctx.endNode(i, false)
          markers.push({ atMs: e.atMs, kind: 'leave', label: `leave ${gone.length}` })
        })
        break
    }
  })
}
