/**
 * Ground truth of a run: every admitted unit, by limit, key, writer epoch (the slot the
 * admitting node counted it in, on its own clock) and replica; and, beside it, the
 * largest count of each cell that its replica published. Views are judged against
 * these. Only recent epochs are kept (`horizon` slots behind the newest), which covers
 * every node's retained range.
 */

/** Cells of one key: parallel arrays, one entry per (epoch, replica). */
export class KeyCells {
  readonly key: string
  readonly hash: number
  readonly epoch: number[] = []
  readonly rep: number[] = []
  /** Units admitted. */
  readonly count: number[] = []
  /** Largest count published so far (what peers can have). */
  readonly published: number[] = []
  /** Simulated time of the first and of the last publish of the cell. */
  readonly firstPub: number[] = []
  readonly lastPub: number[] = []
  newest = -Infinity
  /** Units admitted in total (never pruned). */
  total = 0

  constructor (key: string, hash: number) {
    this.key = key
    this.hash = hash
  }

  /** Index of the (epoch, replica) cell, or -1; scans newest first (recent cells are at the end). */
  find (epoch: number, rep: number): number {
    for (let j = this.epoch.length - 1; j >= 0; j--) if (this.epoch[j] === epoch && this.rep[j] === rep) return j
    return -1
  }

  /** Drops cells older than `oldest`. */
  prune (oldest: number): void {
    let w = 0
    for (let j = 0; j < this.epoch.length; j++) {
      if (this.epoch[j] < oldest) continue
      if (w !== j) {
        this.epoch[w] = this.epoch[j]
        this.rep[w] = this.rep[j]
        this.count[w] = this.count[j]
        this.published[w] = this.published[j]
        this.firstPub[w] = this.firstPub[j]
        this.lastPub[w] = this.lastPub[j]
      }
      w++
    }
    for (const a of [this.epoch, this.rep, this.count, this.published, this.firstPub, this.lastPub]) a.length = w
  }
}

/** The truth of one limit. */
export class LimitTruth {
  readonly byKey = new Map<string, KeyCells>()
  readonly byHash = new Map<number, KeyCells>()

  /** @param horizon slots kept behind the newest cell of a key */
  constructor (readonly name: string, readonly horizon: number, private readonly hashOf: (key: string) => number) {}

  cells (key: string): KeyCells {
    let k = this.byKey.get(key)
    if (k === undefined) {
      k = new KeyCells(key, this.hashOf(key))
      this.byKey.set(key, k)
      this.byHash.set(k.hash, k)
    }
    return k
  }

  /** Counts `cost` units admitted by replica `rep` in `epoch`; returns the cell's new count. */
  admit (key: string, epoch: number, rep: number, cost: number): number {
    const k = this.cells(key)
    k.total += cost
    let j = k.find(epoch, rep)
    if (j < 0) {
      if (epoch > k.newest) k.newest = epoch
      // Prune lazily, when a key has grown well past what its horizon can hold.
      if (k.epoch.length >= 64 && (k.epoch.length & 63) === 0) k.prune(k.newest - this.horizon)
      j = k.epoch.length
      k.epoch.push(epoch)
      k.rep.push(rep)
      k.count.push(0)
      k.published.push(0)
      k.firstPub.push(Infinity)
      k.lastPub.push(-Infinity)
    }
    k.count[j] += cost
    return k.count[j]
  }

  /** Records that replica `rep` published `count` for (hash, epoch) at time `now`. */
  publish (hash: number, epoch: number, rep: number, count: number, now: number): void {
    const k = this.byHash.get(hash)
    if (k === undefined) return
    const j = k.find(epoch, rep)
    if (j < 0) return
    if (count > k.published[j]) k.published[j] = count
    if (now < k.firstPub[j]) k.firstPub[j] = now
    k.lastPub[j] = now
  }
}
