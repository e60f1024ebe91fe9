/**
 * Polls `cond` every 20 ms for at most `ms` (real sockets: a bounded wait that fails
 * with what it waited for, never on timing luck).
 */
export async function until (cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/** Advances a virtual clock by `ms` in steps of `step`, letting I/O callbacks run after each. */
export async function advance (clock: { advance: (ms: number) => void }, ms: number, step = 5): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(step)
    await new Promise(resolve => setImmediate(resolve))
  }
}
