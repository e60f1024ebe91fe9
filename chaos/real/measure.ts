import { createRuntime, type LimitRuntime } from '../../src/algorithms.js'
import type { LimitMeta, Scenario } from '../scenario.js'
import { emptySeries, type Series } from '../summary.js'
import type { KeyState } from '../sim/run.js'
import { KeyWindows } from '../sim/windows.js'

/**
 * Every request a node answered, in arrival order of the answers (not of time): what
 * the parent learns from the nodes. Measured after the run, sorted by the time of the
 * check, exactly as the simulator measures during its run.
 */
export class RequestLog {
  readonly t: number[] = []
  readonly limit: number[] = []
  readonly key: string[] = []
  readonly domain: string[] = []
  readonly allowed: boolean[] = []

  add (t: number, limit: number, key: string, domain: string, allowed: boolean): void {
    this.t.push(t)
    this.limit.push(limit)
    this.key.push(key)
    this.domain.push(domain)
    this.allowed.push(allowed)
  }

  get length (): number {
    return this.t.length
  }
}

export interface Measured {
  keyStates: Array<Map<string, KeyState>>
  /** Requests the fleet-wide oracle admits, and those of them a node denied. */
  underLimit: number
  falseDenials: number
  series: Series
}

/**
 * Over-admission per key and window on machine time, false denials against an oracle
 * running the same algorithm on the fleet-wide truth, and the report chart's series.
 */
export function measure (log: RequestLog, s: Scenario, metas: LimitMeta[], t0: number, chart: { key: string, domain: string }): Measured {
  const order = Array.from({ length: log.length }, (_, i) => i).sort((a, b) => log.t[a] - log.t[b] || a - b)
  const oracles: LimitRuntime[] = metas.map(m => createRuntime(m.name, m.limit, { maxKeys: 100_000_000, hashSeed: 0, maxClockSkewMs: 0, replicated: false, samplerSeed: 1 }))
  const keyStates = metas.map(() => new Map<string, KeyState>())
  const bucketMs = s.measure.chartBucketMs
  const series = emptySeries(metas[0], chart.key, chart.domain, bucketMs, s.durationMs + s.quietMs)
  let underLimit = 0
  let falseDenials = 0
  for (const i of order) {
    const k = log.limit[i]
    const meta = metas[k]
    const now = log.t[i]
    const key = log.key[i]
    const domain = log.domain[i]
    const dk = `${domain}\u0000${key}`
    let ks = keyStates[k].get(dk)
    if (ks === undefined) {
      ks = { meta: k, domain, key, win: new KeyWindows(meta.slotsPerWindow, meta.limit.limit), offered: 0, falseDenied: 0 }
      keyStates[k].set(dk, ks)
    }
    const rt = oracles[k]
    const oi = rt.locate(dk, now)
    const fits = rt.usage(oi, now) + 1 <= meta.limit.limit + 1e-9
    if (fits) underLimit++
    ks.offered++
    const allowed = log.allowed[i]
    ks.win.add(Math.floor(now / meta.slotMs), 1, allowed ? 1 : 0)
    const b = Math.min(series.admitted.length - 1, Math.max(0, Math.floor((now - t0) / bucketMs)))
    series.offeredAll[b]++
    const charted = k === 0 && key === chart.key && domain === chart.domain
    if (charted) series.offered[b]++
    if (!allowed) {
      if (fits) {
        falseDenials++
        ks.falseDenied++
      }
      continue
    }
    series.admittedAll[b]++
    if (charted) series.admitted[b]++
    rt.commit(oi, now, 1)
  }
  return { keyStates, underLimit, falseDenials, series }
}
