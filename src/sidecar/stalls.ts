import { PerformanceObserver, constants, performance, type PerformanceEntry } from 'node:perf_hooks'

export interface StallWatchInit {
  /**
   * A timer tick this much later than due is a stall of the event loop, in ms.
   * @default 5
   */
  thresholdMs?: number
  /**
   * Period of the watching timer, in ms: the resolution of stall edges.
   * @default 2
   */
  intervalMs?: number
}

/** Counts since the watch started (stalls are classified about 50 ms after they end). */
export interface StallStats {
  /** Stalls in which garbage collection took at least half the time. */
  gcStalls: number
  /** Other stalls in which the process used CPU for at least half the time: long tasks (our code, HTTP/2 batches...). */
  taskStalls: number
  /** The rest: the process was not running (not scheduled on a busy machine, or blocked in a system call). */
  waitStalls: number
  /** Summed length of each kind, in ms. */
  gcStallMs: number
  taskStallMs: number
  waitStallMs: number
  /** Collection time inside stalls of either kind, in ms. */
  gcInStallsMs: number
  /** Longest stall, in ms (see takeMaxMs for "since the last read"). */
  maxStallMs: number
}

export interface StallWatch {
  stats(): StallStats
  /** The longest stall since the previous call, in ms (0 when none); for a per-scrape gauge. */
  takeMaxMs(): number
  stop(): void
}

const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb'
}

/** How many recent collections are kept to match stalls with (a few seconds' worth at high allocation rates). */
const GC_RING = 256

/**
 * Watches the event loop for stalls and tells their causes apart: a timer every
 * `intervalMs` measures its own lateness; a stall is a collection pause when the
 * collections the runtime reports fill half of it, else a long task when the process
 * used CPU for half of it, else a wait (the process was not running). A debugging aid for latency
 * tails (off unless asked for): it costs one short timer callback per interval.
 */
export function createStallWatch (init: StallWatchInit = {}): StallWatch {
  const thresholdMs = init.thresholdMs ?? 5
  const intervalMs = init.intervalMs ?? 2
  const gcStart = new Float64Array(GC_RING)
  const gcEnd = new Float64Array(GC_RING)
  let gcCount = 0
  const stats: StallStats = { gcStalls: 0, taskStalls: 0, waitStalls: 0, gcStallMs: 0, taskStallMs: 0, waitStallMs: 0, gcInStallsMs: 0, maxStallMs: 0 }
  let maxSinceRead = 0
  // Stalls waiting for their collections to be reported (entries arrive after the pause).
  const pending: Array<[number, number, number]> = []

  const observer = new PerformanceObserver(list => {
    for (const e of list.getEntries() as Array<PerformanceEntry & { detail?: { kind?: number } }>) {
      if (GC_KINDS[e.detail?.kind ?? -1] === undefined) continue
      const i = gcCount++ % GC_RING
      gcStart[i] = e.startTime
      gcEnd[i] = e.startTime + e.duration
    }
  })
  observer.observe({ entryTypes: ['gc'] })

  const classify = (from: number, to: number, cpuMs: number): void => {
    let gc = 0
    for (let k = Math.max(0, gcCount - GC_RING); k < gcCount; k++) {
      const i = k % GC_RING
      const overlap = Math.min(to, gcEnd[i]) - Math.max(from, gcStart[i])
      if (overlap > 0) gc += overlap
    }
    const len = to - from
    stats.gcInStallsMs += gc
    if (gc >= len / 2) { stats.gcStalls++; stats.gcStallMs += len } else if (cpuMs >= len / 2) { stats.taskStalls++; stats.taskStallMs += len } else { stats.waitStalls++; stats.waitStallMs += len }
  }

  // CPU time of the process (all threads) at the previous tick: a stall that used little was waiting, not working.
  const cpuMs = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }
  let lastCpu = cpuMs()
  let due = performance.now() + intervalMs
  const timer = setInterval(() => {
    const now = performance.now()
    const cpu = cpuMs()
    const late = now - due
    if (late >= thresholdMs) {
      pending.push([due, now, cpu - lastCpu])
      if (late > stats.maxStallMs) stats.maxStallMs = late
      if (late > maxSinceRead) maxSinceRead = late
    }
    while (pending.length > 0 && pending[0][1] < now - 50) {
      const [from, to, used] = pending.shift() as [number, number, number]
      classify(from, to, used)
    }
    due = now + intervalMs
    lastCpu = cpu
  }, intervalMs)
  timer.unref()

  return {
    stats: () => ({ ...stats }),
    takeMaxMs () {
      const m = maxSinceRead
      maxSinceRead = 0
      return m
    },
    stop () {
      clearInterval(timer)
      observer.disconnect()
    }
  }
}
