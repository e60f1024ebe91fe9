import type { WindowStore } from '../crdt/window-store.js'
import { TokenBucket, type LimitRuntime } from './algorithms.js'

/**
 * Carrying usage across a policy change that changes a limit's layout (its window,
 * slot count or algorithm) but keeps its policy and limit ids.
 *
 * Every count of the old store, per replica, moves to the new slot that holds the last
 * millisecond of its old slot. When every old slot lies inside one new slot (the new
 * slot width is a whole multiple of the old one) this is exact. Otherwise a count moves
 * at most one old slot later than it happened, so it stays in the new window as long
 * as it should or longer: the new limit may over-count briefly, never under-count.
 * Counts older than the new window are dropped (a window store) or folded into the
 * carried level without draining (a token bucket, which never forgets busy history).
 */

/** What a migration moved, for logs and tests. */
export interface MigrationStats {
  /** Keys that had counts to move. */
  keys: number
  /** Counts written into the new store (one per replica and new slot). */
  entries: number
  /** Counts older than the new window, dropped. */
  dropped: number
  /** Counts older than the new ring, folded into a token bucket's carried level. */
  folded: number
  /** Why nothing moved, when the old and new counters mean different things. */
  skipped: string | undefined
}

/**
 * The slot of `to` that holds the last millisecond of slot `epoch` of `from`. When one
 * width is a whole multiple of the other (also for widths such as 60000 / 7 ms, which
 * floats do not represent exactly) the answer is computed in integers, so aligned
 * layouts map exactly; otherwise float error can only round up, to a later slot.
 */
export function mappedEpoch (epoch: number, fromSlotMs: number, toSlotMs: number): number {
  const up = toSlotMs / fromSlotMs
  const m = Math.round(up)
  // Within 1e-12 of a whole ratio is float noise: widths come from integer windows and slot counts.
  if (m >= 1 && Math.abs(up - m) <= up * 1e-12) return (epoch - (((epoch % m) + m) % m)) / m
  const down = fromSlotMs / toSlotMs
  const n = Math.round(down)
  if (n >= 1 && Math.abs(down - n) <= down * 1e-12) return (epoch + 1) * n - 1
  return Math.ceil(((epoch + 1) * fromSlotMs) / toSlotMs) - 1
}

/**
 * Moves the usage of runtime `from` into `to`, a fresh runtime for the same limit with
 * another layout or scope, at time `nowMs`. Window algorithms (sliding, fixed, token
 * bucket) move into each other; concurrency moves into concurrency; anything else
 * starts empty, since the counts mean different things.
 */
export function migrateUsage (from: LimitRuntime, to: LimitRuntime, nowMs: number): MigrationStats {
  const stats: MigrationStats = { keys: 0, entries: 0, dropped: 0, folded: 0, skipped: undefined }
  to.shadowDenied = from.shadowDenied
  if ((from.algorithm === 'concurrency') !== (to.algorithm === 'concurrency')) {
    stats.skipped = `${from.algorithm} counts do not carry into ${to.algorithm}`
    return stats
  }
  const drain = to instanceof TokenBucket ? to.ratePerMs * to.slotMs : 0
  for (const [suffix, src] of from.stores) {
    const dst = to.stores.find(s => s[0] === suffix)?.[1]
    if (dst !== undefined) migrateStore(src, dst, nowMs, drain, stats)
  }
  return stats
}

/**
 * Re-buckets every key of `src` into `dst` (see the module comment). `drainPerSlot` is
 * the token bucket drain of `dst` per slot (0 for other algorithms).
 */
export function migrateStore (src: WindowStore, dst: WindowStore, nowMs: number, drainPerSlot: number, stats: MigrationStats): void {
  const srcNow = src.epochOf(nowMs)
  const dstNow = dst.epochOf(nowMs)
  const oldest = dstNow - dst.pastSlots + 1
  const fromW = src.slotMs
  const toW = dst.slotMs
  // Per key: (replica, new epoch) -> summed count; the key packs both in one safe integer.
  const sums = new Map<number, number>()
  const SPAN = 2 ** 26
  src.forEachKey(i => {
    src.advance(i, srcNow)
    const key = src.keyAt(i)
    // A key known only by its wire hash can only live in a store that has a hash index.
    if (key === undefined && !(src.replicated && dst.replicated)) return
    sums.clear()
    let carried = 0
    src.forEachEntry(i, (rep, epoch, count) => {
      // A node-scoped limit counts only this node: other replicas' columns do not move.
      if (rep !== 0 && !dst.replicated) return
      let e = mappedEpoch(epoch, fromW, toW)
      if (e > dstNow) e = rep === 0 ? dstNow : Math.min(e, dstNow + dst.futureSlots)
      if (e < oldest) {
        if (dst.carries) {
          carried += count
          stats.folded++
        } else stats.dropped++
        return
      }
      const k = rep * SPAN + (e - oldest)
      sums.set(k, (sums.get(k) ?? 0) + count)
    })
    if (src.carries && dst.carries && src.carriedOf(i) > 0) {
      // The old level is as of the start of the old ring; moved to the start of the new
      // ring it must not drain for longer than it would have: add back the extra drain.
      const srcStart = (srcNow - src.pastSlots + 1) * fromW
      const dstStart = oldest * toW
      const extraSlots = srcStart > dstStart ? Math.ceil((srcStart - dstStart) / toW) : 0
      carried += src.carriedOf(i) + drainPerSlot * extraSlots
    }
    if (sums.size === 0 && carried === 0) return
    const j = key !== undefined ? dst.acquire(key, dstNow) : dst.acquireHash(src.hashOf(i), dstNow)
    dst.advance(j, dstNow)
    // Changes peers have not heard of yet, or counts that were never gossiped, go out again.
    const resend = dst.replicated && (src.hasUndrained(i) || !src.replicated)
    for (const [k, count] of sums) {
      const rep = Math.floor(k / SPAN)
      const e = oldest + (k - rep * SPAN)
      if (rep === 0) {
        // The local ring holds 32-bit counts; a sum beyond that is clamped (never reached in practice).
        const c = Math.min(count, 0xffffffff)
        if (resend) dst.addAt(j, e, c)
        else dst.merge(j, 0, e, c, dstNow)
      } else {
        dst.merge(j, rep, e, count, dstNow)
      }
      stats.entries++
    }
    if (carried > 0) dst.setCarried(j, dst.carriedOf(j) + carried)
    stats.keys++
  })
}
