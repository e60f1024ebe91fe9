import { MergeResult } from '../../crdt/window-store.js'

/**
 * Reference model of one WindowStore, written for clarity rather than speed: every
 * count is a map entry keyed by replica and epoch, and the retained range is applied
 * literally. An epoch e is retained for a key with head h iff h - pastSlots < e <= h +
 * futureSlots; the local replica (0) never has counts ahead of the head.
 */
export interface KeyModel {
  readonly hash: number
  /** The key string, once the store has seen it (keys created by hash have none). */
  name: string | undefined
  head: number
  /** `${replica}|${epoch}` -> count (> 0). */
  readonly counts: Map<string, number>
  /** Oldest epoch with an own change since the last drain; NaN when clean. */
  dirtyFrom: number
  /** Level carried out of dropped slots (stays 0 without carryPerSlot). */
  carried: number
  /**
   * Local-share history of a replicated store: own and peers' counts of the head slot,
   * the slot before, and older slots halved per slot. A key whose history has not faded
   * is kept by sweeps even when its counts have expired.
   */
  ownCur: number
  ownPrev: number
  ownHist: number
  peersCur: number
  peersPrev: number
  peersHist: number
}

export class WindowModel {
  readonly keys = new Map<number, KeyModel>()
  /** Own triples of dirty keys that were evicted, for the next drain. */
  pending: number[] = []
  droppedAhead = 0
  evictions = 0
  expired = 0

  /** carryPerSlot undefined: no carried level. */
  constructor (readonly pastSlots: number, readonly futureSlots: number, readonly carryPerSlot?: number) {}

  create (hash: number, epoch: number, name?: string): KeyModel {
    const k: KeyModel = { hash, name, head: epoch, counts: new Map(), dirtyFrom: NaN, carried: 0, ownCur: 0, ownPrev: 0, ownHist: 0, peersCur: 0, peersPrev: 0, peersHist: 0 }
    this.keys.set(hash, k)
    return k
  }

  retained (k: KeyModel, e: number): boolean {
    return e > k.head - this.pastSlots && e <= k.head + this.futureSlots
  }

  get (k: KeyModel, rep: number, e: number): number {
    return k.counts.get(`${rep}|${e}`) ?? 0
  }

  private set (k: KeyModel, rep: number, e: number, v: number): void {
    k.counts.set(`${rep}|${e}`, v)
  }

  advance (k: KeyModel, epoch: number): void {
    if (epoch <= k.head) return
    const c = this.carryPerSlot
    if (c !== undefined) {
      // Every epoch leaving the range, oldest first: carried = max(0, carried - c) + total.
      const last = Math.min(epoch - this.pastSlots, k.head + this.futureSlots)
      for (let e = k.head - this.pastSlots + 1; e <= last; e++) k.carried = Math.max(0, k.carried - c) + this.slotTotal(k, e)
      // Epochs never retained hold nothing, so they only drain.
      const empty = epoch - this.pastSlots - Math.max(last, k.head - this.pastSlots)
      if (empty > 0) k.carried = Math.max(0, k.carried - c * empty)
    }
    // Share history moves one slot per step (after 32 halvings nothing is left).
    for (let n = 0; n < Math.min(epoch - k.head, 40); n++) {
      k.ownHist = (k.ownHist >>> 1) + k.ownPrev
      k.ownPrev = k.ownCur
      k.ownCur = 0
      k.peersHist = (k.peersHist >>> 1) + k.peersPrev
      k.peersPrev = k.peersCur
      k.peersCur = 0
    }
    // Own counts not drained yet that leave the range stay pending for the next drain.
    if (k.dirtyFrom === k.dirtyFrom) {
      for (let e = Math.max(k.dirtyFrom, k.head - this.pastSlots + 1); e <= Math.min(k.head, epoch - this.pastSlots); e++) {
        const c = this.get(k, 0, e)
        if (c > 0) this.pending.push(k.hash, e, c)
      }
    }
    k.head = epoch
    for (const id of [...k.counts.keys()]) {
      if (!this.retained(k, Number(id.split('|')[1]))) k.counts.delete(id)
    }
  }

  private markDirty (k: KeyModel, e: number): void {
    k.dirtyFrom = k.dirtyFrom === k.dirtyFrom ? Math.min(k.dirtyFrom, e) : e
  }

  /** Local count, clamped to the head (a clock that steps back credits the newest slot). */
  add (k: KeyModel, epoch: number, cost: number): void {
    this.advance(k, epoch)
    this.set(k, 0, k.head, this.get(k, 0, k.head) + cost)
    k.ownCur += cost
    this.markDirty(k, k.head)
  }

  addAt (k: KeyModel, epoch: number, cost: number): boolean {
    if (epoch <= k.head - this.pastSlots || epoch > k.head) return false
    this.set(k, 0, epoch, this.get(k, 0, epoch) + cost)
    this.markDirty(k, epoch)
    return true
  }

  merge (k: KeyModel, rep: number, epoch: number, count: number, now: number): MergeResult {
    this.advance(k, now)
    if (epoch <= k.head - this.pastSlots) return MergeResult.Stale
    if (epoch > k.head + this.futureSlots) {
      this.droppedAhead++
      return MergeResult.TooFarAhead
    }
    if (rep === 0 && epoch > k.head) return MergeResult.Unchanged
    const delta = count - this.get(k, rep, epoch)
    if (delta <= 0) return MergeResult.Unchanged
    this.set(k, rep, epoch, count)
    // Peers' counts credit the slot their epoch names (own echoes are not share history).
    if (rep !== 0) {
      if (epoch >= k.head) k.peersCur += delta
      else if (epoch === k.head - 1) k.peersPrev += delta
      else k.peersHist += delta
    }
    return MergeResult.Applied
  }

  /** The range check mergeHash makes before it creates the key; undefined when it passes. */
  mergeHashPrecheck (epoch: number, now: number): MergeResult | undefined {
    if (epoch <= now - this.pastSlots) return MergeResult.Stale
    if (epoch > now + this.futureSlots) {
      this.droppedAhead++
      return MergeResult.TooFarAhead
    }
    return undefined
  }

  slotTotal (k: KeyModel, e: number): number {
    if (!this.retained(k, e)) return 0
    let t = 0
    for (const [id, v] of k.counts) if (Number(id.split('|')[1]) === e) t += v
    return t
  }

  sum (k: KeyModel): number {
    let t = 0
    for (const v of k.counts.values()) t += v
    return t
  }

  ahead (k: KeyModel): number {
    let t = 0
    for (const [id, v] of k.counts) if (Number(id.split('|')[1]) > k.head) t += v
    return t
  }

  /** Newest epoch at or before the head with a count; NaN when none. */
  newest (k: KeyModel): number {
    for (let e = k.head; e > k.head - this.pastSlots; e--) if (this.slotTotal(k, e) > 0) return e
    return NaN
  }

  entries (k: KeyModel): Record<number, Record<number, number>> {
    const out: Record<number, Record<number, number>> = {}
    for (const [id, v] of k.counts) {
      const [rep, e] = id.split('|').map(Number)
      const row = out[e] ?? (out[e] = {})
      row[rep] = v
    }
    return out
  }

  /** What draining key k emits: own counts from its dirty-from epoch to the head. */
  private emission (k: KeyModel): number[] {
    const out: number[] = []
    if (k.dirtyFrom !== k.dirtyFrom) return out
    for (let e = Math.max(k.dirtyFrom, k.head - this.pastSlots + 1); e <= k.head; e++) {
      const c = this.get(k, 0, e)
      if (c > 0) out.push(k.hash, e, c)
    }
    return out
  }

  drain (): number[] {
    const out = this.pending
    this.pending = []
    for (const k of this.keys.values()) {
      out.push(...this.emission(k))
      k.dirtyFrom = NaN
    }
    return out
  }

  /** A key the store evicted at its maxKeys cap: its undrained own counts stay pending. */
  evict (hash: number): void {
    const k = this.keys.get(hash) as KeyModel
    this.pending.push(...this.emission(k))
    this.keys.delete(hash)
    this.evictions++
  }

  /** Whether a sweep at `now` may free k: clean, nothing left once aligned to now, nothing carried. */
  sweepable (k: KeyModel, now: number): boolean {
    if (k.dirtyFrom === k.dirtyFrom) return false
    const copy: KeyModel = { ...k, counts: new Map(k.counts) }
    this.advance(copy, now)
    return this.sum(copy) === 0 && copy.carried === 0 && !this.hasHistory(copy)
  }

  hasHistory (k: KeyModel): boolean {
    return (k.ownCur | k.ownPrev | k.ownHist | k.peersCur | k.peersPrev | k.peersHist) !== 0
  }

  /** A sweep that examines every key; returns the hashes freed. */
  sweepAll (now: number): number[] {
    const freed: number[] = []
    for (const k of [...this.keys.values()]) {
      if (k.dirtyFrom === k.dirtyFrom) continue
      this.advance(k, now)
      if (this.sum(k) === 0 && k.carried === 0 && !this.hasHistory(k)) {
        this.keys.delete(k.hash)
        freed.push(k.hash)
        this.expired++
      }
    }
    return freed
  }
}

/** Triples as sorted strings, to compare two drains as multisets. */
export function tripleSet (flat: number[]): string[] {
  const out: string[] = []
  for (let j = 0; j < flat.length; j += 3) out.push(`${flat[j]}|${flat[j + 1]}|${flat[j + 2]}`)
  return out.sort()
}
