import { REACHABILITY_DEBOUNCE_MS } from '../../src/mesh.js'
import type { Scenario } from '../scenario.js'
import { quantile, TRUNCATE_AT } from './random.js'

/**
 * The over-admission bound of the simple admission rule (admit while my view has
 * room), per key and window, as derived in docs/accuracy.md. Every term is in units
 * (requests) over the limit L of one window W:
 *
 *   excess <= sum over sides s of min(L, R_s W) - L                         (partition, topology)
 *           + sum over sides of min((n_s - 1) L, R_s S_s (n_s - 1)/n_s + z sqrt(R_s S_s))   (staleness)
 *           + L (D + slot) / W  [+ L when D > maxClockSkewMs]                (clock skew D, when any)
 *           + L q/(1-q) + z sqrt(L c q (1-q))/(1-q)                         (loss q, no anti-entropy)
 *           + starts(W) min(L, r W) + crashes(W) min(L, r F)               (blank views, unflushed counts)
 *
 * capped by what was offered: max(0, R W + z sqrt(R W) - L). A side is a set of nodes
 * that exchange counters (a gossip group cut by the partition in force); R_s the peak
 * rate of the key's requests entering side s, n_s the nodes serving them, S_s = flush
 * interval + the largest latency of the side's links (x the hops of a relay mesh)
 * (+ reorder delay), r = R / n
 * the rate one node sees. z = 4 covers the Poisson spread of arrivals.
 */

export const Z = 4
/** Latency quantile used as the staleness horizon: the maximum (log-normals are truncated). */
export const STALENESS_QUANTILE = 1

/** The nodes of one side during one phase, by region. */
export interface Side {
  /** Nodes of the side per region index. */
  nodesByRegion: number[]
  /** Whether the side spans regions (its links include inter-region ones). */
  spansRegions: boolean
}

/** A period with one configuration of sides (the whole run, or a partition). */
export interface Phase {
  sides: Side[]
}

/** Terms of one key's bound, in units. */
export interface BoundTerms {
  sides: number
  partition: number
  staleness: number
  skew: number
  loss: number
  churn: number
  offeredCap: number
  total: number
}

export interface KeyLoad {
  /** Peak requests per second of the key entering each region (its domain's regions only). */
  peakRateByRegion: number[]
  /** Nodes per region able to serve it (all of the region's for uniform spread, 1 for sticky). */
  servingByRegion: number[]
}

export interface BoundContext {
  scenario: Scenario
  /** Nodes per region at the start (the denominators of uniform spread). */
  nodesPerRegion: number[]
  phases: Phase[]
  /** Most node starts (joins and restarts) inside any window-long interval. */
  startsPerWindow: number
  /** Most crashes inside any window-long interval. */
  crashesPerWindow: number
  /** A global limit on the region topology: counts cross regions in aggregates. */
  aggregated?: boolean
}

/**
 * Hops a relayed message may need to reach every one of `nodes` over a mesh of degree D:
 * about the diameter of a random D-regular graph, log(n) / log(D - 1), plus one.
 */
export function relayHops (s: Scenario, nodes: number): number {
  if (s.gossip.delivery !== 'relay' || nodes <= 2) return 1
  return Math.ceil(Math.log(nodes) / Math.log(Math.max(2, s.gossip.meshDegree - 1))) + 1
}

/** Interval of region aggregates (the mesh node's default unless the scenario sets it). */
export function aggregateIntervalMs (s: Scenario): number {
  return s.mesh.aggregateIntervalMs ?? 250
}

/**
 * Staleness horizon of a side of `nodes`: flush interval + largest latency per hop +
 * reorder delay. With `aggregated` (a global limit on the region topology) a count
 * crosses regions in a region aggregate: to the region's publisher (flush interval +
 * intra-region latency), its next publication (aggregate interval), then across.
 */
export function stalenessMs (s: Scenario, spansRegions: boolean, nodes = 2, aggregated = false): number {
  const intra = quantile(s.network.intraRegion, STALENESS_QUANTILE)
  const inter = quantile(s.network.interRegion, STALENESS_QUANTILE)
  const reorder = s.network.reorder > 0 || s.network.duplicate > 0 ? s.network.reorderDelayMs : 0
  if (aggregated && spansRegions) {
    const hops = relayHops(s, nodes)
    return s.gossip.flushIntervalMs + hops * (intra + reorder) + aggregateIntervalMs(s) + hops * (Math.max(intra, inter) + reorder)
  }
  const lat = spansRegions ? Math.max(inter, intra) : intra
  const hops = relayHops(s, nodes)
  return s.gossip.flushIntervalMs + hops * lat + hops * reorder
}

/**
 * Longest time from a cut until a node's limits run their partition mode: no heartbeat
 * for suspectAfterMs (the last one may have left just before the cut), noticed by the
 * next liveness check (every half heartbeat interval), then the reachability update
 * (coalesced over REACHABILITY_DEBOUNCE_MS).
 */
export function detectionMs (s: Scenario): number {
  const beat = s.mesh.heartbeatIntervalMs ?? 1000
  return (s.mesh.suspectAfterMs ?? 3 * beat) + beat / 2 + REACHABILITY_DEBOUNCE_MS + 1
}

/**
 * Bound on the excess of a window that lies entirely within a detected partition, by
 * partition mode (docs/accuracy.md). `open`: each side enforces the limit alone (the
 * sides' term); `closed`: gossiped limits deny, so nothing is admitted; `share`: each
 * node's own usage stays within its weight share of every member last known, so the
 * shares sum to at most one, and a node whose share is a fraction of a request passes
 * one request on a coin: at most one unit over per node, about z sqrt(n) / 2 over all.
 * Clock skew shifts each node's windows against true time (the skew term).
 */
export function partitionModeBound (mode: 'share' | 'closed' | 'open', sidesTerm: number, serving: number, skew: number): number {
  switch (mode) {
    case 'open': return sidesTerm
    case 'closed': return 0
    case 'share': return Math.min(serving, Z * Math.sqrt(serving) / 2) + skew
  }
}

/** Widest pairwise clock difference the skew distribution produces (0 without skew). */
export function skewSpreadMs (s: Scenario): number {
  const d = s.clocks.skew
  if (d === undefined) return 0
  return quantile(d, 1) - quantile(d, d.dist === 'lognormal' ? 1 - TRUNCATE_AT : 0)
}

/** The bound of one key with limit L and window W (ms), slot width slotMs. */
export function keyBound (ctx: BoundContext, L: number, windowMs: number, slotMs: number, load: KeyLoad): BoundTerms {
  const s = ctx.scenario
  const W = windowMs / 1000
  const totalRate = load.peakRateByRegion.reduce((a, b) => a + b, 0)
  const offeredCap = Math.max(0, totalRate * W + Z * Math.sqrt(totalRate * W) - L)
  let worst: BoundTerms | undefined
  for (const phase of ctx.phases) {
    let sides = 0
    let partition = -L
    let staleness = 0
    let serving = 0
    for (const side of phase.sides) {
      let R = 0
      let n = 0
      for (let r = 0; r < side.nodesByRegion.length; r++) {
        const inSide = side.nodesByRegion[r]
        if (inSide === 0 || load.peakRateByRegion[r] === 0) continue
        const share = Math.min(1, inSide / Math.max(1, ctx.nodesPerRegion[r]))
        R += load.peakRateByRegion[r] * (load.servingByRegion[r] === 1 ? 1 : share)
        n += load.servingByRegion[r] === 1 ? 1 : Math.min(inSide, load.servingByRegion[r])
      }
      if (R === 0 || n === 0) continue
      sides++
      serving += n
      partition += Math.min(L, R * W)
      const S = stalenessMs(s, side.spansRegions, side.nodesByRegion.reduce((a, b) => a + b, 0), ctx.aggregated === true) / 1000
      staleness += Math.min((n - 1) * L, R * S * (n - 1) / n + (n > 1 ? Z * Math.sqrt(R * S) : 0))
    }
    if (sides === 0) continue
    const rNode = totalRate / Math.max(1, serving)
    const spread = skewSpreadMs(s)
    // Nodes further apart than maxClockSkewMs reject each other's messages: like one more side.
    const skew = (spread > 0 ? L * (spread + slotMs) / windowMs : 0) + (spread > (s.limiter.maxClockSkewMs ?? 500) ? L : 0)
    const q = s.network.loss
    const c = Math.max(1, (L / W) * (s.gossip.flushIntervalMs / 1000) / Math.max(1, serving))
    const loss = q > 0 && serving > 1 ? L * q / (1 - q) + Z * Math.sqrt(L * c * q * (1 - q)) / (1 - q) : 0
    // A node that pulls a snapshot before it serves starts from its peers' (stale) view.
    const blank = s.mesh.syncOnStart === false ? ctx.startsPerWindow * Math.min(L, rNode * W) : 0
    const churn = blank + ctx.crashesPerWindow * Math.min(L, rNode * s.gossip.flushIntervalMs / 1000)
    const raw = Math.max(0, partition) + staleness + skew + loss + churn
    const total = Math.min(raw, offeredCap)
    const terms: BoundTerms = { sides, partition: Math.max(0, partition), staleness, skew, loss, churn, offeredCap, total }
    if (worst === undefined || terms.total > worst.total) worst = terms
  }
  return worst ?? { sides: 0, partition: 0, staleness: 0, skew: 0, loss: 0, churn: 0, offeredCap, total: 0 }
}

/**
 * A strict limit's bound: escrowed rights never admit more than the limit in a window of
 * one clock; with skewed clocks a node ahead spends the next window's rights while true
 * time is still in this one (up to a whole limit).
 */
export function strictBound (s: Scenario, L: number): BoundTerms {
  const skew = skewSpreadMs(s) > 0 ? L : 0
  return { sides: 1, partition: 0, staleness: 0, skew, loss: 0, churn: 0, offeredCap: 0, total: skew }
}
