/** The p-quantile of sorted values (nearest rank). */
export function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]
}

/** Rounded to 3 decimals, for the JSON line. */
export const round3 = (x: number): number => Math.round(x * 1000) / 1000

/** Response-time percentiles of a run, in ms to 3 decimals. */
export interface Latencies {
  p50Ms: number
  p99Ms: number
  p999Ms: number
  maxMs: number
}

/** p50, p99, p99.9 and max of sorted response times (ms). */
export function latencies (sorted: Float64Array): Latencies {
  return {
    p50Ms: round3(percentile(sorted, 0.5)),
    p99Ms: round3(percentile(sorted, 0.99)),
    p999Ms: round3(percentile(sorted, 0.999)),
    maxMs: round3(percentile(sorted, 1))
  }
}
