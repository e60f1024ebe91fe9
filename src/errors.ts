/** Stable error codes; tests and callers match on these, never on messages. */
export const ErrorCode = {
  /** A policy document or field is invalid. */
  POLICY_INVALID: 'MESHLIMIT_POLICY_INVALID',
  /** A policy document is not parseable JSON or YAML. */
  POLICY_PARSE: 'MESHLIMIT_POLICY_PARSE',
  /** `cost` passed to check() is not an integer >= 1. */
  COST_INVALID: 'MESHLIMIT_COST_INVALID',
  /** The descriptor passed to check() is not an object of string fields. */
  DESCRIPTOR_INVALID: 'MESHLIMIT_DESCRIPTOR_INVALID',
  /** An option passed to a factory is invalid. */
  OPTION_INVALID: 'MESHLIMIT_OPTION_INVALID',
  /** The operation needs a state the object is not in (e.g. used after close). */
  STATE_INVALID: 'MESHLIMIT_STATE_INVALID',
  /** A policy bundle is not well-formed (not UTF-8 JSON, wrong envelope, content not canonicalisable, no version). */
  BUNDLE_MALFORMED: 'MESHLIMIT_BUNDLE_MALFORMED',
  /** A policy bundle is larger than the configured maximum. */
  BUNDLE_TOO_LARGE: 'MESHLIMIT_BUNDLE_TOO_LARGE',
  /** A policy bundle is signed by a key this node does not trust. */
  BUNDLE_UNTRUSTED_KEY: 'MESHLIMIT_BUNDLE_UNTRUSTED_KEY',
  /** A policy bundle's signature does not verify: its content was changed or forged. */
  BUNDLE_BAD_SIGNATURE: 'MESHLIMIT_BUNDLE_BAD_SIGNATURE',
  /** A policy bundle is not newer than the one running (by version, then hash). */
  BUNDLE_STALE: 'MESHLIMIT_BUNDLE_STALE',
  /** An operator key (private or public) cannot be read. */
  KEY_INVALID: 'MESHLIMIT_KEY_INVALID',
  /** A policy file or URL cannot be read or reached. */
  SOURCE_UNREADABLE: 'MESHLIMIT_SOURCE_UNREADABLE'
} as const

export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode]

/**
 * The one error class meshlimit throws. `code` is stable; `field` names the offending
 * input (a path such as `policies[2].limits[0].windowMs`), `value` is what was given,
 * and the message ends with how to fix it.
 */
export class MeshlimitError extends Error {
  readonly code: ErrorCode
  readonly field: string | undefined
  readonly value: unknown

  constructor (code: ErrorCode, message: string, field?: string, value?: unknown) {
    super(message)
    this.name = 'MeshlimitError'
    this.code = code
    this.field = field
    this.value = value
  }
}

/** Short, bounded rendering of a bad value for error messages. */
export function show (value: unknown): string {
  let s: string
  if (typeof value === 'string') s = JSON.stringify(value)
  else if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) s = String(value)
  else {
    try { s = JSON.stringify(value) ?? String(value) } catch { s = Object.prototype.toString.call(value) }
  }
  return s.length > 80 ? s.slice(0, 77) + '...' : s
}

/** Builds an invalid-input error: `<field> is <value>: <problem>. Fix: <fix>`. */
export function invalid (code: ErrorCode, field: string, value: unknown, problem: string, fix: string): MeshlimitError {
  return new MeshlimitError(code, `${field} is ${show(value)}: ${problem}. Fix: ${fix}`, field, value)
}
