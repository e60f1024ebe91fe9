import type { Transport } from '../../gossip/transport.js'
import type { Marker, Series, Summary } from '../summary.js'
import type { RunFacts } from './summarize.js'
import type { KeyWindows } from './windows.js'

/** What a run takes and gives (chaos/sim/run.ts), and its per-key report. */

export interface RunOptions {
  /** @default the scenario's seed */
  seed?: number
  /** Overrides the scenario's traffic duration (tests run shortened scenarios). */
  durationMs?: number
  /** Called every 100 simulated ms with the simulated time done and the total. */
  onProgress?: (doneMs: number, totalMs: number) => void
  /**
   * Wraps each node's transport before its limiter gets it: the tests' seam for faults
   * the network model does not know about (a silently lost message, a forged count), to
   * show that the audits catch them.
   */
  wrapTransport?: (node: number, transport: Transport) => Transport
  /** Also return per-key figures (RunResult.keys). */
  keyReport?: boolean
}

/** One key's figures in one enforcement domain (RunOptions.keyReport). */
export interface KeyReport {
  limit: string
  domain: string
  key: string
  offeredPerSec: number
  admittedPerSec: number
  /** Largest excess over any window, and over steady-state windows, in % of the limit. */
  maxExcessPct: number
  steadyMaxExcessPct: number
  /** Mean excess over contended steady-state windows, in % of the limit. */
  steadyMeanExcessPct: number
  /** Denied while the truth had room, in % of this key's requests. */
  falseDenialPct: number
}

export interface RunResult {
  summary: Summary
  series: Series
  markers: Marker[]
  keys?: KeyReport[]
}

/** Per (limit, domain, key): windows on true time. */
export interface KeyState {
  meta: number
  domain: string
  key: string
  win: KeyWindows
  /** Requests offered on this key, and those denied while the truth had room. */
  offered: number
  /** Requests admitted on this key (optional: chaos/real builds key states without it). */
  admitted?: number
  falseDenied: number
}

/** Per-key figures of a finished run (RunOptions.keyReport). */
export function keyReports (f: RunFacts): KeyReport[] {
  const seconds = f.durationMs / 1000
  const keys: KeyReport[] = []
  f.metas.forEach((meta, k) => {
    for (const ks of f.keyStates[k].values()) {
      const L = meta.limit.limit
      const w = ks.win
      keys.push({
        limit: meta.name,
        domain: ks.domain,
        key: ks.key,
        offeredPerSec: ks.offered / seconds,
        admittedPerSec: (ks.admitted ?? 0) / seconds,
        maxExcessPct: w.maxExcess / L * 100,
        steadyMaxExcessPct: w.steadyMaxExcess / L * 100,
        steadyMeanExcessPct: w.steadyContended === 0 ? 0 : w.steadyRatioSum / w.steadyContended * 100,
        falseDenialPct: ks.offered === 0 ? 0 : ks.falseDenied / ks.offered * 100
      })
    }
  })
  return keys.sort((a, b) => b.offeredPerSec - a.offeredPerSec)
}
