import { parseDuration } from '../policy/duration.js'
import { ErrorCode, invalid } from '../errors.js'

/** Takes `--name value` / `--name=value` out of `args` (mutating it); undefined when absent. */
export function takeFlag (args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (a === name) {
      const v = args[i + 1]
      if (v === undefined || v.startsWith('--')) throw invalid(ErrorCode.OPTION_INVALID, name, undefined, 'needs a value', `write ${name} VALUE`)
      args.splice(i, 2)
      return v
    }
    if (a.startsWith(name + '=')) {
      args.splice(i, 1)
      return a.slice(name.length + 1)
    }
  }
  return undefined
}

/** Takes a boolean `--name` out of `args`. */
export function takeSwitch (args: string[], name: string): boolean {
  const i = args.indexOf(name)
  if (i < 0) return false
  args.splice(i, 1)
  return true
}

/** A duration flag ("10s", "2m", "500ms", or a number of seconds). */
export function durationFlag (args: string[], name: string): number | undefined {
  const v = takeFlag(args, name)
  if (v === undefined) return undefined
  const ms = /^\d+(\.\d+)?$/.test(v) ? Number(v) * 1000 : parseDuration(v)
  if (ms === undefined || !(ms > 0)) throw invalid(ErrorCode.OPTION_INVALID, name, v, 'is not a duration', 'write e.g. 10s, 2m or 500ms')
  return ms
}

/** An integer flag within [min, max]. */
export function intFlag (args: string[], name: string, min: number, max: number): number | undefined {
  const v = takeFlag(args, name)
  if (v === undefined) return undefined
  const n = Number(v)
  if (!/^\d+$/.test(v) || n < min || n > max) throw invalid(ErrorCode.OPTION_INVALID, name, v, `must be an integer from ${min} to ${max}`, `write e.g. ${name} ${min}`)
  return n
}

/** Resolves when `ms` elapse or the process is asked to stop (SIGINT, SIGTERM); says which. */
export async function runUntilStopped (ms: number | undefined): Promise<'signal' | 'duration'> {
  return await new Promise(resolve => {
    let timer: NodeJS.Timeout | undefined
    const stop = (why: 'signal' | 'duration'): void => {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      if (timer !== undefined) clearTimeout(timer)
      resolve(why)
    }
    const onSignal = (): void => { stop('signal') }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    if (ms !== undefined) timer = setTimeout(() => { stop('duration') }, ms)
  })
}
