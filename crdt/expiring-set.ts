/**
 * A last-writer-wins map of keys to present/absent entries with expiry: the state of a
 * mesh-wide block list. Per key, the entry greatest in (ts, replica, present,
 * expiresAt, reason) order wins, so merging is commutative, associative and
 * idempotent, and concurrent block/unblock races converge to the same answer on every
 * replica. An entry counts only while `now < expiresAt`; an absent entry (a tombstone)
 * keeps older presents from coming back until it expires itself.
 *
 * No I/O, no clock: callers pass `now`.
 */

export interface SetEntry {
  readonly key: string
  /** Time of the write in ms (the writer's clock, bumped past the entry it replaces). */
  readonly ts: number
  /** Replica that wrote the entry. */
  readonly replica: string
  /** true: the key is in the set (blocked); false: a tombstone (unblocked). */
  readonly present: boolean
  /** Time in ms from which the entry no longer counts and may be dropped. */
  readonly expiresAt: number
  /** Why the entry was written (free text, for operators). */
  readonly reason: string
}

/** Total order of entries of one key: the greater one wins a merge. */
export function compareEntries (a: SetEntry, b: SetEntry): number {
  if (a.ts !== b.ts) return a.ts < b.ts ? -1 : 1
  if (a.replica !== b.replica) return a.replica < b.replica ? -1 : 1
  if (a.present !== b.present) return a.present ? -1 : 1 // an unblock wins an exact tie
  if (a.expiresAt !== b.expiresAt) return a.expiresAt < b.expiresAt ? -1 : 1
  if (a.reason !== b.reason) return a.reason < b.reason ? -1 : 1
  return 0
}

export const enum SetMerge {
  /** The entry replaced the key's entry or was new. */
  Applied = 0,
  /** The key already holds an equal or greater entry. */
  Stale = 1,
  /** The key is new and the set is full. */
  Full = 2
}

export class ExpiringSet {
  private readonly map = new Map<string, SetEntry>()
  readonly maxEntries: number

  constructor (maxEntries = Infinity) {
    this.maxEntries = maxEntries
  }

  get size (): number {
    return this.map.size
  }

  /** Merges one entry (a whole other set merges entry by entry). */
  merge (e: SetEntry): SetMerge {
    const cur = this.map.get(e.key)
    if (cur === undefined) {
      if (this.map.size >= this.maxEntries) return SetMerge.Full
      this.map.set(e.key, e)
      return SetMerge.Applied
    }
    if (compareEntries(e, cur) <= 0) return SetMerge.Stale
    this.map.set(e.key, e)
    return SetMerge.Applied
  }

  /** The key's winning entry, present or not, expired or not. */
  get (key: string): SetEntry | undefined {
    return this.map.get(key)
  }

  /** The key's entry when it is present and not expired at `now`. */
  live (key: string, now: number): SetEntry | undefined {
    const e = this.map.get(key)
    return e !== undefined && e.present && now < e.expiresAt ? e : undefined
  }

  has (key: string, now: number): boolean {
    return this.live(key, now) !== undefined
  }

  entries (): IterableIterator<SetEntry> {
    return this.map.values()
  }

  /** Drops every entry expired at `now`; returns how many. */
  sweep (now: number): number {
    let n = 0
    for (const [k, e] of this.map) {
      if (now >= e.expiresAt) {
        this.map.delete(k)
        n++
      }
    }
    return n
  }
}
