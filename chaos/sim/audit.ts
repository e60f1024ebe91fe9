import type { KeyCounters } from '../../src/limiter.js'
import type { LimitMeta } from '../scenario.js'
import type { Invariant } from '../summary.js'
import type { SimNode } from './node.js'
import type { KeyCells, LimitTruth } from './truth.js'

/**
 * Audits of what nodes hold against the truth. For one node B, one key and every cell
 * (replica r, epoch e) inside B's current range:
 *
 * - own-count-exact: B's own replica holds exactly what B admitted.
 * - view-not-above-truth: B never holds more for (r, e) than r admitted (max-merge of
 *   absolute counts can lag, never invent).
 * - lag: B holds less than r published. Explained when a copy from r's node to B was
 *   lost, cut or rejected since the cell was first published, when B started after it,
 *   or when r and B are cut apart now; otherwise it is a lost count.
 */

export interface ReplicaInfo {
  node: number
  region: number
  key: string
  startedAt: number
  /** Set when the incarnation crashed (not when it stopped gracefully). */
  crashedAt: number | undefined
}

export interface AuditContext {
  now: number
  nodes: Array<SimNode | undefined>
  replicas: ReplicaInfo[]
  replicaIndex: Map<string, number>
  /** Gossip group of a node (its region for the region topology, 0 for one mesh). */
  groupOf(node: number): number
  connected(a: number, b: number): boolean
  /** Time of the last lost, cut or rejected copy from node a to node b (-Infinity when none), N x N. */
  lastDrop: Float64Array
  lastReject: Float64Array
  size: number
  /**
   * Cells of node n's replicas last published before settledBefore(n) are settled: every
   * copy of those messages has landed (or was lost).
   */
  settledBefore(node: number): number
  /** Epochs a node accepts: (nowEpoch - pastSlots, nowEpoch + futureSlots]. */
  pastSlots(meta: LimitMeta): number
  futureSlots(meta: LimitMeta): number
  /**
   * Whether the limit is global on a mesh of several regions: a node holds its region's
   * replicas and one aggregate column per other region (`region:<name>@0`).
   */
  aggregated(meta: LimitMeta): boolean
  regionNames: string[]
  /**
   * Whether aggregate columns are judged for lag (the final audit and convergence
   * probes); running audits only check that none holds more than its region admitted.
   */
  judgeAggregates: boolean
}

export type LagCause = 'dropped' | 'blankStart' | 'partitioned' | 'clockSkew' | 'unpublished' | 'unexplained'

export interface AuditTally {
  /** Broken invariants with their first example. */
  broken: Map<Invariant, { count: number, detail: string }>
  lag: Record<LagCause, number>
  /** Units missing from views, per cause. */
  missingUnits: Record<LagCause, number>
}

export function newTally (): AuditTally {
  const z = (): Record<LagCause, number> => ({ dropped: 0, blankStart: 0, partitioned: 0, clockSkew: 0, unpublished: 0, unexplained: 0 })
  return { broken: new Map(), lag: z(), missingUnits: z() }
}

export function breach (t: AuditTally, inv: Invariant, detail: string, n = 1): void {
  const b = t.broken.get(inv)
  if (b === undefined) t.broken.set(inv, { count: n, detail })
  else b.count += n
}

/** Whether B's range at now holds epoch e of `meta`. */
function inRange (ctx: AuditContext, node: SimNode, meta: LimitMeta, e: number): boolean {
  const nowEpoch = Math.floor(node.clock.now() / meta.slotMs)
  return e > nowEpoch - ctx.pastSlots(meta) && e <= nowEpoch + ctx.futureSlots(meta)
}

/** Why B lacks (some of) replica r's cell j, or 'unexplained'. */
function causeOf (ctx: AuditContext, b: SimNode, r: number, cells: KeyCells, j: number): LagCause {
  const rep = ctx.replicas[r]
  const from = rep.node
  if (!ctx.connected(from, b.index)) return 'partitioned'
  if (b.startedAt > cells.firstPub[j]) return 'blankStart'
  const pair = from * ctx.size + b.index
  if (ctx.lastReject[pair] >= cells.firstPub[j]) return 'clockSkew'
  if (ctx.lastDrop[pair] >= cells.firstPub[j]) return 'dropped'
  return 'unexplained'
}

/**
 * Audits node B's view of one key. `final` also counts units never published by a
 * crashed replica (they cannot be anywhere) and checks unsettled cells (after the quiet
 * period every cell has settled).
 */
export function auditKey (ctx: AuditContext, tally: AuditTally, b: SimNode, meta: LimitMeta, cells: KeyCells, final: boolean, onMissing?: (cell: string, units: number) => void): void {
  const view = b.limiter.inspect(meta.name, cells.key, true)
  const own = ctx.replicaIndex.get(b.replica) as number
  const group = ctx.groupOf(b.index)
  const agg = ctx.aggregated(meta)
  const held = new Map<string, number>()
  if (view?.replicas !== undefined) {
    for (const [name, pairs] of view.replicas) {
      for (let p = 0; p < pairs.length; p += 2) held.set(`${name}|${pairs[p]}`, pairs[p + 1])
    }
  }
  for (let j = 0; j < cells.epoch.length; j++) {
    const e = cells.epoch[j]
    if (!inRange(ctx, b, meta, e)) continue
    const r = cells.rep[j]
    const rep = ctx.replicas[r]
    const has = held.get(`${rep.key}|${e}`) ?? 0
    held.delete(`${rep.key}|${e}`)
    if (r === own) {
      if (has !== cells.count[j]) breach(tally, 'own-count-exact', `node ${b.peerId} holds ${has} of its own cell (${cells.key}, epoch ${e}) but admitted ${cells.count[j]}`)
      continue
    }
    // A node-scoped limit is never gossiped: only the node's own counts belong in its view.
    // Another region's replicas reach a global limit only through that region's aggregate.
    if (meta.scope === 'node' || ctx.groupOf(rep.node) !== group) {
      if (agg && meta.scope !== 'node') continue
      // Counters of another gossip group never reach B (the region topology).
      if (has > 0) breach(tally, 'view-not-above-truth', `node ${b.peerId} holds ${has} from ${rep.key}, a replica outside its gossip group`)
      continue
    }
    if (has > cells.count[j]) {
      breach(tally, 'view-not-above-truth', `node ${b.peerId} holds ${has} for (${rep.key}, ${cells.key}, epoch ${e}) but only ${cells.count[j]} were admitted`)
      continue
    }
    const settled = final || cells.lastPub[j] < ctx.settledBefore(rep.node)
    if (!settled) continue
    if (has < cells.published[j]) {
      const cause = causeOf(ctx, b, r, cells, j)
      tally.lag[cause]++
      tally.missingUnits[cause] += cells.published[j] - has
      onMissing?.(`${j}`, cells.published[j] - has)
    }
    if (final && cells.published[j] < cells.count[j]) {
      // Never published: lost with a crashed process, or (for a live one) a flush that never came.
      const cause: LagCause = rep.crashedAt !== undefined ? 'unpublished' : 'unexplained'
      tally.lag[cause]++
      tally.missingUnits[cause] += cells.count[j] - Math.max(has, cells.published[j])
    }
  }
  if (agg) auditAggregates(ctx, tally, b, meta, cells, held, final || ctx.judgeAggregates, onMissing)
  // Whatever is left in the view has no admission behind it (only cells in range count).
  for (const [cell, count] of held) {
    const at = cell.lastIndexOf('|')
    const e = Number(cell.slice(at + 1))
    if (count > 0 && inRange(ctx, b, meta, e)) breach(tally, 'view-not-above-truth', `node ${b.peerId} holds ${count} for (${cell.slice(0, at)}, ${cells.key}, epoch ${e}) that no replica admitted`)
  }
}

/**
 * The aggregate columns of a global limit in B's view (and removes them from `held`):
 * per other region R and epoch e, the column must not exceed what R's replicas admitted
 * in e, and, when judged, must hold what they published (settled cells).
 */
function auditAggregates (ctx: AuditContext, tally: AuditTally, b: SimNode, meta: LimitMeta, cells: KeyCells, held: Map<string, number>, judge: boolean, onMissing?: (cell: string, units: number) => void): void {
  const mine = ctx.replicas[ctx.replicaIndex.get(b.replica) as number].region
  const byCell = new Map<string, { region: number, epoch: number, count: number, published: number, firstPub: number, settled: boolean, node: number }>()
  for (let j = 0; j < cells.epoch.length; j++) {
    const e = cells.epoch[j]
    if (!inRange(ctx, b, meta, e)) continue
    const rep = ctx.replicas[cells.rep[j]]
    if (rep.region === mine) continue
    const id = `region:${ctx.regionNames[rep.region]}@0|${e}`
    let c = byCell.get(id)
    if (c === undefined) {
      c = { region: rep.region, epoch: e, count: 0, published: 0, firstPub: Infinity, settled: true, node: rep.node }
      byCell.set(id, c)
    }
    c.count += cells.count[j]
    c.published += cells.published[j]
    if (cells.firstPub[j] < c.firstPub) c.firstPub = cells.firstPub[j]
    if (!(cells.lastPub[j] < ctx.settledBefore(rep.node))) c.settled = false
  }
  for (const [id, c] of byCell) {
    const has = held.get(id) ?? 0
    held.delete(id)
    if (has > c.count) {
      breach(tally, 'view-not-above-truth', `node ${b.peerId} holds ${has} in the aggregate of ${ctx.regionNames[c.region]} for (${cells.key}, epoch ${c.epoch}) but that region admitted ${c.count}`)
      continue
    }
    if (!judge || !c.settled || has >= c.published) continue
    const cause = aggregateLagCause(ctx, b, c.region, c.firstPub)
    tally.lag[cause]++
    tally.missingUnits[cause] += c.published - has
    onMissing?.(id, c.published - has)
  }
}

/** Why B lacks part of region R's aggregate published since `since`. */
function aggregateLagCause (ctx: AuditContext, b: SimNode, region: number, since: number): LagCause {
  let dropped = false
  for (const rep of ctx.replicas) {
    if (rep.region !== region) continue
    if (!ctx.connected(rep.node, b.index)) return 'partitioned'
    if (ctx.lastDrop[rep.node * ctx.size + b.index] >= since) dropped = true
  }
  if (b.startedAt > since) return 'blankStart'
  return dropped ? 'dropped' : 'unexplained'
}

/** Sum of a view's totals over B's current range (the fast path of the final audit). */
export function viewTotal (ctx: AuditContext, b: SimNode, meta: LimitMeta, view: KeyCounters | undefined): number {
  if (view === undefined) return 0
  let sum = 0
  for (let k = 0; k < view.totals.length; k++) if (inRange(ctx, b, meta, view.firstEpoch + k)) sum += view.totals[k]
  return sum
}

/** What B should hold of a key over its current range: everything published within its gossip group. */
export function expectedTotal (ctx: AuditContext, b: SimNode, meta: LimitMeta, cells: KeyCells): number {
  const group = ctx.groupOf(b.index)
  const own = ctx.replicaIndex.get(b.replica) as number
  const agg = ctx.aggregated(meta)
  let sum = 0
  for (let j = 0; j < cells.epoch.length; j++) {
    const r = cells.rep[j]
    if (r !== own && (meta.scope === 'node' || (!agg && ctx.groupOf(ctx.replicas[r].node) !== group))) continue
    if (!inRange(ctx, b, meta, cells.epoch[j])) continue
    sum += cells.count[j]
  }
  return sum
}

/**
 * The final audit, after the quiet period: every live node's view of every key against
 * the truth (totals first; the per-replica audit only where they differ). Returns the
 * units some live node lacks (crash losses excluded), counting each cell once.
 */
export function finalAudit (ctx: AuditContext, tally: AuditTally, metas: LimitMeta[], truths: LimitTruth[], pastSlots: (k: number) => number): number {
  let lost = 0
  let oldest = Infinity
  for (const b of ctx.nodes) if (b !== undefined) oldest = Math.min(oldest, b.clock.now())
  metas.forEach((meta, k) => {
    // Keys whose newest cell left every node's range cannot differ anywhere.
    const floor = Math.floor(oldest / meta.slotMs) - pastSlots(k)
    for (const cells of truths[k].byKey.values()) {
      if (cells.newest <= floor) continue
      const worst = new Map<string, number>()
      for (const b of ctx.nodes) {
        if (b === undefined) continue
        const view = b.limiter.inspect(meta.name, cells.key, false)
        if (viewTotal(ctx, b, meta, view) === expectedTotal(ctx, b, meta, cells)) continue
        auditKey(ctx, tally, b, meta, cells, true, (id, units) => { if (units > (worst.get(id) ?? 0)) worst.set(id, units) })
      }
      for (const w of worst.values()) lost += w
    }
  })
  if (tally.missingUnits.unexplained > 0) {
    breach(tally, 'no-count-lost', `${tally.missingUnits.unexplained} units missing from views with no lost, cut or rejected copy to explain them`)
  }
  return lost
}
