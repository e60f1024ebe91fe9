/**
 * The time seam. Everything in meshlimit takes time from a `Clock`, never from
 * `Date.now()` or `performance.now()` directly, so the simulator can substitute
 * virtual time and replay a run from its seed.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch (may be fractional). */
  now(): number
  /** Runs `fn` after `ms` milliseconds; returns a function that cancels it. */
  setTimer(ms: number, fn: () => void): () => void
  /**
   * Reads the time source itself, past any cache (a cached clock can lag by a whole
   * event-loop stall). For rare checks that must not wrong a peer, such as rejecting
   * a message as stamped in the future. Absent: now() is already fresh.
   */
  fresh?(): number
}

/**
 * How far `stampMs` lies ahead of now beyond `toleranceMs`, in ms; 0 when it does not.
 * A stamp ahead of the (possibly cached) time is checked again against the source
 * (`fresh`) before it is called future-dated: a cached clock lags by a stalled event
 * loop, and a rejection wrongs the peer that sent it. The common path is one read.
 */
export function aheadBeyond (clock: Clock, stampMs: number, toleranceMs: number): number {
  if (stampMs <= clock.now() + toleranceMs) return 0
  const ahead = stampMs - (clock.fresh?.() ?? clock.now())
  return ahead > toleranceMs ? ahead : 0
}

/** Wall-clock time read on every call (~35 ns per read on the reference machine). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer (ms, fn) {
    const t = setTimeout(fn, ms)
    t.unref?.()
    return () => { clearTimeout(t) }
  }
}

export interface CoarseClock extends Clock {
  /** Reads the time source itself (and later reads of the turn see it). */
  fresh(): number
  /** Drops the pending refresh, if any (the clock keeps working: reads are just fresh again). */
  stop(): void
}

/**
 * Wall-clock time read at most once per event-loop turn: the first `now()` of a turn
 * reads `Date.now()` and arms a `setImmediate` that marks the reading stale; every
 * later read in that turn is a field load. Nothing runs while nobody reads the time,
 * so an idle node costs nothing (the 1 ms refresh timer it replaces cost an idle mesh
 * node about 10 ms of CPU per second: docs/architecture.md). Inside one long synchronous
 * loop the time stands still, which errs towards counting in an older slot (never
 * towards admitting more).
 */
export function coarseClock (): CoarseClock {
  let now = 0
  let pending: ReturnType<typeof setImmediate> | undefined
  const expire = (): void => { pending = undefined }
  const read = (): number => {
    now = Date.now()
    pending = setImmediate(expire)
    return now
  }
  return {
    now: () => pending !== undefined ? now : read(),
    fresh: () => {
      now = Date.now()
      return now
    },
    setTimer: systemClock.setTimer,
    stop: () => {
      if (pending !== undefined) clearImmediate(pending)
      pending = undefined
    }
  }
}

interface VirtualTimer {
  at: number
  seq: number
  fn: () => void
  cancelled: boolean
}

/**
 * Deterministic virtual time: `now()` only moves when `advance` or `runUntil` is
 * called, and timers fire in (time, creation) order.
 */
export class VirtualClock implements Clock {
  private t: number
  private seq = 0
  private readonly timers: VirtualTimer[] = []

  constructor (startMs = 0) {
    this.t = startMs
  }

  now (): number {
    return this.t
  }

  setTimer (ms: number, fn: () => void): () => void {
    const timer: VirtualTimer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false }
    this.insert(timer)
    return () => { timer.cancelled = true }
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  advance (ms: number): void {
    this.runUntil(this.t + ms)
  }

  /** Fires timers in order up to `targetMs`, then sets the time to `targetMs`. */
  runUntil (targetMs: number): void {
    for (;;) {
      const next = this.timers[0]
      if (next === undefined || next.at > targetMs) break
      this.timers.shift()
      if (next.cancelled) continue
      if (next.at > this.t) this.t = next.at
      next.fn()
    }
    if (targetMs > this.t) this.t = targetMs
  }

  /** Timers still pending (cancelled ones excluded). */
  get pending (): number {
    return this.timers.filter(t => !t.cancelled).length
  }

  private insert (timer: VirtualTimer): void {
    // Binary search keeps the queue ordered by (at, seq); timers are few in the core.
    let lo = 0
    let hi = this.timers.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const m = this.timers[mid]
      if (m.at < timer.at || (m.at === timer.at && m.seq < timer.seq)) lo = mid + 1
      else hi = mid
    }
    this.timers.splice(lo, 0, timer)
  }
}
