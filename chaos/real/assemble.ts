import type { Workload } from '../sim/workload.js'
import type { LimitMeta, Scenario } from '../scenario.js'
import type { Series, Summary } from '../summary.js'
import { newTally } from '../sim/audit.js'
import { Samples } from '../sim/samples.js'
import { summarize } from '../sim/summarize.js'
import type { FinalAudit, Incarnation } from './audit.js'
import type { Measured } from './measure.js'
import type { NodeStats } from './protocol.js'
import type { RealSamples } from './samples.js'
import type { PartitionFacts, RestartFacts, TimelineFacts } from './timeline.js'

/** What only real mode knows, beside the simulator's summary fields. */
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
  /** Aggregate payload published per node per second (global limits under the region topology). */
  aggregatesPayloadBytesPerNodePerSec: number
  /** Distinct keys with admissions, per limit. */
  keys: number[]
  /** Node processes that ended without being asked to, with the reason. */
  nodeFailures: string[]
  /** The folder with the nodes' logs (kept only when asked). */
  dir: string | undefined
}

export interface RealSummary extends Summary {
  mode: 'real'
  real: RealFacts
}

export interface AssembleInput {
  scenario: Scenario
  seed: number
  initial: number
  size: number
  regionOf: Int32Array
  metas: LimitMeta[]
  workload: Workload
  measured: Measured
  timeline: TimelineFacts
  samples: RealSamples
  audit: FinalAudit
  reps: Incarnation[]
  /** Statistics of each incarnation at t0 (those started before it) and at its last report. */
  baseStats: Map<number, NodeStats>
  lastStats: Map<number, NodeStats>
  /** Machine times: start of traffic, end of the quiet period, end of the run. */
  t0: number
  measureEnd: number
  endAt: number
  requests: number
  admitted: number
  denied: number
  unserved: number
  afterTrafficMs: number | null
  real: Omit<RealFacts, 'stalenessMs' | 'wireBytesPerNodePerSec' | 'countersPayloadBytesPerNodePerSec' | 'aggregatesPayloadBytesPerNodePerSec' | 'partitions' | 'restarts'>
}

/**
 * The summary of a real run, computed by the simulator's own summarize() from what
 * the nodes reported, so both modes print the same fields with the same meaning. The
 * over-admission bound uses the staleness the run actually had: the flush interval
 * plus the slowest converged sample (a loaded machine's event-loop delays included).
 */
export function assembleSummary (x: AssembleInput): { summary: RealSummary, series: Series } {
  const s = x.scenario
  let nodeSeconds = 0
  const bytesSent = new Float64Array(x.size)
  const payloadBytesSent = new Float64Array(x.size)
  let wire = 0
  let wireKnown = true
  let aggregates = 0
  let published = 0
  let delivered = 0
  let rejected = 0
  x.reps.forEach((r, idx) => {
    const from = Math.max(r.readyAt, x.t0)
    const to = Math.min(r.crashedAt ?? x.endAt, x.measureEnd)
    if (to > from) nodeSeconds += (to - from) / 1000
    const last = x.lastStats.get(idx)
    if (last === undefined) return
    // Incarnations up before the traffic count from t0; later ones from their start.
    const base = r.readyAt <= x.t0 ? x.baseStats.get(idx) : undefined
    bytesSent[r.node] += last.socketBytes - (base?.socketBytes ?? 0)
    payloadBytesSent[r.node] += last.countersBytes - (base?.countersBytes ?? 0)
    aggregates += last.aggregatesBytes - (base?.aggregatesBytes ?? 0)
    if (last.wireBytes === undefined) wireKnown = false
    else wire += last.wireBytes - (base?.wireBytes ?? 0)
    published += last.countersPublished - (base?.countersPublished ?? 0)
    delivered += last.countersReceived - (base?.countersReceived ?? 0)
    rejected += last.countersRejected - (base?.countersRejected ?? 0)
  })
  const latencyMs = x.samples.times.length === 0 ? 0 : Math.max(...x.samples.times)
  const boundScenario: Scenario = {
    ...s,
    network: { ...s.network, intraRegion: { dist: 'fixed', ms: latencyMs }, interRegion: { dist: 'fixed', ms: latencyMs }, loss: 0, duplicate: 0, reorder: 0 },
    gossip: { ...s.gossip, delivery: 'direct' }
  }
  const simSamples = new Samples(0, 0, 0)
  simSamples.times.push(...x.samples.times)
  simSamples.unconverged = x.samples.unconverged
  const { summary, series } = summarize({
    scenario: boundScenario,
    seed: x.seed,
    durationMs: s.durationMs,
    nodes: x.initial,
    size: x.size,
    metas: x.metas,
    keyStates: x.measured.keyStates,
    workload: x.workload,
    phases: x.timeline.phases,
    regionOf: x.regionOf,
    starts: x.timeline.starts,
    crashes: x.timeline.crashes,
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
    requests: x.requests,
    admitted: x.admitted,
    denied: x.denied,
    underLimit: x.measured.underLimit,
    falseDenials: x.measured.falseDenials,
    unserved: x.unserved,
    samples: simSamples,
    healTimes: x.timeline.healTimes,
    afterTraffic: x.afterTrafficMs,
    tally: newTally(),
    finalTally: x.audit.tally,
    countsLost: x.audit.countsLost,
    lostAtCrash: x.audit.countsLostAtCrash,
    series: x.measured.series,
    markers: x.timeline.markers
  })
  // Real nodes run anti-entropy: no violation here is waiting for it.
  for (const v of summary.violations) delete v.needs
  summary.lagging = { dropped: 0, blankStart: 0, partitioned: x.audit.tally.lag.partitioned, clockSkew: 0 }
  const perNodeSecond = nodeSeconds > 0 ? 1 / nodeSeconds : 0
  const real: RealFacts = {
    ...x.real,
    partitions: x.timeline.partitions,
    restarts: x.timeline.restarts,
    stalenessMs: s.gossip.flushIntervalMs + latencyMs,
    wireBytesPerNodePerSec: wireKnown && x.real.mode === 'netns' ? Math.round(wire * perNodeSecond) : null,
    countersPayloadBytesPerNodePerSec: summary.payloadBytesPerNodePerSec,
    aggregatesPayloadBytesPerNodePerSec: Math.round(aggregates * perNodeSecond)
  }
  return { summary: { ...summary, mode: 'real', real }, series }
}
