/**
 * The discrete-event core of the simulator: one queue of events ordered by (time, then
 * order of scheduling), so a run is a pure function of its inputs and seed. Time is
 * simulated milliseconds since the start of the run; nothing here reads a real clock.
 */

/** Something that can stop owning events (a node's incarnation): its events are skipped once dead. */
export interface EventOwner {
  dead: boolean
}

/** The owner of events that always run (network plumbing, workload, faults). */
export const ALWAYS: EventOwner = Object.freeze({ dead: false }) as EventOwner

/**
 * Something the scheduler runs. A task may reschedule itself from run() (see
 * Scheduler.push), so a long series of events (the copies of one message) costs one
 * object instead of one per event.
 */
export interface Task {
  at: number
  seq: number
  owner: EventOwner
  cancelled: boolean
  run(): void
}

class Event implements Task {
  seq = 0
  cancelled = false
  constructor (public at: number, readonly fn: () => void, readonly owner: EventOwner) {}
  run (): void { this.fn() }
}

export interface Scheduler {
  /** Simulated time, in ms since the start of the run. */
  readonly now: number
  /** Runs `fn` at simulated time `at` (clamped to now); returns a function that cancels it. */
  at(at: number, fn: () => void, owner?: EventOwner): () => void
  /** Runs `fn` after `ms` (clamped to >= 0). */
  after(ms: number, fn: () => void, owner?: EventOwner): () => void
  /** Schedules `task` at `task.at` (clamped to now), giving it a new place in the order. */
  push(task: Task): void
  /**
   * Runs every event due up to `until` in order and leaves the time at `until`; stops
   * early (returning false) when `budget` events ran, so a caller can yield in between.
   */
  runUntil(until: number, budget?: number): boolean
  /**
   * Makes the running runUntil() return (false) right after the current event, so the
   * caller can let promise continuations run at this simulated instant.
   */
  requestYield(): void
  /** Events waiting (cancelled ones included until they are popped). */
  readonly pending: number
  /** Events run so far. */
  readonly executed: number
}

/**
 * A binary min-heap of events keyed by (at, seq). Cancelling marks the event; it is
 * dropped when it reaches the top, which keeps cancel O(1). The keys sit in typed
 * arrays beside the tasks, so sifting compares neighbouring numbers instead of reading
 * a task object (a cache miss each) per comparison.
 */
export function createScheduler (): Scheduler {
  const heap: Task[] = []
  let keyAt = new Float64Array(1024)
  let keySeq = new Float64Array(1024)
  let now = 0
  let seq = 0
  let executed = 0
  let yieldRequested = false

  const push = (e: Task): void => {
    if (e.at < now) e.at = now
    e.seq = seq++
    const at = e.at
    const sq = e.seq
    let i = heap.length
    if (i === keyAt.length) {
      const a = new Float64Array(2 * i)
      a.set(keyAt)
      keyAt = a
      const q = new Float64Array(2 * i)
      q.set(keySeq)
      keySeq = q
    }
    heap.push(e)
    while (i > 0) {
      const p = (i - 1) >> 1
      const pa = keyAt[p]
      if (pa < at || (pa === at && keySeq[p] < sq)) break
      heap[i] = heap[p]
      keyAt[i] = pa
      keySeq[i] = keySeq[p]
      i = p
    }
    heap[i] = e
    keyAt[i] = at
    keySeq[i] = sq
  }

  const pop = (): Task => {
    const top = heap[0]
    const last = heap.pop() as Task
    const n = heap.length
    if (n > 0) {
      const at = keyAt[n]
      const sq = keySeq[n]
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        if (l >= n) break
        const r = l + 1
        const c = r < n && (keyAt[r] < keyAt[l] || (keyAt[r] === keyAt[l] && keySeq[r] < keySeq[l])) ? r : l
        const ca = keyAt[c]
        if (at < ca || (at === ca && sq < keySeq[c])) break
        heap[i] = heap[c]
        keyAt[i] = ca
        keySeq[i] = keySeq[c]
        i = c
      }
      heap[i] = last
      keyAt[i] = at
      keySeq[i] = sq
    }
    return top
  }

  const schedule = (at: number, fn: () => void, owner: EventOwner): () => void => {
    const e = new Event(at, fn, owner)
    push(e)
    return () => { e.cancelled = true }
  }

  return {
    get now () { return now },
    get pending () { return heap.length },
    get executed () { return executed },
    requestYield () { yieldRequested = true },
    at: (at, fn, owner = ALWAYS) => schedule(at, fn, owner),
    after: (ms, fn, owner = ALWAYS) => schedule(now + (ms > 0 ? ms : 0), fn, owner),
    push,
    runUntil (until, budget = Infinity) {
      let ran = 0
      while (heap.length > 0 && keyAt[0] <= until) {
        if (ran >= budget) return false
        const e = pop()
        if (e.cancelled || e.owner.dead) continue
        now = e.at
        executed++
        ran++
        e.run()
        if (yieldRequested) {
          yieldRequested = false
          return false
        }
      }
      if (until > now) now = until
      return true
    }
  }
}
