import { ErrorCode, invalid } from '../src/errors.js'
import { parseDuration } from '../src/policy/duration.js'
import type { Distribution } from './sim/random.js'

/** Field readers of scenario validation: each refuses bad input with the field's path and a fix. */

export type Raw = Record<string, unknown>

export function fail (field: string, value: unknown, problem: string, fix: string): never {
  throw invalid(ErrorCode.OPTION_INVALID, `scenario.${field}`, value, problem, fix)
}

export function isRecord (v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function record (v: unknown, path: string, fields: string[]): Raw {
  if (v === undefined) return {}
  if (!isRecord(v)) fail(path, v, 'is not an object', `write ${path} as a map of ${fields.join(', ')}`)
  for (const k of Object.keys(v)) {
    if (!fields.includes(k)) fail(`${path}.${k}`, v[k], 'is not a known field', `use one of ${fields.join(', ')}`)
  }
  return v
}

export function num (v: unknown, path: string, min: number, max: number, dflt?: number): number {
  if (v === undefined && dflt !== undefined) return dflt
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) fail(path, v, `must be a number from ${min} to ${max}`, `set ${path} to a number in range`)
  return v
}

export function int (v: unknown, path: string, min: number, max: number, dflt?: number): number {
  const n = num(v, path, min, max, dflt)
  if (!Number.isInteger(n)) fail(path, v, 'must be a whole number', `set ${path} to an integer`)
  return n
}

/** A duration: a number of ms or a string such as "500ms", "10s", "1m". */
export function duration (v: unknown, path: string, min: number, dflt?: number): number {
  if (v === undefined && dflt !== undefined) return dflt
  const ms = typeof v === 'string' ? parseDuration(v) : v
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < min) fail(path, v, `must be a duration of at least ${min} ms`, `write ${path} as milliseconds or a string such as "500ms", "10s", "1m"`)
  return ms
}

export function oneOf<T extends string> (v: unknown, path: string, options: readonly T[], dflt: T): T {
  if (v === undefined) return dflt
  if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) fail(path, v, 'is not a known value', `use one of ${options.join(', ')}`)
  return v as T
}

export function str (v: unknown, path: string, pattern: RegExp, dflt?: string): string {
  if (v === undefined && dflt !== undefined) return dflt
  if (typeof v !== 'string' || !pattern.test(v)) fail(path, v, `must match ${String(pattern)}`, `set ${path} to a short name of letters, digits, "_", "." or "-"`)
  return v
}

export const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

export function distribution (v: unknown, path: string): Distribution {
  if (typeof v === 'number' || typeof v === 'string') return { dist: 'fixed', ms: duration(v, path, 0) }
  const r = record(v, path, ['dist', 'ms', 'minMs', 'maxMs', 'medianMs', 'p99Ms'])
  const dist = oneOf(r.dist, `${path}.dist`, ['fixed', 'uniform', 'lognormal'] as const, 'fixed')
  switch (dist) {
    case 'fixed': return { dist, ms: num(r.ms, `${path}.ms`, 0, 3_600_000) }
    case 'uniform': {
      const minMs = num(r.minMs, `${path}.minMs`, -3_600_000, 3_600_000)
      const maxMs = num(r.maxMs, `${path}.maxMs`, minMs, 3_600_000)
      return { dist, minMs, maxMs }
    }
    case 'lognormal': {
      const medianMs = num(r.medianMs, `${path}.medianMs`, 0.001, 3_600_000)
      const p99Ms = num(r.p99Ms, `${path}.p99Ms`, medianMs, 3_600_000)
      if (r.minMs === undefined) return { dist, medianMs, p99Ms }
      return { dist, medianMs, p99Ms, minMs: num(r.minMs, `${path}.minMs`, 0, medianMs) }
    }
  }
}

export function nonNegative (d: Distribution, path: string): Distribution {
  if (d.dist === 'uniform' && d.minMs < 0) fail(`${path}.minMs`, d.minMs, 'a latency cannot be negative', 'use minMs >= 0')
  return d
}

