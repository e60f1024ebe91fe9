/**
 * What a chaos run reports. Harness-independent: the simulator fills it today and the
 * real multi-process harness (chaos/real/, later) fills the same fields, so reports,
 * tests and CI read one shape. `--json` prints it as the last stdout line.
 */

/** Invariants a run checks (docs/chaos.md defines each). */
export type Invariant =
  | 'own-count-exact'
  | 'view-not-above-truth'
  | 'no-count-lost'
  | 'over-admission-within-bound'
  | 'convergence'
  | 'convergence-after-heal'
  | 'partition-within-bound'

export interface Violation {
  invariant: Invariant
  /** Instances found (cells, keys, samples or heals, per invariant). */
  count: number
  /**
   * Set when every instance is explained by a feature the foundation lacks, so the
   * invariant is expected to hold once it lands (never set for an unexplained failure).
   */
  needs?: 'anti-entropy'
  /** The first instance, in words. */
  detail: string
}

/** One timeline event, for reports. */
export interface Marker {
  atMs: number
  kind: 'partition' | 'heal' | 'crash' | 'restart' | 'join' | 'leave'
  label: string
}

/** The report chart's data: one key's traffic and the fleet's, per bucket. */
export interface Series {
  bucketMs: number
  key: string
  domain: string
  limitName: string
  limit: number
  windowMs: number
  admitted: number[]
  offered: number[]
  admittedAll: number[]
  offeredAll: number[]
}

/** An empty chart series for one limit's key and domain, in buckets covering `spanMs`. */
export function emptySeries (limit: { name: string, limit: { limit: number, windowMs: number } }, key: string, domain: string, bucketMs: number, spanMs: number): Series {
  const buckets = Math.max(1, Math.ceil(spanMs / bucketMs))
  const zeros = (): number[] => new Array<number>(buckets).fill(0)
  return { bucketMs, key, domain, limitName: limit.name, limit: limit.limit.limit, windowMs: limit.limit.windowMs, admitted: zeros(), offered: zeros(), admittedAll: zeros(), offeredAll: zeros() }
}

export interface Summary {
  scenario: string
  seed: number
  /** Nodes at the start (joins come on top). */
  nodes: number
  regions: number
  /** Traffic plus the final quiet period. */
  simulatedSeconds: number
  requests: number
  admitted: number
  denied: number
  /** Requests that found no live node in their region (not sent to any limiter). */
  unserved: number
  /** Largest excess over the limit in any window of any key, in % of the limit. */
  overAdmissionMaxPct: number
  /** Mean excess over contended windows (offered >= limit), in % of the limit. */
  overAdmissionMeanPct: number
  /** The bound of docs/accuracy.md for the key with the largest bound, in % of the limit. */
  boundPct: number
  /**
   * Largest excess over steady-state windows (after the warm-up, away from faults and
   * their aftermath), in % of the limit; null when no window qualifies.
   */
  overAdmissionSteadyMaxPct: number | null
  /** Mean excess over contended steady-state windows, in % of the limit. */
  overAdmissionSteadyMeanPct: number | null
  /**
   * Largest excess over windows lying within a partition that membership detected (the
   * policies' partition modes in force), and the largest bound of those modes, in % of
   * the limit; null without such windows.
   */
  partitionDetectedMaxPct: number | null
  partitionDetectedBoundPct: number | null
  /** The key with the largest measured excess, beside its own bound and the bound's terms. */
  worstKey: { limit: string, domain: string, key: string, overAdmissionPct: number, boundPct: number, terms: Record<string, number> } | null
  /**
   * The keys whose worst steady-state window went furthest over the limit (up to 5,
   * largest first; simulator only): the window's end in seconds of traffic, and the
   * key's mean offered rate in % of its limit.
   */
  steadyWorst?: Array<{ limit: string, domain: string, key: string, overAdmissionPct: number, windowEndS: number, offeredPct: number }>
  /** Per key (over its domains) the largest steady-state excess, in % of the limit: keys with any, up to 12, largest first (simulator only). */
  steadyMaxByKeyPct?: Record<string, number>
  /**
   * Clients over their limit (mean offered rate above it; simulator only): false denials in %
   * of their requests, and what they were admitted in % of the limit.
   */
  overLimitFalseDenialPct?: number | null
  /** The under-limit client (key and domain) that lost the largest share of its requests to false denials (simulator only). */
  underLimitWorstKey?: { domain: string, key: string, offeredPct: number, falseDenialPct: number } | null
  overLimitAdmittedPct?: number | null
  /** Denied requests that the fleet-wide truth says fit, in % of all requests that fit. */
  falseDenialPct: number
  /**
   * False denials of under-limit clients: keys whose mean offered rate over the run is
   * at most their limit, in % of those keys' requests (undefined: no such key).
   */
  underLimitFalseDenialPct: number | null
  /** Time for a sampled admission to reach every peer of its gossip group (p50, p99), ms; null when more than 1% never did. */
  convergenceP50Ms: number | null
  convergenceP99Ms: number | null
  /** Sampled admissions that never reached some peer before leaving the window, %. */
  unconvergedPct: number
  /** Per heal: ms until every audited view held every count published before it; null when it never did. */
  convergenceAfterHealMs: Array<number | null>
  /** After the last request: ms until every audited view held every published count (10 ms steps); null when not within the quiet period. */
  convergenceAfterTrafficMs: number | null
  /** Upload bytes per live node per second, payload plus per-message overhead. */
  bytesPerNodePerSec: number
  payloadBytesPerNodePerSec: number
  messages: {
    published: number
    copies: number
    delivered: number
    lost: number
    cut: number
    duplicated: number
    reordered: number
    rejected: number
  }
  /** After the quiet period: admitted units that some live node's view lacks (crash losses excluded). */
  countsLost: number
  /** Units admitted by crashed incarnations and never published (they die with the process). */
  countsLostAtCrash: number
  /** Lagging cells seen by the running audits, by cause (not violations: explained staleness). */
  lagging: { dropped: number, blankStart: number, partitioned: number, clockSkew: number }
  violations: Violation[]
}
