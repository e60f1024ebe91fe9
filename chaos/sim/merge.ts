import type { Scenario } from '../scenario.js'
import type { Marker, Series } from '../summary.js'
import { newTally, type AuditTally, type LagCause } from './audit.js'
import type { NetworkStats } from './network.js'
import type { KeyState } from './run.js'
import type { RunFacts } from './summarize.js'
import { KeyWindows, type WindowFigures } from './windows.js'
import { createWorkload } from './workload.js'

/**
 * What one unit of a parallel run measured, as plain data (it crosses threads): the
 * RunFacts of its region with its key windows finished. The coordinator merges the
 * units' partial facts into the RunFacts of the whole fleet (mergeFacts) and summarizes
 * them as the single-threaded runner does.
 */
export type PartialFacts = Omit<RunFacts, 'scenario' | 'metas' | 'workload' | 'keyStates' | 'samples'> & {
  keyStates: Array<Array<Omit<KeyState, 'win'> & { win: WindowFigures }>>
  samples: { times: number[], unconverged: number }
}

export function partialOf (f: RunFacts): PartialFacts {
  const { scenario: _s, metas: _m, workload: _w, keyStates, samples, ...rest } = f
  return {
    ...rest,
    keyStates: keyStates.map(map => [...map.values()].map(ks => {
      ks.win.finish()
      const w = ks.win
      const win: WindowFigures = {
        maxExcess: w.maxExcess,
        maxExcessSlot: w.maxExcessSlot,
        excessRatioSum: w.excessRatioSum,
        contended: w.contended,
        windows: w.windows,
        steadyMaxExcess: w.steadyMaxExcess,
        steadyMaxExcessSlot: w.steadyMaxExcessSlot,
        steadyRatioSum: w.steadyRatioSum,
        steadyContended: w.steadyContended,
        detectedMaxExcess: w.detectedMaxExcess
      }
      return { meta: ks.meta, domain: ks.domain, key: ks.key, offered: ks.offered, admitted: ks.admitted, falseDenied: ks.falseDenied, win }
    })),
    samples: { times: samples.times, unconverged: samples.unconverged }
  }
}

const sumArrays = (parts: ArrayLike<number>[], into: Float64Array): Float64Array => {
  for (const p of parts) for (let i = 0; i < into.length; i++) into[i] += p[i]
  return into
}

function mergeNetwork (parts: NetworkStats[]): NetworkStats {
  const size = parts[0].bytesSent.length
  const sum = (k: Exclude<keyof NetworkStats, 'bytesSent' | 'payloadBytesSent'>): number => parts.reduce((n, p) => n + p[k], 0)
  return {
    published: sum('published'),
    copiesSent: sum('copiesSent'),
    delivered: sum('delivered'),
    duplicated: sum('duplicated'),
    reordered: sum('reordered'),
    droppedLoss: sum('droppedLoss'),
    droppedPartition: sum('droppedPartition'),
    rejected: sum('rejected'),
    duplicatesSuppressed: sum('duplicatesSuppressed'),
    requests: sum('requests'),
    requestFailures: sum('requestFailures'),
    bytesSent: sumArrays(parts.map(p => p.bytesSent), new Float64Array(size)),
    payloadBytesSent: sumArrays(parts.map(p => p.payloadBytesSent), new Float64Array(size))
  }
}

/** Sums tallies; a broken invariant keeps the first unit's example. */
export function mergeTallies (parts: AuditTally[]): AuditTally {
  const t = newTally()
  for (const p of parts) {
    for (const [inv, b] of p.broken) {
      const prior = t.broken.get(inv)
      if (prior === undefined) t.broken.set(inv, { count: b.count, detail: b.detail })
      else prior.count += b.count
    }
    for (const c of Object.keys(t.lag) as LagCause[]) {
      t.lag[c] += p.lag[c]
      t.missingUnits[c] += p.missingUnits[c]
    }
  }
  return t
}

function mergeSeries (parts: Series[]): Series {
  const add = (k: 'admitted' | 'offered' | 'admittedAll' | 'offeredAll'): number[] => parts[0][k].map((_, b) => parts.reduce((n, p) => n + p[k][b], 0))
  return { ...parts[0], admitted: add('admitted'), offered: add('offered'), admittedAll: add('admittedAll'), offeredAll: add('offeredAll') }
}

/**
 * The facts of the whole fleet from its units' (in unit order, so the result does not
 * depend on threads). Units own disjoint nodes and key domains (region or node scope),
 * so counts add up; a heal (or the end of traffic) converged when the last unit did;
 * the fault timeline (phases, markers) is the same in every unit, taken from the first.
 */
export function mergeFacts (s: Scenario, parts: PartialFacts[], durationMs: number): RunFacts {
  const metas = [...s.limits.values()]
  const keyStates = metas.map(() => new Map<string, KeyState>())
  for (const p of parts) {
    p.keyStates.forEach((list, k) => {
      const meta = metas[k]
      for (const ks of list) keyStates[k].set(`${ks.domain}\u0000${ks.key}`, { ...ks, win: KeyWindows.finished(meta.slotsPerWindow, meta.limit.limit, ks.win) })
    })
  }
  const sum = (f: (p: PartialFacts) => number): number => parts.reduce((n, p) => n + f(p), 0)
  const latest = (xs: Array<number | null>): number | null => xs.some(x => x === null) ? null : Math.max(...(xs as number[]))
  const first = parts[0]
  const markers: Marker[] = first.markers
  return {
    scenario: s,
    seed: first.seed,
    durationMs,
    nodes: first.nodes,
    size: first.size,
    metas,
    keyStates,
    workload: createWorkload(s.workload, s.regions, durationMs),
    phases: first.phases,
    regionOf: first.regionOf,
    starts: parts.flatMap(p => p.starts).sort((a, b) => a - b),
    crashes: parts.flatMap(p => p.crashes).sort((a, b) => a - b),
    network: mergeNetwork(parts.map(p => p.network)),
    nodeSeconds: sum(p => p.nodeSeconds),
    requests: sum(p => p.requests),
    admitted: sum(p => p.admitted),
    denied: sum(p => p.denied),
    underLimit: sum(p => p.underLimit),
    falseDenials: sum(p => p.falseDenials),
    unserved: sum(p => p.unserved),
    samples: { times: parts.flatMap(p => p.samples.times), unconverged: sum(p => p.samples.unconverged) },
    healTimes: first.healTimes.map((_, h) => latest(parts.map(p => p.healTimes[h] ?? null))),
    afterTraffic: latest(parts.map(p => p.afterTraffic)),
    tally: mergeTallies(parts.map(p => p.tally)),
    finalTally: mergeTallies(parts.map(p => p.finalTally)),
    countsLost: sum(p => p.countsLost),
    lostAtCrash: sum(p => p.lostAtCrash),
    series: mergeSeries(parts.map(p => p.series)),
    markers
  }
}
