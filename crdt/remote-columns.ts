/**
 * The counts other replicas wrote, for every key of one WindowStore that a peer wrote
 * to: one block per key, carved out of a single Float64Array arena, so a received entry
 * touches a few neighbouring cache lines and the garbage collector sees no per-key
 * objects (blocks of keys that go cold are recycled through free lists, not dropped).
 *
 * A block at offset `b` (in doubles), for a ring of R positions and room for 2^k
 * columns (one column per replica that wrote the key):
 *
 *   f64[b]          ahead: total of the positions after the key's head
 *   u32[2b + 2]     columns in use              u32[2b + 3]  k
 *   u32[2b + 4]     the head's ring position     u32[2b + 5]  positions whose total is not 0
 *   u32[2b + 6]     replicas given a column since the block was created
 *   u32[2b + 7]     rings of at most 32 positions: bit p set when position p's total is not 0
 *   u32 words       index: 2^(k+1) buckets of two words, replica and column + 1 (0: empty),
 *                   linear probing; the replica sits in its bucket, so a lookup reads
 *                   the index only (one cache line), not also the replicas below
 *   u32 words       reps: the replica of each column (2^k)
 *   f64 rows        per ring position, its total then its count per column (1 + 2^k doubles)
 *
 * One row per slot makes a slot's expiry one contiguous fill, and a merged entry
 * touches the header (with the index and replicas of a small block) and one row; the
 * index finds a replica's column in O(1) however many replicas write the key.
 * Columns are added one at a time; a block that runs out of room first gives back the
 * columns of replicas with no count left in the ring (a key that stays busy is written
 * by ever new replicas, of which only the recent ones still hold counts) and rebuilds
 * its index, and only when too few are free moves to a block of twice the room; the
 * caller stores the new offset. A key's block is freed whole once every position is empty.
 *
 * Every cell of a fresh block is 0, and expiry re-zeroes the cells it drops, so columns
 * beyond those in use are always 0.
 */

const HEADER = 4
const MAX_K = 16
/** Doubles of the smallest arena. */
const MIN_DOUBLES = 1 << 12
/** Compaction is considered only above this arena size (doubles), and when under a quarter is in use. */
const COMPACT_FROM = 1 << 16
const GOLDEN = 0x9e3779b1

export class RemoteColumns {
  /** Positions per ring. */
  readonly ring: number
  f64: Float64Array
  u32: Uint32Array
  /** Doubles handed out so far (blocks and free blocks below it). */
  private top = 0
  /** Doubles in live blocks. */
  private used = 0
  private blocks = 0
  private readonly free: number[][] = []
  /** Per k, the offset of the first row from the block's start (doubles). */
  private readonly rowsOff: Int32Array
  /** reclaim()'s marks of live columns (reused: it runs whenever a busy key's block fills). */
  private marks = new Uint8Array(64)

  constructor (ring: number) {
    if (!Number.isInteger(ring) || ring < 1) throw new RangeError(`ring must be an integer >= 1, got ${ring}`)
    this.ring = ring
    this.rowsOff = new Int32Array(MAX_K + 1)
    for (let k = 0; k <= MAX_K; k++) this.rowsOff[k] = HEADER + Math.ceil(5 * (1 << k) / 2)
    const buf = new ArrayBuffer(MIN_DOUBLES * 8)
    this.f64 = new Float64Array(buf)
    this.u32 = new Uint32Array(buf)
    for (let k = 0; k <= MAX_K; k++) this.free.push([])
  }

  /** Doubles of a block with room for 2^k columns. */
  sizeOf (k: number): number {
    return this.rowsOff[k] + this.ring * ((1 << k) + 1)
  }

  /**
   * A new empty block (no column, every count 0) whose head sits at ring position
   * `headPos`, with room for at least `columns` columns (a hint: a key whose block was
   * dropped and comes back is usually written by as many replicas as before, and
   * starting at that size spares the moves of growing one column at a time).
   */
  create (headPos: number, columns = 1): number {
    let k = 0
    while (k < MAX_K && 1 << k < columns) k++
    const b = this.alloc(k)
    this.u32[2 * b + 4] = headPos
    return b
  }

  /** Returns a block to its free list, zeroed. */
  release (b: number): void {
    const k = this.u32[2 * b + 3]
    // Expiry zeroes the rows it empties, so a block with no live position only needs its header, index and replicas cleared.
    this.f64.fill(0, b, b + (this.u32[2 * b + 5] === 0 ? this.rowsOff[k] : this.sizeOf(k)))
    this.free[k].push(b)
    this.used -= this.sizeOf(k)
    this.blocks--
  }

  /** A zeroed block with room for 2^k columns (free blocks are zeroed on release, fresh space is zero). */
  private alloc (k: number): number {
    const size = this.sizeOf(k)
    let b = this.free[k].pop()
    if (b === undefined) {
      if (this.top + size > this.f64.length) this.resize(Math.max(this.f64.length * 2, this.top + size))
      b = this.top
      this.top += size
    }
    this.u32[2 * b + 3] = k
    this.used += size
    this.blocks++
    return b
  }

  private resize (doubles: number): void {
    const f64 = new Float64Array(new ArrayBuffer(doubles * 8))
    f64.set(this.f64.subarray(0, this.top))
    this.f64 = f64
    this.u32 = new Uint32Array(f64.buffer)
  }

  // --- header fields ---------------------------------------------------------------

  /** Columns in use (column indexes 0 .. inUse - 1). */
  inUse (b: number): number {
    return this.u32[2 * b + 2]
  }

  /**
   * Replicas given a column since the block was created: columns in use plus those
   * given back by replicas whose counts all expired (how many wrote the key lately).
   */
  columns (b: number): number {
    return this.u32[2 * b + 6]
  }

  headPos (b: number): number {
    return this.u32[2 * b + 4]
  }

  setHeadPos (b: number, p: number): void {
    this.u32[2 * b + 4] = p
  }

  ahead (b: number): number {
    return this.f64[b]
  }

  addAhead (b: number, v: number): void {
    this.f64[b] += v
  }

  /** Whether every position of the block is empty (ahead included). */
  empty (b: number): boolean {
    return this.u32[2 * b + 5] === 0
  }

  /** Total of ring position `p`. */
  tot (b: number, p: number): number {
    return this.f64[this.row(b, p) - 1]
  }

  /** Offset (in doubles) of column 0's count at ring position `p` (its total is just before). */
  row (b: number, p: number): number {
    const k = this.u32[2 * b + 3]
    return b + this.rowsOff[k] + p * ((1 << k) + 1) + 1
  }

  /** Word of the index bucket where the lookup of replica `rep` in block `b` starts: column + 1, or 0. */
  firstBucket (b: number, rep: number): number {
    const k = this.u32[2 * b + 3]
    return this.u32[2 * (b + HEADER) + 2 * (Math.imul(rep, GOLDEN) >>> (31 - k)) + 1]
  }

  /** The replica of column `c`. */
  repAt (b: number, c: number): number {
    return this.u32[2 * (b + HEADER) + (4 << this.u32[2 * b + 3]) + c]
  }

  // --- columns -----------------------------------------------------------------------

  /** Column of replica `rep` in block `b`, or -1. */
  find (b: number, rep: number): number {
    const u = this.u32
    const k = u[2 * b + 3]
    const index = 2 * (b + HEADER)
    const mask = (2 << k) - 1
    let s = Math.imul(rep, GOLDEN) >>> (31 - k)
    for (;;) {
      const v = u[index + 2 * s + 1]
      if (v === 0) return -1
      if (u[index + 2 * s] === rep) return v - 1
      s = (s + 1) & mask
    }
  }

  /**
   * Adds a column for replica `rep` (not yet in the block). A full block first gives
   * back the columns of replicas without counts (when that frees a quarter of it), else
   * moves to a block with twice the room. Returns the block's offset, which may have
   * changed; the new column is the last one (inUse() - 1). Other columns keep their
   * order but may move down.
   */
  addColumn (b: number, rep: number): number {
    let n = this.u32[2 * b + 2]
    const k = this.u32[2 * b + 3]
    if (n === 1 << k) {
      n = this.reclaim(b, k, n)
      if (n === 1 << k) {
        if (k === MAX_K) throw new RangeError(`a key cannot take more than ${1 << MAX_K} replicas`)
        b = this.regrow(b, k)
      }
    }
    const kk = this.u32[2 * b + 3]
    const index = 2 * (b + HEADER)
    this.u32[index + (4 << kk) + n] = rep
    this.u32[2 * b + 2] = n + 1
    this.u32[2 * b + 6]++
    this.insert(index, kk, rep, n)
    return b
  }

  /**
   * Drops the columns of block `b` (n in use, room 2^k) whose every count is 0, when at
   * least a quarter of them are (fewer would make the next writers scan again soon);
   * live columns move down in order, the index is rebuilt. Returns the columns in use.
   */
  private reclaim (b: number, k: number, n: number): number {
    const f = this.f64
    const u = this.u32
    const R = this.ring
    const w = (1 << k) + 1
    const rows = b + this.rowsOff[k]
    // Columns with a count somewhere in the ring; rows whose total is 0 are all zero.
    if (this.marks.length < n) this.marks = new Uint8Array(n)
    const live = this.marks
    live.fill(0, 0, n)
    let alive = 0
    // Short rings know their empty positions from the header: those rows are not read.
    const m = R <= 32 ? u[2 * b + 7] : -1
    for (let p = 0; p < R && alive < n; p++) {
      const row = rows + p * w
      if (((m >>> p) & 1) === 0 || f[row] === 0) continue
      for (let c = 0; c < n; c++) {
        if (live[c] === 0 && f[row + 1 + c] !== 0) {
          live[c] = 1
          alive++
        }
      }
    }
    if (n - alive < Math.max(1, n >> 2)) return n
    for (let p = 0; p < R; p++) {
      const row = rows + p * w + 1
      if (((m >>> p) & 1) === 0 || f[row - 1] === 0) continue
      let to = 0
      for (let c = 0; c < n; c++) if (live[c] === 1) f[row + to++] = f[row + c]
      for (let c = to; c < n; c++) f[row + c] = 0
    }
    const index = 2 * (b + HEADER)
    const reps = index + (4 << k)
    u.fill(0, index, reps)
    let to = 0
    for (let c = 0; c < n; c++) {
      if (live[c] === 0) continue
      const rep = u[reps + c]
      u[reps + to] = rep
      this.insert(index, k, rep, to)
      to++
    }
    u.fill(0, reps + to, reps + n)
    u[2 * b + 2] = to
    return to
  }

  private insert (index: number, k: number, rep: number, col: number): void {
    const u = this.u32
    const mask = (2 << k) - 1
    let s = Math.imul(rep, GOLDEN) >>> (31 - k)
    while (u[index + 2 * s + 1] !== 0) s = (s + 1) & mask
    u[index + 2 * s] = rep
    u[index + 2 * s + 1] = col + 1
  }

  /** Moves block `b` (room for 2^k columns, all in use) to a block with room for 2^(k+1). */
  private regrow (b: number, k: number): number {
    const nb = this.alloc(k + 1)
    // alloc may have resized the arena: read the views after it.
    const f = this.f64
    const u = this.u32
    const R = this.ring
    const n = 1 << k
    f[nb] = f[b]
    u[2 * nb + 2] = u[2 * b + 2]
    u[2 * nb + 4] = u[2 * b + 4]
    u[2 * nb + 5] = u[2 * b + 5]
    u[2 * nb + 7] = u[2 * b + 7]
    u[2 * nb + 6] = u[2 * b + 6]
    // Rows of 1 + n doubles (total and counts) become rows of 1 + 2n; empty rows are zero in both.
    const from = b + this.rowsOff[k]
    const to = nb + this.rowsOff[k + 1]
    const m = R <= 32 ? u[2 * b + 7] : -1
    for (let p = 0; p < R; p++) {
      const src = from + p * (n + 1)
      if (((m >>> p) & 1) === 0 || f[src] === 0) continue
      const dst = to + p * (2 * n + 1)
      for (let c = 0; c <= n; c++) {
        f[dst + c] = f[src + c]
        f[src + c] = 0
      }
    }
    // Its rows are zero now: release() only clears the header, index and replicas.
    u[2 * b + 5] = 0
    const oldReps = 2 * (b + HEADER) + (4 << k)
    const index = 2 * (nb + HEADER)
    const reps = index + (4 << (k + 1))
    for (let c = 0; c < n; c++) {
      const rep = u[oldReps + c]
      u[reps + c] = rep
      this.insert(index, k + 1, rep, c)
    }
    this.release(b)
    return nb
  }

  // --- counts ------------------------------------------------------------------------

  /**
   * Raises the count at (position `p`, column `c`) to `count` when that is larger;
   * returns how much it rose (<= 0: unchanged).
   */
  raise (b: number, p: number, c: number, count: number): number {
    const row = this.row(b, p)
    const delta = count - this.f64[row + c]
    if (delta <= 0) return delta
    this.f64[row + c] = count
    const t = row - 1
    if (this.f64[t] === 0) {
      this.u32[2 * b + 5]++
      if (this.ring <= 32) this.u32[2 * b + 7] |= 1 << p
    }
    this.f64[t] += delta
    return delta
  }

  /** Empties ring position `p` (a slot leaving the ring); returns its total. */
  expire (b: number, p: number): number {
    // The header says which positions hold counts: an empty row is not read (a key idle
    // for a while advances over many positions at once, most of them empty).
    if (this.ring <= 32) {
      const m = this.u32[2 * b + 7]
      if (((m >>> p) & 1) === 0) return 0
      this.u32[2 * b + 7] = m & ~(1 << p)
    }
    const row = this.row(b, p)
    const t = this.f64[row - 1]
    if (t === 0) return 0
    this.u32[2 * b + 5]--
    const end = row + this.u32[2 * b + 2]
    // A loop beats fill()'s call overhead on the short rows of most keys.
    if (end - row < 32) for (let j = row - 1; j < end; j++) this.f64[j] = 0
    else this.f64.fill(0, row - 1, end)
    return t
  }

  // --- memory ------------------------------------------------------------------------

  /** Bytes of the arena. */
  get bytes (): number {
    return this.f64.byteLength
  }

  /** Live blocks. */
  get size (): number {
    return this.blocks
  }

  /** Whether the arena is mostly free blocks: compact() would give back at least 3/4 of it. */
  get wasteful (): boolean {
    return this.f64.length > COMPACT_FROM && this.used * 4 < this.f64.length
  }

  /**
   * Moves every live block into a fresh arena about twice the size of what is in use.
   * `forEach` must call `visit` once with the offset of every live block and store the
   * offset it returns (the block's new place).
   */
  compact (forEach: (visit: (b: number) => number) => void): void {
    const oldF = this.f64
    const oldU = this.u32
    let doubles = MIN_DOUBLES
    while (doubles < this.used * 2) doubles *= 2
    const f = new Float64Array(new ArrayBuffer(doubles * 8))
    let top = 0
    forEach(b => {
      const size = this.sizeOf(oldU[2 * b + 3])
      f.set(oldF.subarray(b, b + size), top)
      top += size
      return top - size
    })
    this.f64 = f
    this.u32 = new Uint32Array(f.buffer)
    this.top = top
    for (const list of this.free) list.length = 0
  }

  /** Forgets every block. */
  clear (): void {
    this.f64.fill(0, 0, this.top)
    this.top = 0
    this.used = 0
    this.blocks = 0
    for (const list of this.free) list.length = 0
  }
}
