/** Plain-object state of a G-Counter: replica key -> that replica's count. */
export type GCounterState = Record<string, number>

/**
 * Grow-only counter: one non-decreasing entry per replica, merged by pointwise max,
 * valued as the sum. Tracks which entries changed since the last `takeDelta()` so a
 * node can ship only its changes, always as absolute values.
 */
export class GCounter {
  private readonly entries = new Map<string, number>()
  private readonly changed = new Set<string>()

  /** Adds `by` (a non-negative finite number) to `replica`'s entry. */
  increment (replica: string, by = 1): void {
    if (!(by >= 0) || !Number.isFinite(by)) throw new RangeError(`increment must be a finite number >= 0, got ${by}`)
    if (by === 0) return
    this.entries.set(replica, (this.entries.get(replica) ?? 0) + by)
    this.changed.add(replica)
  }

  /** One replica's entry (0 when absent). */
  get (replica: string): number {
    return this.entries.get(replica) ?? 0
  }

  get value (): number {
    let total = 0
    for (const v of this.entries.values()) total += v
    return total
  }

  /** Pointwise max with `state`; returns true when anything grew. */
  merge (state: GCounterState): boolean {
    let grew = false
    for (const replica of Object.keys(state)) {
      const v = state[replica]
      if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) continue
      if (v > (this.entries.get(replica) ?? 0)) {
        this.entries.set(replica, v)
        this.changed.add(replica)
        grew = true
      }
    }
    return grew
  }

  state (): GCounterState {
    return Object.fromEntries(this.entries)
  }

  /** The entries changed since the last call, as absolute values. */
  takeDelta (): GCounterState {
    // fromEntries defines own properties: assigning delta['__proto__'] would drop the entry.
    const delta: GCounterState = Object.fromEntries(Array.from(this.changed, r => [r, this.entries.get(r) ?? 0]))
    this.changed.clear()
    return delta
  }
}
