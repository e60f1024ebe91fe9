import { hashString } from '../../crdt/hash.js'
import { seededRandom, type Random } from '../../membership/random.js'

/**
 * Randomness of a run: independent seeded streams per concern, so changing one part of
 * a scenario (say the network) does not reshuffle the others (the workload keeps the
 * same requests), which makes runs that differ in one knob comparable.
 */
export function stream (seed: number, name: string): Random {
  return seededRandom(hashString(name, seed >>> 0) % 0x100000000)
}

/** A latency (or delay) distribution, in ms. */
export type Distribution =
  | { dist: 'fixed', ms: number }
  | { dist: 'uniform', minMs: number, maxMs: number }
  /**
   * Log-normal with the given median and 99th percentile: a long right tail, like real
   * RTTs; truncated at its 99.99th percentile, so every distribution has a maximum that
   * bounds and audits can rely on. `minMs` (optional) is a floor: draws below it are
   * raised to it (the parallel runner's lookahead, see docs/chaos.md).
   */
  | { dist: 'lognormal', medianMs: number, p99Ms: number, minMs?: number }

/** Standard normal quantile of 0.99. */
const Z99 = 2.3263478740408408

/** Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9). */
export function normalQuantile (p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile: p must be in (0, 1), got ${p}`)
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239]
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572]
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783]
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416]
  const lo = 0.02425
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p))
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
  }
  if (p > 1 - lo) return -normalQuantile(1 - p)
  const q = p - 0.5
  const r = q * q
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
}

/** A sampler of `d` drawing from `rnd`. */
export function sampler (d: Distribution, rnd: Random): () => number {
  switch (d.dist) {
    case 'fixed': {
      const ms = d.ms
      return () => ms
    }
    case 'uniform': {
      const { minMs, maxMs } = d
      return () => minMs + (maxMs - minMs) * rnd()
    }
    case 'lognormal': {
      const mu = Math.log(d.medianMs)
      const sigma = (Math.log(d.p99Ms) - mu) / Z99
      const cap = quantile(d, TRUNCATE_AT)
      const floor = d.minMs ?? 0
      if (floor > 0) {
        return () => {
          const u = 1 - rnd()
          const v = rnd()
          const x = Math.exp(mu + sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v))
          return x < floor ? floor : x < cap ? x : cap
        }
      }
      return () => {
        // Box-Muller; 1 - u keeps the log argument in (0, 1].
        const u = 1 - rnd()
        const v = rnd()
        const x = Math.exp(mu + sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v))
        return x < cap ? x : cap
      }
    }
  }
}

/** Quantile at which log-normal draws are truncated. */
export const TRUNCATE_AT = 0.9999

/** The `p` quantile of `d`; p = 1 gives its maximum (log-normals are truncated). */
export function quantile (d: Distribution, p: number): number {
  switch (d.dist) {
    case 'fixed': return d.ms
    case 'uniform': return d.minMs + (d.maxMs - d.minMs) * p
    case 'lognormal': {
      if (p > TRUNCATE_AT) p = TRUNCATE_AT
      const mu = Math.log(d.medianMs)
      const sigma = (Math.log(d.p99Ms) - mu) / Z99
      return Math.max(d.minMs ?? 0, Math.exp(mu + sigma * normalQuantile(p)))
    }
  }
}

/** Exponential inter-arrival time of a Poisson process of `ratePerMs`. */
export function exponential (rnd: Random, ratePerMs: number): number {
  return -Math.log(1 - rnd()) / ratePerMs
}

/** The smallest value `d` can draw (its floor): the lookahead of the parallel runner. */
export function floorOf (d: Distribution): number {
  switch (d.dist) {
    case 'fixed': return d.ms
    case 'uniform': return d.minMs
    case 'lognormal': return d.minMs ?? 0
  }
}
