import { ErrorCode, invalid } from '../../src/errors.js'
import type { Random } from '../../membership/random.js'
import type { EventSpec, RegionSpec, Scenario } from '../scenario.js'

/** Most node processes a real run may have, joins included (they share one machine). */
export const MAX_REAL_NODES = 64

/** The fleet of a real run: the scenario as run (resized, rescaled) and every node index. */
export interface RealPlan {
  scenario: Scenario
  /** Nodes at the start; joins come after them. */
  initial: number
  size: number
  regionOf: Int32Array
  /** Region label of each node on the mesh: its region, or "all" for one mesh-wide topic. */
  labelOf: string[]
  /** Gossip group of each node: its region under the region topology, 0 otherwise. */
  groupOf: Int32Array
  /** Node indexes each join event (by its index in the scenario's events) brings up. */
  joinNodes: Map<number, number[]>
}

export interface PlanOptions {
  /** Fleet size at the start, spread over the scenario's regions in proportion to their nodes. */
  nodes?: number
  /** Mean total request rate: every client's rate is scaled by the same factor. */
  rate?: number
  durationMs?: number
  quietMs?: number
}

function refuse (field: string, value: unknown, problem: string, fix: string): never {
  throw invalid(ErrorCode.OPTION_INVALID, field, value, problem, fix)
}

/** Largest-remainder split of `n` over `weights` (every weight > 0 gets at least 1 when n allows). */
function split (n: number, weights: number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0)
  const out = weights.map(w => Math.floor(n * w / total))
  const order = weights.map((w, i) => i).sort((a, b) => (n * weights[b] / total - out[b]) - (n * weights[a] / total - out[a]) || a - b)
  for (let k = 0; out.reduce((a, b) => a + b, 0) < n; k++) out[order[k % order.length]]++
  // Lift regions left empty from the largest ones, while there is room.
  for (let i = 0; i < out.length; i++) {
    if (weights[i] === 0 || out[i] > 0) continue
    const donor = out.indexOf(Math.max(...out))
    if (out[donor] > 1) { out[donor]--; out[i]++ }
  }
  return out
}

/**
 * Adapts a scenario to real processes: the network faults the real network cannot be
 * told to make are refused (loss, duplication, reordering need tc netem, which real
 * mode does not use); latency and bandwidth models are ignored (the real network
 * decides); the fleet is resized and the load rescaled when asked.
 */
export function planFleet (input: Scenario, opts: PlanOptions = {}): RealPlan {
  const n = input.network
  if (n.loss > 0 || n.duplicate > 0 || n.reorder > 0) {
    refuse('scenario.network', { loss: n.loss, duplicate: n.duplicate, reorder: n.reorder }, 'asks for loss, duplication or reordering, which real mode cannot inject (no tc netem)', 'run this scenario in the simulator (npm run chaos), or set them to 0')
  }
  const initial0 = input.regions.reduce((a, r) => a + r.nodes, 0)
  const nodes = opts.nodes ?? initial0
  if (!Number.isInteger(nodes) || nodes < 1) refuse('nodes', nodes, 'must be a whole number of at least 1', 'pass --nodes N with N >= 1')
  const counts = nodes === initial0 ? input.regions.map(r => r.nodes) : split(nodes, input.regions.map(r => r.nodes))
  const regions: RegionSpec[] = input.regions.map((r, i) => ({ ...r, nodes: counts[i] }))
  const factor = nodes / initial0
  const events: EventSpec[] = input.events.map(e => e.kind === 'join' ? { ...e, nodes: Math.max(1, Math.round(e.nodes * factor)) } : e)
  const joins = events.reduce((a, e) => a + (e.kind === 'join' ? e.nodes : 0), 0)
  if (nodes + joins > MAX_REAL_NODES) refuse('nodes', nodes + joins, `makes ${nodes + joins} node processes with joins, more than real mode's ${MAX_REAL_NODES}`, 'pass a smaller --nodes')
  let clients = input.workload.clients
  if (opts.rate !== undefined) {
    const total = clients.reduce((a, c) => a + c.ratePerSec, 0)
    if (!(opts.rate > 0) || total === 0) refuse('rate', opts.rate, 'must be a positive number of requests per second', 'pass --rate 500')
    clients = clients.map(c => ({ ...c, ratePerSec: c.ratePerSec * (opts.rate as number) / total }))
  }
  const durationMs = opts.durationMs ?? input.durationMs
  if (!events.every(e => e.kind === 'join' || e.atMs < durationMs)) refuse('duration', durationMs, 'ends before some event of the scenario', 'pass a longer --duration')
  const shortest = Math.min(...[...input.limits.values()].map(m => m.limit.windowMs))
  const quietMs = opts.quietMs ?? input.quietMs
  if (quietMs >= shortest) refuse('quiet', quietMs, `is not shorter than the shortest window (${shortest} ms), so the final audit would see only expired counts`, 'pass a shorter --quiet')
  const scenario: Scenario = { ...input, regions, events, durationMs, quietMs, workload: { ...input.workload, clients } }

  const regionOf: number[] = []
  regions.forEach((r, ri) => { for (let k = 0; k < r.nodes; k++) regionOf.push(ri) })
  const joinNodes = new Map<number, number[]>()
  events.forEach((e, idx) => {
    if (e.kind !== 'join') return
    const ri = regions.findIndex(r => r.name === e.region)
    joinNodes.set(idx, Array.from({ length: e.nodes }, () => regionOf.push(ri) - 1))
  })
  const mesh = scenario.gossip.topology === 'mesh'
  return {
    scenario,
    initial: nodes,
    size: regionOf.length,
    regionOf: Int32Array.from(regionOf),
    labelOf: regionOf.map(r => mesh ? 'all' : regions[r].name),
    groupOf: Int32Array.from(regionOf, r => mesh ? 0 : r),
    joinNodes
  }
}

/**
 * Nodes a selector picks among `candidates` (sorted indexes), as in the simulator;
 * `random:P%` picks at least one node when P > 0, since real fleets are small.
 */
export function selectNodes (plan: RealPlan, candidates: number[], sel: string, rnd: Random): number[] {
  if (sel === 'all') return candidates.slice()
  const colon = sel.indexOf(':')
  const kind = sel.slice(0, colon)
  const arg = sel.slice(colon + 1)
  const names = plan.scenario.regions.map(r => r.name)
  switch (kind) {
    case 'region': return candidates.filter(i => names[plan.regionOf[i]] === arg)
    case 'nodes': {
      const [a, b] = arg.split('-').map(Number)
      return candidates.filter(i => i >= a && i <= b)
    }
    case 'fraction': {
      const [a, b] = arg.split('-').map(Number)
      const n = plan.initial
      return candidates.filter(i => i < n && i >= Math.floor(a * n) && i < Math.floor(b * n))
    }
    default: {
      const pct = arg.endsWith('%') ? Number(arg.slice(0, -1)) : undefined
      const want = pct === undefined ? Number(arg) : pct > 0 ? Math.max(1, Math.round(candidates.length * pct / 100)) : 0
      const pool = candidates.slice()
      const out: number[] = []
      while (out.length < want && pool.length > 0) out.push(pool.splice(Math.floor(rnd() * pool.length), 1)[0])
      return out.sort((a, b) => a - b)
    }
  }
}
