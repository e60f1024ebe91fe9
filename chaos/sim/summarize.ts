import type { LimitMeta, Scenario } from '../scenario.js'
import type { Invariant, Marker, Series, Summary, Violation } from '../summary.js'
import type { AuditTally } from './audit.js'
import { keyBound, partitionModeBound, skewSpreadMs, stalenessMs, strictBound, type BoundContext, type BoundTerms, type Phase, type Side } from './bounds.js'
import type { NetworkStats } from './network.js'
import type { KeyState } from './run.js'
import { SIM_EPOCH_MS } from './node.js'
import { quantileOf, type Samples } from './samples.js'
import type { Workload } from './workload.js'

export interface RunFacts {
  scenario: Scenario
  seed: number
  durationMs: number
  nodes: number
  size: number
  metas: LimitMeta[]
  keyStates: Array<Map<string, KeyState>>
  workload: Workload
  /** Node group ids of every partition that happened. */
  phases: Int32Array[]
  regionOf: Int32Array
  starts: number[]
  crashes: number[]
  network: NetworkStats
  nodeSeconds: number
  requests: number
  admitted: number
  denied: number
  underLimit: number
  falseDenials: number
  unserved: number
  /** Convergence times of closed samples, and how many never converged. */
  samples: Pick<Samples, 'times' | 'unconverged'>
  healTimes: Array<number | null>
  afterTraffic: number | null
  tally: AuditTally
  finalTally: AuditTally
  countsLost: number
  lostAtCrash: number
  series: Series
  markers: Marker[]
}

const round = (x: number, d = 2): number => {
  const f = 10 ** d
  return Math.round(x * f) / f
}

/** Most of `times` inside any interval of length `w`. */
function mostWithin (times: number[], w: number): number {
  const t = times.slice().sort((a, b) => a - b)
  let best = 0
  for (let i = 0, j = 0; i < t.length; i++) {
    while (t[i] - t[j] >= w) j++
    best = Math.max(best, i - j + 1)
  }
  return best
}

/**
 * Sides of a phase: gossip groups (regions, or one mesh) cut by the partition groups.
 * A global limit on the region topology (`aggregated`) is one group: regions hear each
 * other through aggregates.
 */
function sidesOf (f: RunFacts, groups: Int32Array | undefined, aggregated: boolean): Side[] {
  const s = f.scenario
  const R = s.regions.length
  const byKey = new Map<string, Side>()
  for (let i = 0; i < f.size; i++) {
    const gossip = s.gossip.topology === 'mesh' || aggregated ? 0 : f.regionOf[i]
    const id = `${gossip}/${groups === undefined ? 0 : groups[i]}`
    let side = byKey.get(id)
    if (side === undefined) {
      side = { nodesByRegion: new Array<number>(R).fill(0), spansRegions: false }
      byKey.set(id, side)
    }
    side.nodesByRegion[f.regionOf[i]]++
  }
  for (const side of byKey.values()) side.spansRegions = side.nodesByRegion.filter(n => n > 0).length > 1
  return [...byKey.values()]
}

export function summarize (f: RunFacts): { summary: Summary, series: Series, markers: Marker[] } {
  const s = f.scenario
  const phasesOf = (aggregated: boolean): Phase[] => [{ sides: sidesOf(f, undefined, aggregated) }, ...f.phases.map(g => ({ sides: sidesOf(f, g, aggregated) }))]
  const phases = phasesOf(false)
  const aggPhases = phasesOf(true)
  const nodesPerRegion = s.regions.map(r => r.nodes)
  const peak = s.workload.clients.map(c => c.ratePerSec * (c.profile.type === 'burst' ? Math.max(1, c.profile.factor) : c.profile.type === 'ramp' ? Math.max(c.profile.from, c.profile.to) : 1))
  const weights = s.workload.clients.map(c => f.workload.regionWeights(c))

  let maxPct = 0
  let ratioSum = 0
  let contended = 0
  let boundPct = 0
  let worst: Summary['worstKey'] = null
  let worstRank = -Infinity
  let underOffered = 0
  let underFalse = 0
  let overBound = 0
  let overDetail = ''
  let steadyMax = -1
  const steadyWorst: NonNullable<Summary['steadyWorst']> = []
  const byKey = new Map<string, number>()
  let underWorst: NonNullable<Summary['underLimitWorstKey']> | null = null
  let overOffered = 0
  let overFalse = 0
  let overAdmitted = 0
  let overAllowed = 0
  let steadyRatio = 0
  let steadyContended = 0
  let detectedMax = -1
  let detectedBound = -1
  let detectedOver = 0
  let detectedDetail = ''
  f.metas.forEach((meta, k) => {
    const L = meta.limit.limit
    const aggregated = meta.scope === 'global' && s.gossip.topology === 'region'
    const ctx: BoundContext = {
      scenario: s,
      nodesPerRegion,
      phases: aggregated ? aggPhases : phases,
      startsPerWindow: mostWithin(f.starts, meta.limit.windowMs),
      crashesPerWindow: mostWithin(f.crashes, meta.limit.windowMs),
      aggregated
    }
    for (const ks of f.keyStates[k].values()) {
      // A client under its limit: mean offered rate over the traffic at most limit per window.
      if (ks.offered * meta.limit.windowMs <= L * f.durationMs) {
        underOffered += ks.offered
        underFalse += ks.falseDenied
        const fd = ks.offered === 0 ? 0 : ks.falseDenied / ks.offered * 100
        if (underWorst === null || fd > underWorst.falseDenialPct) underWorst = { domain: ks.domain, key: ks.key, offeredPct: round(ks.offered * meta.limit.windowMs / (L * f.durationMs) * 100, 1), falseDenialPct: round(fd, 3) }
      } else if (ks.admitted !== undefined) {
        overOffered += ks.offered
        overFalse += ks.falseDenied
        overAdmitted += ks.admitted
        overAllowed += L * f.durationMs / meta.limit.windowMs
      }
      ks.win.finish()
      ratioSum += ks.win.excessRatioSum
      contended += ks.win.contended
      const pct = (ks.win.maxExcess / L) * 100
      const share = f.workload.keyShare(ks.key)
      const regionIdx = s.regions.findIndex(g => g.name === ks.domain)
      const peakRateByRegion = s.regions.map((_, r) => {
        if (meta.scope === 'region' && r !== regionIdx) return 0
        let sum = 0
        for (let c = 0; c < peak.length; c++) sum += peak[c] * weights[c][r] * share
        return sum
      })
      const servingByRegion = s.regions.map((g, r) => s.workload.spread === 'sticky' ? 1 : (meta.scope === 'region' && r !== regionIdx ? 0 : g.nodes))
      const terms: BoundTerms = meta.scope === 'node'
        ? { sides: 1, partition: 0, staleness: 0, skew: 0, loss: 0, churn: 0, offeredCap: 0, total: 0 }
        : meta.strict ? strictBound(s, L) : keyBound(ctx, L, meta.limit.windowMs, meta.slotMs, { peakRateByRegion, servingByRegion })
      const bPct = (terms.total / L) * 100
      if (ks.win.windows > 0) {
        steadyMax = Math.max(steadyMax, ks.win.steadyMaxExcess / L * 100)
        if (ks.win.steadyMaxExcessSlot >= 0) {
          const name = f.metas.length > 1 ? `${meta.name}:${ks.key}` : ks.key
          byKey.set(name, Math.max(byKey.get(name) ?? 0, round(ks.win.steadyMaxExcess / L * 100)))
          // Traffic starts one flush interval into the run (chaos/sim/run.ts).
          const endMs = (ks.win.steadyMaxExcessSlot + 1) * meta.slotMs - SIM_EPOCH_MS - s.gossip.flushIntervalMs
          steadyWorst.push({ limit: meta.name, domain: ks.domain, key: ks.key, overAdmissionPct: round(ks.win.steadyMaxExcess / L * 100), windowEndS: round(endMs / 1000, 3), offeredPct: round(ks.offered * meta.limit.windowMs / (L * f.durationMs) * 100, 1) })
          steadyWorst.sort((a, b) => b.overAdmissionPct - a.overAdmissionPct)
          if (steadyWorst.length > 5) steadyWorst.length = 5
        }
        steadyRatio += ks.win.steadyRatioSum
        steadyContended += ks.win.steadyContended
      }
      if (ks.win.detectedMaxExcess >= 0 && meta.scope !== 'node') {
        // Windows within a detected partition: the partition mode's bound (strict: its own).
        const serving = servingByRegion.reduce((a, b) => a + b, 0)
        const dBound = meta.strict ? terms.total : partitionModeBound(meta.onPartition, terms.total, serving, terms.skew)
        const dPct = ks.win.detectedMaxExcess / L * 100
        const dbPct = dBound / L * 100
        if (dPct > detectedMax) detectedMax = dPct
        if (dbPct > detectedBound) detectedBound = dbPct
        if (dPct > dbPct + 1e-9) {
          detectedOver++
          if (detectedDetail === '') detectedDetail = `${meta.name} key ${ks.key} (${ks.domain}) over-admitted ${round(dPct)}% in a window within a detected partition (onPartition ${meta.onPartition}) against a bound of ${round(dbPct)}%`
        }
      }
      if (pct > maxPct) maxPct = pct
      if (bPct > boundPct) boundPct = bPct
      // The key with the largest measured excess (the larger bound on ties).
      const rank = pct * 1e6 + bPct
      if (ks.win.windows > 0 && rank > worstRank) {
        worstRank = rank
        worst = {
          limit: meta.name,
          domain: ks.domain,
          key: ks.key,
          overAdmissionPct: round(pct),
          boundPct: round(bPct),
          terms: Object.fromEntries(Object.entries(terms).map(([n, v]) => [n, round(v, 3)]))
        }
      }
      if (pct > bPct + 1e-9) {
        overBound++
        if (overDetail === '') overDetail = `${meta.name} key ${ks.key} (${ks.domain}) over-admitted ${round(pct)}% against a bound of ${round(bPct)}%`
      }
    }
  })

  const violations: Violation[] = []
  const push = (invariant: Invariant, count: number, detail: string, needs?: 'anti-entropy'): void => {
    violations.push(needs === undefined ? { invariant, count, detail } : { invariant, count, needs, detail })
  }
  for (const t of [f.tally, f.finalTally]) {
    for (const [inv, b] of t.broken) {
      const prior = violations.find(v => v.invariant === inv)
      if (prior !== undefined) prior.count += b.count
      else push(inv, b.count, b.detail)
    }
  }
  // Lag the running audits could not explain is a lost count even if the final audit is clean.
  if (f.tally.lag.unexplained > 0 && !violations.some(v => v.invariant === 'no-count-lost')) {
    push('no-count-lost', f.tally.lag.unexplained, `${f.tally.lag.unexplained} settled cells lagged in running audits with no lost, cut or rejected copy to explain them`)
  }
  if (f.countsLost > 0 && !violations.some(v => v.invariant === 'no-count-lost')) {
    const m = f.finalTally.missingUnits
    push('no-count-lost', f.countsLost, `after the quiet period ${f.countsLost} published units are missing from some view (units over all nodes: behind lost copies ${m.dropped}, on nodes started after ${m.blankStart}, behind a cut still in force ${m.partitioned}, rejected for clock skew ${m.clockSkew})`, m.clockSkew > 0 ? undefined : 'anti-entropy')
  }
  if (overBound > 0) push('over-admission-within-bound', overBound, overDetail)
  if (detectedOver > 0) push('partition-within-bound', detectedOver, detectedDetail)
  const unconverged = f.samples.unconverged
  const sampled = f.samples.times.length + unconverged
  const unconvergedPct = sampled === 0 ? 0 : (unconverged / sampled) * 100
  if (unconvergedPct > 1) {
    const lossy = s.network.loss > 0 || f.crashes.length > 0 || f.phases.length > 0
    push('convergence', unconverged, `${round(unconvergedPct)}% of ${sampled} sampled admissions never reached every peer of their gossip group`, lossy ? 'anti-entropy' : undefined)
  }
  // Without re-sends, counts published before a heal reach the other side only by expiring.
  const slotMax = Math.max(...f.metas.map(m => m.slotMs))
  const healBound = Math.max(...f.metas.map(m => m.limit.windowMs)) + 2 * slotMax + skewSpreadMs(s) + stalenessMs(s, true) + 50
  const late = f.healTimes.filter(t => t === null || t > healBound)
  if (late.length > 0) push('convergence-after-heal', late.length, `a heal took ${late[0] === null ? 'forever' : `${late[0]} ms`} to converge, more than ${round(healBound)} ms (window + 2 slots + skew + staleness)`)

  const seconds = (f.durationMs + s.quietMs) / 1000
  const bytes = f.network.bytesSent.reduce((a, b) => a + b, 0)
  const payload = f.network.payloadBytesSent.reduce((a, b) => a + b, 0)
  const perNodeSecond = f.nodeSeconds > 0 ? 1 / f.nodeSeconds : 0
  const summary: Summary = {
    scenario: s.name,
    seed: f.seed,
    nodes: f.nodes,
    regions: s.regions.length,
    simulatedSeconds: round(seconds, 3),
    requests: f.requests,
    admitted: f.admitted,
    denied: f.denied,
    unserved: f.unserved,
    overAdmissionMaxPct: round(maxPct),
    overAdmissionMeanPct: round(contended === 0 ? 0 : (ratioSum / contended) * 100),
    boundPct: round(boundPct),
    overAdmissionSteadyMaxPct: steadyMax < 0 ? null : round(steadyMax),
    overAdmissionSteadyMeanPct: steadyMax < 0 ? null : round(steadyContended === 0 ? 0 : (steadyRatio / steadyContended) * 100),
    partitionDetectedMaxPct: detectedMax < 0 ? null : round(detectedMax),
    partitionDetectedBoundPct: detectedMax < 0 ? null : round(detectedBound),
    worstKey: worst,
    falseDenialPct: round(f.underLimit === 0 ? 0 : (f.falseDenials / f.underLimit) * 100, 3),
    underLimitFalseDenialPct: underOffered === 0 ? null : round((underFalse / underOffered) * 100, 3),
    underLimitWorstKey: underWorst,
    steadyWorst,
    steadyMaxByKeyPct: Object.fromEntries([...byKey].sort((a, b) => b[1] - a[1]).slice(0, 12)),
    overLimitFalseDenialPct: overOffered === 0 ? null : round((overFalse / overOffered) * 100, 3),
    overLimitAdmittedPct: overAllowed === 0 ? null : round((overAdmitted / overAllowed) * 100, 2),
    convergenceP50Ms: nullableRound(quantileOf(f.samples.times, unconverged, 0.5)),
    convergenceP99Ms: nullableRound(quantileOf(f.samples.times, unconverged, 0.99)),
    unconvergedPct: round(unconvergedPct),
    convergenceAfterHealMs: f.healTimes.map(nullableRound),
    convergenceAfterTrafficMs: nullableRound(f.afterTraffic),
    bytesPerNodePerSec: Math.round(bytes * perNodeSecond),
    payloadBytesPerNodePerSec: Math.round(payload * perNodeSecond),
    messages: {
      published: f.network.published,
      copies: f.network.copiesSent,
      delivered: f.network.delivered,
      lost: f.network.droppedLoss,
      cut: f.network.droppedPartition,
      duplicated: f.network.duplicated,
      reordered: f.network.reordered,
      rejected: f.network.rejected
    },
    countsLost: f.countsLost,
    countsLostAtCrash: f.lostAtCrash,
    lagging: { dropped: f.tally.lag.dropped, blankStart: f.tally.lag.blankStart, partitioned: f.tally.lag.partitioned, clockSkew: f.tally.lag.clockSkew },
    violations
  }
  return { summary, series: f.series, markers: f.markers }
}

function nullableRound (x: number | null): number | null {
  return x === null ? null : round(x)
}
