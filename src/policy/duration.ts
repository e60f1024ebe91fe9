const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** Parses "250ms", "10s", "1.5m", "1h", "1d" to milliseconds; undefined when malformed. */
export function parseDuration (text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(text)
  if (m === null) return undefined
  const ms = Number(m[1]) * UNITS[m[2]]
  return Number.isFinite(ms) ? Math.round(ms) : undefined
}
