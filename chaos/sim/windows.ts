/**
 * Over-admission per key and window, on true time. Time is cut into the limit's slots
 * (slotMs); a window is `k` consecutive slots (k = slots per window, so its length is the
 * limit's window). Every window that ends at a slot boundary and holds any traffic is
 * evaluated: excess = max(0, admitted - limit). A window is "contended" when the
 * requests offered in it reach the limit (the limiter had to deny something); the mean
 * over-admission is taken over contended windows, so idle keys do not dilute it.
 *
 * On one node with no skew, a sliding window admits at most `limit` in any such window
 * (its estimate counts every slot of the window in full), and a fixed window exactly
 * aligns with it, so any excess measured here comes from the mesh.
 */
/** A window counts towards the steady-state figures (no warm-up, no fault nearby). */
export const STEADY = 1
/** A window lies within a partition that membership has detected (partition modes in force). */
export const DETECTED = 2

/** The figures of a key's windows once finished (plain data: they travel between threads). */
export interface WindowFigures {
  maxExcess: number
  maxExcessSlot: number
  excessRatioSum: number
  contended: number
  windows: number
  steadyMaxExcess: number
  /** Slot at which the largest steady-state excess ended (-1: none over the limit). */
  steadyMaxExcessSlot: number
  steadyRatioSum: number
  steadyContended: number
  detectedMaxExcess: number
}

export class KeyWindows implements WindowFigures {
  private readonly admitted: Float64Array
  private readonly offered: Float64Array
  private head = -Infinity
  private sumA = 0
  private sumO = 0
  /** Largest excess over the limit seen in a window, in units. */
  maxExcess = 0
  /** Slot at which the largest excess ended. */
  maxExcessSlot = -1
  /** Sum over contended windows of excess / limit. */
  excessRatioSum = 0
  contended = 0
  windows = 0
  /** The same over STEADY windows. */
  steadyMaxExcess = 0
  steadyMaxExcessSlot = -1
  steadyRatioSum = 0
  steadyContended = 0
  /** Largest excess over DETECTED windows (-1: none). */
  detectedMaxExcess = -1

  /**
   * @param classify the classes (STEADY, DETECTED bits) of the window ending at a slot
   */
  constructor (readonly k: number, readonly limit: number, private readonly classify: (endSlot: number) => number = () => 0) {
    this.admitted = new Float64Array(k)
    this.offered = new Float64Array(k)
  }

  /** Counts one request in true slot `slot` (slots never go back). */
  add (slot: number, offered: number, admitted: number): void {
    if (slot !== this.head) this.moveTo(slot)
    const p = slot % this.k
    this.offered[p] += offered
    this.admitted[p] += admitted
    this.sumO += offered
    this.sumA += admitted
  }

  /** Evaluates every window that ended before `slot` and moves the head to it. */
  moveTo (slot: number): void {
    if (this.head === -Infinity) {
      this.head = slot
      return
    }
    if (slot <= this.head) return
    const k = this.k
    // Windows ending at head, head + 1, ...: once k slots passed they are empty.
    const last = Math.min(slot - 1, this.head + k - 1)
    for (let end = this.head; end <= last; end++) {
      if (end > this.head) {
        // Slot `end` is empty; the slot leaving the window is end - k.
        const p = end % k
        this.sumA -= this.admitted[p]
        this.sumO -= this.offered[p]
        this.admitted[p] = 0
        this.offered[p] = 0
      }
      this.evaluate(end)
    }
    if (slot - this.head >= k) {
      this.admitted.fill(0)
      this.offered.fill(0)
      this.sumA = 0
      this.sumO = 0
    } else {
      const p = slot % k
      this.sumA -= this.admitted[p]
      this.sumO -= this.offered[p]
      this.admitted[p] = 0
      this.offered[p] = 0
    }
    this.head = slot
  }

  private evaluate (end: number): void {
    if (this.sumO === 0 && this.sumA === 0) return
    this.windows++
    const excess = this.sumA - this.limit
    if (excess > this.maxExcess) {
      this.maxExcess = excess
      this.maxExcessSlot = end
    }
    const contended = this.sumO >= this.limit
    if (contended) {
      this.contended++
      if (excess > 0) this.excessRatioSum += excess / this.limit
    }
    const c = this.classify(end)
    if (c === 0) return
    const over = excess > 0 ? excess : 0
    if ((c & STEADY) !== 0) {
      if (over > this.steadyMaxExcess) {
        this.steadyMaxExcess = over
        this.steadyMaxExcessSlot = end
      }
      if (contended) {
        this.steadyContended++
        this.steadyRatioSum += over / this.limit
      }
    }
    if ((c & DETECTED) !== 0 && over > this.detectedMaxExcess) this.detectedMaxExcess = over
  }

  /** Windows already finished elsewhere with these figures (finish() has nothing left to do). */
  static finished (k: number, limit: number, f: WindowFigures): KeyWindows {
    const w = new KeyWindows(k, limit)
    w.maxExcess = f.maxExcess
    w.maxExcessSlot = f.maxExcessSlot
    w.excessRatioSum = f.excessRatioSum
    w.contended = f.contended
    w.windows = f.windows
    w.steadyMaxExcess = f.steadyMaxExcess
    w.steadyMaxExcessSlot = f.steadyMaxExcessSlot
    w.steadyRatioSum = f.steadyRatioSum
    w.steadyContended = f.steadyContended
    w.detectedMaxExcess = f.detectedMaxExcess
    return w
  }

  /** Evaluates the windows still open (call once, at the end of the run). */
  finish (): void {
    if (this.head === -Infinity) return
    this.moveTo(this.head + this.k)
  }
}
