import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { scenarioSource, type Scenario } from '../scenario.js'
import { routeWindow, type Envelope } from './exchange.js'
import { Host, type WindowOut } from './host.js'
import { mergeFacts, type PartialFacts } from './merge.js'
import { floorOf } from './random.js'
import { fleetOf, runScenario, type RunOptions, type RunResult } from './run.js'
import { summarize } from './summarize.js'
import type { ToWorker, WorkerInit } from './worker.js'

export interface ParallelOptions extends Pick<RunOptions, 'seed' | 'durationMs' | 'onProgress'> {
  /**
   * Threads running units: this one and threads - 1 workers (1 runs every unit here,
   * through the same windows).
   * @default min(regions, available cores)
   */
  threads?: number
}

export interface ParallelResult extends RunResult {
  /** Threads the run used (1 when it fell back). */
  threads: number
  /** Why the run fell back to the single-threaded runner (undefined when it ran in parallel). */
  fallback?: string
}

/** Why `s` cannot run in parallel (one unit per region), or undefined when it can. */
export function parallelReason (s: Scenario): string | undefined {
  if (s.regions.length < 2) return 'one region: nothing to run side by side'
  if (s.gossip.topology !== 'region') return 'gossip.topology is mesh: counters cross regions'
  if (s.gossip.delivery !== 'direct') return 'gossip.delivery is relay: copies hop across regions through relays'
  if ([...s.limits.values()].some(m => m.scope === 'global')) return 'a global-scope limit: its truth and region aggregates need the whole fleet at once'
  if (!(floorOf(s.network.interRegion) > 0)) return 'network.interRegion has no floor (the lookahead): set network.interRegion.minMs > 0'
  if (scenarioSource(s) === undefined) return 'the scenario was not made by validateScenario (workers need its input)'
  return undefined
}

/** Something that runs a window for some units: a Host here, or one in a worker thread. */
interface Runner {
  units: number[]
  step(target: number, inboxes: Envelope[][], notes: number[][]): Promise<WindowOut>
  finish(): Promise<PartialFacts[]>
  close(): Promise<void>
}

function workerRunner (init: WorkerInit): Runner {
  const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: init })
  let waiting: { resolve: (v: unknown) => void, reject: (e: unknown) => void } | undefined
  const fail = (err: unknown): void => {
    const p = waiting
    waiting = undefined
    p?.reject(err)
  }
  w.on('message', (m: { t: 'out', out: WindowOut } | { t: 'facts', facts: PartialFacts[] }) => {
    const p = waiting
    waiting = undefined
    p?.resolve(m.t === 'out' ? m.out : m.facts)
  })
  w.on('error', fail)
  w.on('exit', code => { fail(new Error(`chaos worker for units ${init.units.join(',')} exited (code ${code})`)) })
  const call = async <T>(m: ToWorker): Promise<T> => await new Promise<T>((resolve, reject) => {
    waiting = { resolve: resolve as (v: unknown) => void, reject }
    w.postMessage(m)
  })
  return {
    units: init.units,
    step: async (target, inboxes, notes) => await call<WindowOut>({ t: 'step', target, inboxes, notes }),
    finish: async () => await call<PartialFacts[]>({ t: 'finish' }),
    close: async () => { w.removeAllListeners('exit'); await w.terminate() }
  }
}

function localRunner (s: Scenario, opts: ParallelOptions, units: number[]): Runner {
  const host = new Host(s, opts, units)
  return {
    units,
    step: async (target, inboxes, notes) => await host.step(target, inboxes, notes),
    finish: async () => host.finish(),
    close: async () => {}
  }
}

/**
 * Runs `s` with one unit per region on several threads (conservative parallel
 * discrete-event simulation, see docs/chaos.md): units advance in windows of the
 * lookahead L (the inter-region latency floor) and exchange what crossed regions in
 * between. The result does not depend on `threads`. A scenario that cannot run this
 * way (parallelReason) runs in the single-threaded runner, with the reason in `fallback`.
 */
export async function runParallel (s: Scenario, opts: ParallelOptions = {}): Promise<ParallelResult> {
  const reason = parallelReason(s)
  if (reason !== undefined) return { ...await runScenario(s, opts), threads: 1, fallback: reason }
  const R = s.regions.length
  const threads = Math.max(1, Math.min(R, opts.threads ?? availableParallelism()))
  const src = scenarioSource(s) as { input: unknown, name: string }
  const assigned = Array.from({ length: threads }, (_, t) => Array.from({ length: R }, (_, r) => r).filter(r => r % threads === t))
  // This thread runs the first share of units itself (it would only wait otherwise), last
  // in each window so the workers start theirs first.
  const runners = [
    ...assigned.slice(1).map(units => workerRunner({ input: src.input, name: src.name, seed: opts.seed, durationMs: opts.durationMs, units })),
    localRunner(s, opts, assigned[0])
  ]
  try {
    const L = floorOf(s.network.interRegion)
    const durationMs = opts.durationMs ?? s.durationMs
    const trafficStart = s.gossip.flushIntervalMs
    const endAt = trafficStart + durationMs + s.quietMs
    // Unit of every node index: its region.
    const unitOf = Array.from(fleetOf(s).regionOf)
    let inboxes: Envelope[][] = Array.from({ length: R }, () => [])
    let notes: number[][] = []
    let done = 0
    let reported = 0
    while (done < endAt) {
      const target = Math.min(endAt, done + L)
      const outs = await Promise.all(runners.map(async run => await run.step(target, run.units.map(u => inboxes[u]), notes)))
      // Back in unit order, whatever thread ran which unit.
      const outboxes: Envelope[][] = new Array(R)
      const unitNotes: number[][] = new Array(R)
      runners.forEach((run, k) => run.units.forEach((u, j) => { outboxes[u] = outs[k].outboxes[j]; unitNotes[u] = outs[k].notes[j] }))
      inboxes = routeWindow(outboxes, unitOf, R)
      notes = unitNotes
      done = target
      if (done - reported >= 100 || done === endAt) {
        reported = done
        opts.onProgress?.(Math.max(0, done - trafficStart), endAt - trafficStart)
      }
    }
    const parts = (await Promise.all(runners.map(async run => await run.finish())))
    const byUnit: PartialFacts[] = new Array(R)
    runners.forEach((run, k) => run.units.forEach((u, j) => { byUnit[u] = parts[k][j] }))
    return { ...summarize(mergeFacts(s, byUnit, durationMs)), threads }
  } finally {
    await Promise.all(runners.map(async run => { await run.close() }))
  }
}
