import { expect } from 'vitest'
import { MeshlimitError, type ErrorCode } from '../../src/errors.js'

/** Runs `fn`, which must throw; returns what it threw. */
export function thrown (fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  throw new Error('expected the call to throw, but it returned')
}

/**
 * Asserts `fn` throws a MeshlimitError with `code` naming `field`, whose message says how
 * to fix it; when `value` is passed (even undefined) the error's value must equal it.
 */
export function expectError (fn: () => unknown, code: ErrorCode, field: string, ...value: [unknown?]): MeshlimitError {
  const err = thrown(fn)
  expect(err).toBeInstanceOf(MeshlimitError)
  const e = err as MeshlimitError
  expect({ code: e.code, field: e.field }).toEqual({ code, field })
  if (value.length > 0) expect(e.value).toEqual(value[0])
  expect(e.message).toContain('Fix:')
  return e
}
