import { hashString } from './hash.js'
import { RemoteColumns } from './remote-columns.js'

/**
 * Windowed G-Counters for many keys.
 *
 * Per key, usage is a ring of time slots keyed by absolute slot epoch
 * (`floor(timeMs / slotMs)`). Each slot is a G-Counter over replicas: the local
 * replica's count lives in the key's record, other replicas' counts in per-key columns
 * that exist only once a peer wrote to the key. Slots are never reset in place: a
 * slot's counts are dropped only when its epoch leaves the retained range, so a count
 * still inside the window is never lost. Remote values merge by max, so duplicated,
 * reordered or re-sent entries are harmless.
 *
 * The ring retains `pastSlots` epochs up to the key's head (the epoch it was last
 * aligned to) plus `futureSlots` epochs ahead of it, which hold entries from peers
 * whose clocks run slightly ahead. Running totals make estimates O(1).
 *
 * Layout: every key is one fixed-size record in a single ArrayBuffer (read through a
 * Float64 and a Uint32 view), so a check touches one or two cache lines of store state:
 *
 *   f64[d+0] head epoch     f64[d+1] sum over retained slots and replicas
 *   f64[d+2] wire hash
 *   with `carryPerSlot` only: f64[d+3] carried level, f64[d+4] aux cache (see below)
 *   u32[rem] with REMOTE, offset of the key's block in the arena of remote columns
 *            (next to the header and meta, so a merged entry touches few cache lines);
 *            without, how many columns its last block had (the next one's size)
 *   replicated only, ten words below meta for local shares (S_* offsets): replicas
 *                    seen writing the key lately; own units in the retained slots (this
 *                    replica's part of sum); own demand (every unit asked for) in this
 *                    slot and in history; own and peers' admissions in this slot, the
 *                    previous one and history. Peers' admissions are credited to the
 *                    slot their epoch names (gossip arrives late), and at every
 *                    boundary history = history / 2 + previous, previous = current, so
 *                    history covers slots at least two old, whose gossip has arrived,
 *                    for this node and its peers alike, and survives the slot drops of
 *                    short rings
 *   u32[meta] bits 0-7 head position in the local ring, 8 USED, 9 REMOTE, 10 DIRTY,
 *             16-23 head - (oldest epoch changed since the last drain),
 *             24-31 head - (newest epoch with a count at or before the head; 255: none)
 *   u32[meta+1 ...] the local replica's count per slot, a ring of pastSlots
 *
 * The local replica only ever counts into the head slot, so its ring holds no slots
 * ahead of the head. Data only peers write (their columns, including slots ahead of
 * the head) lives in a block per key in the store's arena of remote columns
 * (crdt/remote-columns.ts), with a ring of pastSlots + futureSlots, so a key only this
 * node touches stays one small record. In both rings an epoch sits at position
 * `epoch mod size`; the head's position is cached so the hot path never takes a
 * floating-point modulo.
 *
 * No I/O, no timers: callers pass epochs.
 */
export interface WindowStoreInit {
  /** Width of one slot, in milliseconds. */
  slotMs: number
  /** Epochs at or before the head kept for estimates (k + 1 for a k-slot sliding window). */
  pastSlots: number
  /**
   * Epochs after the head kept for peers whose clocks run ahead.
   * @default 1
   */
  futureSlots?: number
  /** Most keys held at once; beyond it the least recently touched of a sample is evicted. */
  maxKeys: number
  /**
   * Seed of the key hash; every node of a mesh must use the same one.
   * @default 0
   */
  hashSeed?: number
  /**
   * Whether keys need a wire hash and a hash index (false for node-scoped limits that
   * are never gossiped).
   * @default true
   */
  replicated?: boolean
  /**
   * Seed of the sampler that picks eviction candidates.
   * @default 1
   */
  samplerSeed?: number
  /**
   * Keys allocated up front.
   * @default 1024
   */
  initialCapacity?: number
  /**
   * Keeps a second dirty list for region aggregates: keys whose region total (this
   * replica and its same-region peers, every replica but those in aggregateReps) changed
   * since the last drainAggregates (global limits of multi-region meshes).
   * @default false
   */
  aggregated?: boolean
  /**
   * Keeps, per key, a level carried out of the slots that leave the ring: whenever a
   * slot is dropped, carried = max(0, carried - carryPerSlot) + slot total. This is a
   * leaky bucket draining carryPerSlot per slot, so history older than the ring still
   * weighs on the key (the token bucket needs it: a busy bucket never forgets). Also
   * enables a per-key cache `aux`, invalidated whenever the ring moves or a past slot
   * changes. Undefined: no carry and no cache.
   */
  carryPerSlot?: number
}

/** Outcome of merging one remote entry. */
export const enum MergeResult {
  /** The entry raised a count. */
  Applied = 0,
  /** The entry was not larger than what the store holds (duplicate or old). */
  Unchanged = 1,
  /** The entry's epoch already left the window. */
  Stale = 2,
  /** The entry's epoch is further ahead than `futureSlots`. */
  TooFarAhead = 3
}

/** Counts of what the store did, for metrics. */
export interface WindowStoreStats {
  keys: number
  capacity: number
  evictions: number
  expired: number
  droppedAhead: number
  /** Bytes of the record buffer and hash table. */
  bytes: number
  /** Bytes of the arena of other replicas' columns. */
  remoteBytes: number
  /** Keys holding a block of other replicas' columns. */
  remoteBlocks: number
}

const EVICTION_SAMPLE = 8
const SWEEP_ON_FULL = 32
const NO_INDEX = -1
const F_HEAD = 0
const F_SUM = 1
const F_HASH = 2
const F_CARRY = 3
const F_AUX = 4
const POS_MASK = 0xff
const USED = 0x100
const REMOTE = 0x200
const DIRTY = 0x400
/** The key's region total changed since the last aggregate drain (aggregated stores only). */
const AGG_DIRTY = 0x800
const DIRTY_SHIFT = 16
const DIRTY_MASK = 0xff << DIRTY_SHIFT
/** Largest head - dirty-from offset kept; older dirty slots have left any ring anyway. */
const MAX_DIRTY_OFFSET = 255
const NEWEST_SHIFT = 24
const LOW_24 = 0xffffff
/** The newest-offset value meaning "no count at or before the head". */
const NO_NEWEST = 255
// Local-share words of replicated records, as offsets below the meta word.
const S_WRITERS = 10
const S_OWN_SUM = 9
const S_DEMAND_CUR = 8
const S_DEMAND_HIST = 7
const S_OWN_CUR = 6
const S_OWN_PREV = 5
const S_OWN_HIST = 4
const S_PEERS_CUR = 3
const S_PEERS_PREV = 2
const S_PEERS_HIST = 1
const SHARE_WORDS = 10

/** Steps small enough to move ring positions with int32 arithmetic. */
const SMALL_STEPS = 0x40000000

/** Ring position of an epoch (epochs before 0 appear when a virtual clock starts at 0). */
function mod (e: number, r: number): number {
  const p = e % r
  return p < 0 ? p + r : p
}

/** Buckets of the previous wire-hash table moved into the current one per insert. */
const MOVE_PER_INSERT = 8

/** Hash table slots for a capacity: a power of two at least twice as large (load <= 1/2). */
function tableSize (capacity: number): number {
  let n = 16
  while (n < capacity * 2) n *= 2
  return n
}

export class WindowStore {
  readonly slotMs: number
  readonly pastSlots: number
  readonly futureSlots: number
  /** Length of the remote ring: pastSlots + futureSlots (the local ring is pastSlots). */
  readonly ring: number
  readonly maxKeys: number
  readonly hashSeed: number
  readonly replicated: boolean

  /** Drain per slot of the carried level (0 without a carry). */
  private readonly carryPerSlot: number
  /** Doubles per record header (3, or 5 with a carry). */
  private readonly header: number
  /** Record size in 32-bit words (even, so every record's doubles stay aligned). */
  private readonly stride: number
  /** Word offset of the meta word inside a record. */
  private readonly metaAt: number
  /** Word offset of the remote block's offset inside a record. */
  private readonly remAt: number
  private f64: Float64Array
  private u32: Uint32Array
  private readonly remote: RemoteColumns
  private keyOf: Array<string | undefined>
  /** What warm() read, kept so the compiler cannot drop the reads. */
  private warmed = 0
  private readonly byKey = new Map<string, number>()
  /** Open-addressing index from wire hash to record index + 1 (0 = empty), linear probing. */
  private table: Int32Array
  private mask: number
  /**
   * The table before the last growth, while its entries move into `table` a few buckets
   * per insert (a whole rebuild at a million keys stalled one call for about 50 ms).
   * Lookups try `table`, then `old`; a removal leaves a tombstone (-1) here, never
   * shifts, so the moving cursor misses nothing.
   */
  private old: Int32Array | undefined
  private oldMask = -1
  /** Next bucket of `old` to move. */
  private moved = 0
  private readonly free: number[] = []
  private capacity: number
  private top = 0
  private live = 0
  private dirty: number[] = []
  private aggDirty: number[] = []
  readonly aggregated: boolean
  /** Replicas that stand for whole regions (their counts are not part of this region's total). */
  readonly aggregateReps = new Set<number>()
  private pendingEvicted: number[] = []
  private sweepCursor = 0
  private rng: number
  private evictions = 0
  private expired = 0
  private droppedAhead = 0

  constructor (init: WindowStoreInit) {
    if (!(init.slotMs > 0)) throw new RangeError(`slotMs must be > 0, got ${init.slotMs}`)
    if (!Number.isInteger(init.pastSlots) || init.pastSlots < 1) throw new RangeError(`pastSlots must be an integer >= 1, got ${init.pastSlots}`)
    const futureSlots = init.futureSlots ?? 1
    if (!Number.isInteger(futureSlots) || futureSlots < 0) throw new RangeError(`futureSlots must be an integer >= 0, got ${futureSlots}`)
    if (init.pastSlots + futureSlots > 255) throw new RangeError(`pastSlots + futureSlots must be <= 255, got ${init.pastSlots + futureSlots}`)
    if (!Number.isInteger(init.maxKeys) || init.maxKeys < 1) throw new RangeError(`maxKeys must be an integer >= 1, got ${init.maxKeys}`)
    this.slotMs = init.slotMs
    this.pastSlots = init.pastSlots
    this.futureSlots = futureSlots
    this.ring = init.pastSlots + futureSlots
    this.maxKeys = init.maxKeys
    this.hashSeed = init.hashSeed ?? 0
    this.replicated = init.replicated ?? true
    this.rng = (init.samplerSeed ?? 1) | 0 || 1
    this.aggregated = init.aggregated ?? false
    if (init.carryPerSlot !== undefined && !(init.carryPerSlot >= 0)) throw new RangeError(`carryPerSlot must be >= 0, got ${init.carryPerSlot}`)
    this.carryPerSlot = init.carryPerSlot ?? 0
    this.header = init.carryPerSlot === undefined ? 3 : 5
    // Replicated records keep the local-share words (see the layout above) before meta.
    this.remAt = this.header * 2
    this.metaAt = this.remAt + 1 + (this.replicated ? SHARE_WORDS : 0)
    const words = this.metaAt + 1 + this.pastSlots
    this.stride = words + (words & 1)
    const cap = Math.max(16, Math.min(init.initialCapacity ?? 1024, init.maxKeys))
    this.capacity = cap
    const buf = new ArrayBuffer(cap * this.stride * 4)
    this.f64 = new Float64Array(buf)
    this.u32 = new Uint32Array(buf)
    this.remote = new RemoteColumns(this.ring)
    this.keyOf = new Array(cap).fill(undefined)
    this.table = new Int32Array(this.replicated ? tableSize(cap) : 0)
    this.mask = this.table.length - 1
  }

  /** The slot epoch containing `timeMs`. */
  epochOf (timeMs: number): number {
    return Math.floor(timeMs / this.slotMs)
  }

  get size (): number {
    return this.live
  }

  stats (): WindowStoreStats {
    return {
      keys: this.live,
      capacity: this.capacity,
      evictions: this.evictions,
      expired: this.expired,
      droppedAhead: this.droppedAhead,
      bytes: this.f64.byteLength + this.table.byteLength + (this.old?.byteLength ?? 0),
      remoteBytes: this.remote.bytes,
      remoteBlocks: this.remote.size
    }
  }

  // --- record fields -------------------------------------------------------------

  /** Epoch key `i`'s ring is aligned to (where it was last touched). */
  headOf (i: number): number {
    return this.f64[i * (this.stride >> 1)]
  }

  /** Total over every retained slot and replica of key `i`. */
  sumOf (i: number): number {
    return this.f64[i * (this.stride >> 1) + F_SUM]
  }

  /** Total of key `i`'s slots after its head (peers whose clocks run ahead). */
  aheadOf (i: number): number {
    return (this.u32[i * this.stride + this.metaAt] & REMOTE) === 0 ? 0 : this.remote.ahead(this.u32[i * this.stride + this.remAt])
  }

  /** Wire hash of key `i` (0 when the store is not replicated). */
  hashOf (i: number): number {
    return this.f64[i * (this.stride >> 1) + F_HASH]
  }

  /** Level carried out of key `i`'s dropped slots, as of the start of its oldest retained slot. */
  carriedOf (i: number): number {
    return this.header === 5 ? this.f64[i * (this.stride >> 1) + F_CARRY] : 0
  }

  /** The algorithm cache of key `i` (NaN once invalidated); only with a carry. */
  auxOf (i: number): number {
    return this.f64[i * (this.stride >> 1) + F_AUX]
  }

  setAux (i: number, v: number): void {
    this.f64[i * (this.stride >> 1) + F_AUX] = v
  }

  /** Local-ring position of `epoch` in (head - pastSlots, head], from the head's. */
  private ownPos (i: number, epoch: number): number {
    const p = (this.u32[i * this.stride + this.metaAt] & POS_MASK) + (epoch - this.f64[i * (this.stride >> 1)])
    return p < 0 ? p + this.pastSlots : p
  }

  /** Remote-ring position in block `b` of `epoch` in (head - pastSlots, head + futureSlots]. */
  private rpos (b: number, i: number, epoch: number): number {
    const p = this.remote.headPos(b) + (epoch - this.f64[i * (this.stride >> 1)])
    return p >= this.ring ? p - this.ring : p < 0 ? p + this.ring : p
  }

  private invalidateAux (d: number): void {
    if (this.header === 5) this.f64[d + F_AUX] = NaN
  }

  /** The local replica's units in key `i`'s retained slots: its part of sumOf (0 when not replicated). */
  ownSumOf (i: number): number {
    return this.replicated ? this.u32[i * this.stride + this.metaAt - S_OWN_SUM] : 0
  }

  /** The local replica's demand on key `i`: every unit asked for, admitted or not, in completed slots (decayed) and this one. */
  demandOf (i: number): number {
    const meta = i * this.stride + this.metaAt
    return this.replicated ? this.u32[meta - S_DEMAND_HIST] + this.u32[meta - S_DEMAND_CUR] : 0
  }

  /** The local replica's admissions on key `i` in slots at least two old (decayed). */
  ownRecentOf (i: number): number {
    return this.replicated ? this.u32[i * this.stride + this.metaAt - S_OWN_HIST] : 0
  }

  /** Other replicas' admissions on key `i` in slots at least two old, as merged here (decayed). */
  peersRecentOf (i: number): number {
    return this.replicated ? this.u32[i * this.stride + this.metaAt - S_PEERS_HIST] : 0
  }

  /**
   * Replicas seen writing key `i` lately, this one included (at least 1). Remembered
   * across slot drops (a fixed window's boundary empties the columns, not the memory of
   * who writes) and forgotten once the peers' admission history has faded.
   */
  writersOf (i: number): number {
    const meta = i * this.stride + this.metaAt
    const cols = (this.u32[meta] & REMOTE) !== 0 ? this.remote.columns(this.u32[i * this.stride + this.remAt]) : 0
    return Math.max(1, this.replicated ? this.u32[meta - S_WRITERS] : 0, cols + 1)
  }

  /** Records `cost` units asked for on key `i` (whether or not they are admitted). */
  noteDemand (i: number, cost: number): void {
    if (this.replicated) this.bump(i * this.stride + this.metaAt - S_DEMAND_CUR, cost)
  }

  /** Whether key `i`'s decayed demand and admission counters are not all zero. */
  private hasHistory (i: number): boolean {
    if (!this.replicated) return false
    const meta = i * this.stride + this.metaAt
    let any = 0
    for (let f = meta - S_DEMAND_CUR; f < meta; f++) any |= this.u32[f]
    return any !== 0
  }

  /** Adds to a saturating u32 field. */
  private bump (at: number, by: number): void {
    const v = this.u32[at] + by
    this.u32[at] = v > 0xffffffff ? 0xffffffff : v
  }

  /**
   * Newest epoch at or before the head in which key `i` has a count (any replica), or
   * NaN when none is left. Slots ahead of the head are not considered (see aheadOf).
   */
  newestEpoch (i: number): number {
    const off = this.u32[i * this.stride + this.metaAt] >>> NEWEST_SHIFT
    return off >= this.pastSlots ? NaN : this.headOf(i) - off
  }

  /** Records a count at `epoch`, `offset` = head - epoch >= 0. */
  private touchNewest (meta: number, offset: number): void {
    const m = this.u32[meta]
    if (offset < m >>> NEWEST_SHIFT) this.u32[meta] = (m & LOW_24) | (offset << NEWEST_SHIFT)
  }

  /** Oldest epoch of key `i` changed since the last drain, or NaN when clean. */
  private dirtyFrom (i: number): number {
    const meta = this.u32[i * this.stride + this.metaAt]
    return (meta & DIRTY) === 0 ? NaN : this.headOf(i) - ((meta & DIRTY_MASK) >>> DIRTY_SHIFT)
  }

  /** Records that key `i`'s own count changed at `epoch` (no newer than the head). */
  private markDirty (i: number, epoch: number): void {
    const at = i * this.stride + this.metaAt
    const meta = this.u32[at]
    const off = Math.min(MAX_DIRTY_OFFSET, this.headOf(i) - epoch)
    if ((meta & DIRTY) === 0) {
      this.u32[at] = (meta & ~DIRTY_MASK) | DIRTY | (off << DIRTY_SHIFT)
      this.dirty.push(i)
    } else if (off > (meta & DIRTY_MASK) >>> DIRTY_SHIFT) {
      this.u32[at] = (meta & ~DIRTY_MASK) | (off << DIRTY_SHIFT)
    }
  }

  private markClean (i: number): void {
    this.u32[i * this.stride + this.metaAt] &= ~(DIRTY | DIRTY_MASK)
  }

  // --- keys ----------------------------------------------------------------------

  /** Index of an existing key, or -1. */
  find (key: string): number {
    return this.byKey.get(key) ?? NO_INDEX
  }

  /**
   * Index of `key`, creating it (aligned to `epoch`) when absent. May evict the least
   * recently touched of a sample when the store is full.
   */
  acquire (key: string, epoch: number): number {
    const i = this.byKey.get(key)
    return i === undefined ? this.attach(key, epoch) : i
  }

  /** Index of the key with wire hash `h`, creating a nameless entry when absent. */
  acquireHash (h: number, epoch: number): number {
    // A store that is never gossiped has no hash index to insert into.
    if (!this.replicated) throw new RangeError('acquireHash on a store that is not replicated')
    const i = this.findHash(h)
    if (i !== NO_INDEX) return i
    const j = this.allocate(epoch)
    this.f64[j * (this.stride >> 1) + F_HASH] = h
    this.tableInsert(h, j)
    return j
  }

  /** Index of the key with wire hash `h`, or -1. */
  findHash (h: number): number {
    const t = this.table
    const m = this.mask
    if (m < 0) return NO_INDEX
    let b = (h >>> 0) & m
    for (;;) {
      const v = t[b]
      if (v === 0) return this.old === undefined ? NO_INDEX : this.probeOld(this.old, this.oldMask, h)
      if (this.hashOf(v - 1) === h) return v - 1
      b = (b + 1) & m
    }
  }

  /** Index of hash `h` in the previous table (tombstones, -1, are stepped over), or -1. */
  private probeOld (t: Int32Array, m: number, h: number): number {
    let b = (h >>> 0) & m
    for (;;) {
      const v = t[b]
      if (v === 0) return NO_INDEX
      if (v > 0 && this.hashOf(v - 1) === h) return v - 1
      b = (b + 1) & m
    }
  }

  /** The key string of index `i` (undefined for entries only known by hash). */
  keyAt (i: number): string | undefined {
    return this.keyOf[i]
  }

  /** Wire hash of a key string under this store's seed. */
  hashKey (key: string): number {
    return hashString(key, this.hashSeed)
  }

  private tableInsert (h: number, i: number): void {
    this.put(h, i)
    if (this.old !== undefined) this.moveOld(MOVE_PER_INSERT)
  }

  private put (h: number, i: number): void {
    const t = this.table
    const m = this.mask
    let b = (h >>> 0) & m
    while (t[b] !== 0) b = (b + 1) & m
    t[b] = i + 1
  }

  /**
   * Moves the entries of up to `buckets` buckets of the previous table into the current
   * one, and drops it when done. The previous table has at most 4 buckets per record
   * of its capacity and the store inserts as many records as that capacity before it
   * grows again, so MOVE_PER_INSERT (8) finishes well before the next growth.
   */
  private moveOld (buckets: number): void {
    const o = this.old as Int32Array
    const end = Math.min(o.length, this.moved + buckets)
    for (let b = this.moved; b < end; b++) {
      const v = o[b]
      if (v > 0) this.put(this.hashOf(v - 1), v - 1)
    }
    this.moved = end
    if (end === o.length) {
      this.old = undefined
      this.oldMask = -1
    }
  }

  /**
   * Removes index `i` from the table, shifting later probes back (no tombstones), and
   * from the previous table while one is being moved (a tombstone there).
   */
  private tableDelete (i: number): void {
    const o = this.old
    if (o !== undefined) {
      const om = this.oldMask
      let ob = (this.hashOf(i) >>> 0) & om
      while (o[ob] !== 0) {
        if (o[ob] === i + 1) {
          o[ob] = -1
          break
        }
        ob = (ob + 1) & om
      }
    }
    const t = this.table
    const m = this.mask
    let b = (this.hashOf(i) >>> 0) & m
    while (t[b] !== i + 1) {
      if (t[b] === 0) return
      b = (b + 1) & m
    }
    let j = b
    for (;;) {
      j = (j + 1) & m
      const v = t[j]
      if (v === 0) break
      const ideal = (this.hashOf(v - 1) >>> 0) & m
      // Move v back into the hole unless its ideal bucket lies cyclically in (b, j].
      const inRange = b <= j ? (ideal > b && ideal <= j) : (ideal > b || ideal <= j)
      if (!inRange) {
        t[b] = v
        b = j
      }
    }
    t[b] = 0
  }

  private attach (key: string, epoch: number): number {
    if (this.replicated) {
      const h = hashString(key, this.hashSeed)
      const existing = this.findHash(h)
      if (existing !== NO_INDEX) {
        // A peer wrote this key before we saw it locally (or, with odds of 2^-53, another
        // key shares the hash and the two share a counter, which only errs towards denying).
        if (this.keyOf[existing] === undefined) {
          this.keyOf[existing] = key
          this.byKey.set(key, existing)
        }
        return existing
      }
      const i = this.allocate(epoch)
      this.f64[i * (this.stride >> 1) + F_HASH] = h
      this.tableInsert(h, i)
      this.keyOf[i] = key
      this.byKey.set(key, i)
      return i
    }
    const i = this.allocate(epoch)
    this.keyOf[i] = key
    this.byKey.set(key, i)
    return i
  }

  private allocate (epoch: number): number {
    if (this.live >= this.maxKeys) this.makeRoom(epoch)
    let i = this.free.pop()
    if (i === undefined) {
      if (this.top === this.capacity) this.grow()
      i = this.top++
      // keyOf grows with the records in use, one slot at a time, not by a capacity's worth in grow().
      if (i === this.keyOf.length) this.keyOf.push(undefined)
    }
    this.live++
    const d = i * (this.stride >> 1)
    // Records are zeroed on release, and fresh buffer space is zero.
    this.f64[d + F_HEAD] = epoch
    this.invalidateAux(d)
    this.u32[i * this.stride + this.metaAt] = USED | mod(epoch, this.pastSlots) | (NO_NEWEST << NEWEST_SHIFT)
    return i
  }

  private grow (): void {
    // Only called when every record is live and live < maxKeys, so next > capacity.
    const next = Math.min(this.capacity * 2, this.maxKeys)
    const buf = new ArrayBuffer(next * this.stride * 4)
    const f64 = new Float64Array(buf)
    f64.set(this.f64)
    this.f64 = f64
    this.u32 = new Uint32Array(buf)
    this.capacity = next
    if (this.replicated && tableSize(next) > this.table.length) {
      // A move still under way ends first (MOVE_PER_INSERT per insert makes that a guard only).
      if (this.old !== undefined) this.moveOld(this.old.length)
      this.old = this.table
      this.oldMask = this.mask
      this.moved = 0
      this.table = new Int32Array(tableSize(next))
      this.mask = this.table.length - 1
    }
  }

  private isUsed (i: number): boolean {
    return (this.u32[i * this.stride + this.metaAt] & USED) !== 0
  }

  private makeRoom (epoch: number): void {
    if (this.sweep(epoch, SWEEP_ON_FULL) > 0) return
    // The head epoch is where a key was last touched (locally or by a peer).
    let victim = NO_INDEX
    let oldest = Infinity
    for (let n = 0; n < EVICTION_SAMPLE; n++) {
      const j = this.sample()
      if (this.isUsed(j) && this.headOf(j) < oldest) {
        oldest = this.headOf(j)
        victim = j
      }
    }
    if (victim === NO_INDEX) {
      for (let j = 0; j < this.top; j++) {
        if (this.isUsed(j)) { victim = j; break }
      }
    }
    this.release(victim)
    this.evictions++
  }

  private sample (): number {
    // xorshift32: deterministic for a given seed, no Math.random on any path.
    let x = this.rng
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.rng = x
    return (x >>> 0) % this.top
  }

  /** Frees a key; its undrained own counts are kept for the next drain so none is lost. */
  private release (i: number): void {
    const from = this.dirtyFrom(i)
    if (from === from) this.emitOwn(i, from, this.pendingEvicted)
    const key = this.keyOf[i]
    if (key !== undefined) this.byKey.delete(key)
    if (this.replicated) this.tableDelete(i)
    this.keyOf[i] = undefined
    if ((this.u32[i * this.stride + this.metaAt] & REMOTE) !== 0) this.remote.release(this.u32[i * this.stride + this.remAt])
    this.u32.fill(0, i * this.stride, (i + 1) * this.stride)
    this.free.push(i)
    this.live--
  }

  // --- counts --------------------------------------------------------------------

  /**
   * Aligns key `i` to `epoch` (no-op when it is not newer than the head), dropping the
   * slots that leave the retained range.
   */
  advance (i: number, epoch: number): void {
    const d = i * (this.stride >> 1)
    const h = this.f64[d + F_HEAD]
    if (epoch <= h) return
    const P = this.pastSlots
    const meta = i * this.stride + this.metaAt
    const own = meta + 1
    const steps = epoch - h
    const first = h - P + 1
    if (this.header === 5) this.fold(i, d, first, steps)
    // Own counts not drained yet must still reach peers (a fixed window's boundary drops
    // its only slot; peers whose clocks run behind still count it): keep them for the
    // next drain, as eviction does.
    if ((this.u32[meta] & DIRTY) !== 0) this.keepDirty(i, meta, Math.max(first, this.dirtyFrom(i)), Math.min(h, epoch - P))
    let s = this.f64[d + F_SUM]
    let dropped = 0
    if (steps >= P) {
      for (let p = 0; p < P; p++) {
        dropped += this.u32[own + p]
        this.u32[own + p] = 0
      }
    } else {
      let p = this.ownPos(i, first)
      for (let j = 0; j < steps; j++, p = p + 1 === P ? 0 : p + 1) {
        dropped += this.u32[own + p]
        this.u32[own + p] = 0
      }
    }
    s -= dropped
    if (this.replicated) this.u32[meta - S_OWN_SUM] -= dropped
    let passed = NO_NEWEST
    if ((this.u32[meta] & REMOTE) !== 0) {
      const rc = this.remote
      const b = this.u32[i * this.stride + this.remAt]
      const R = this.ring
      // Slots (h, epoch] stop being ahead of the head.
      if (rc.ahead(b) !== 0) {
        for (let e = h + 1; e <= epoch && e <= h + this.futureSlots; e++) {
          const t = rc.tot(b, this.rpos(b, i, e))
          rc.addAhead(b, -t)
          // A peer's slot the head reached is now the newest with a count, not "none".
          if (t !== 0) passed = epoch - e
        }
      }
      const n = steps < R ? steps : R
      let q = this.rpos(b, i, first)
      for (let j = 0; j < n && !rc.empty(b); j++, q = q + 1 === R ? 0 : q + 1) s -= rc.expire(b, q)
      if (rc.empty(b)) this.dropRemote(i)
      else rc.setHeadPos(b, steps < SMALL_STEPS ? (rc.headPos(b) + (steps | 0) % R) % R : mod(epoch, R))
    }
    this.f64[d + F_SUM] = s
    this.f64[d + F_HEAD] = epoch
    if (this.replicated) this.rollShares(meta, steps)
    const m0 = this.u32[meta]
    // Integer steps from the cached position: `epoch % P` on a double is a slow floating-point modulo.
    let m = (m0 & ~POS_MASK) | (steps < SMALL_STEPS ? ((m0 & POS_MASK) + (steps | 0) % P) % P : mod(epoch, P))
    const newest = Math.min(NO_NEWEST, (m >>> NEWEST_SHIFT) + steps, passed)
    m = (m & LOW_24) | (newest << NEWEST_SHIFT)
    if ((m & DIRTY) !== 0) {
      // Keep the dirty-from epoch fixed while the head moves away from it.
      const off = Math.min(MAX_DIRTY_OFFSET, ((m & DIRTY_MASK) >>> DIRTY_SHIFT) + steps)
      m = (m & ~DIRTY_MASK) | (off << DIRTY_SHIFT)
    }
    this.u32[meta] = m
    this.invalidateAux(d)
  }

  /** Appends key `i`'s own counts of epochs `from`..`to` (about to be dropped) to the pending drain. */
  private keepDirty (i: number, meta: number, from: number, to: number): void {
    const hash = this.hashOf(i)
    for (let e = from; e <= to; e++) {
      const c = this.u32[meta + 1 + this.ownPos(i, e)]
      if (c > 0) this.pendingEvicted.push(hash, e, c)
    }
  }

  /** Folds the `steps` slots from epoch `first` (about to be dropped) into the carried level. */
  private fold (i: number, d: number, first: number, steps: number): void {
    const drain = this.carryPerSlot
    let level = this.f64[d + F_CARRY]
    const withData = Math.min(steps, this.ring)
    for (let j = 0; j < withData; j++) level = Math.max(0, level - drain) + this.slotTotal(i, first + j)
    // Slots past the retained range hold nothing: they only drain.
    if (steps > withData) level = Math.max(0, level - drain * (steps - withData))
    this.f64[d + F_CARRY] = level
  }

  /** Moves the local-share counters `steps` slots on (see the record layout). */
  private rollShares (meta: number, steps: number): void {
    const u = this.u32
    for (let n = 0; n < steps && n < 40; n++) {
      u[meta - S_DEMAND_HIST] = (u[meta - S_DEMAND_HIST] >>> 1) + u[meta - S_DEMAND_CUR]
      u[meta - S_DEMAND_CUR] = 0
      u[meta - S_OWN_HIST] = (u[meta - S_OWN_HIST] >>> 1) + u[meta - S_OWN_PREV]
      u[meta - S_OWN_PREV] = u[meta - S_OWN_CUR]
      u[meta - S_OWN_CUR] = 0
      u[meta - S_PEERS_HIST] = (u[meta - S_PEERS_HIST] >>> 1) + u[meta - S_PEERS_PREV]
      u[meta - S_PEERS_PREV] = u[meta - S_PEERS_CUR]
      u[meta - S_PEERS_CUR] = 0
    }
    if ((u[meta - S_PEERS_HIST] | u[meta - S_PEERS_PREV] | u[meta - S_OWN_HIST] | u[meta - S_OWN_PREV]) === 0) u[meta - S_WRITERS] = 0
  }

  private dropRemote (i: number): void {
    const ra = i * this.stride + this.remAt
    const b = this.u32[ra]
    // Keep the block's width: keys that go quiet for a ring and come back usually have as many writers.
    this.u32[ra] = this.remote.inUse(b)
    this.remote.release(b)
    this.u32[i * this.stride + this.metaAt] &= ~REMOTE
  }

  /**
   * Adds `cost` to the local replica's count of key `i` at `epoch` (clamped to the
   * head, so a clock that steps back credits the newest slot) and marks it dirty.
   */
  add (i: number, epoch: number, cost: number): void {
    const d = i * (this.stride >> 1)
    if (epoch > this.f64[d + F_HEAD]) this.advance(i, epoch)
    // Counting into the head slot also covers a clock that stepped back.
    const meta = i * this.stride + this.metaAt
    this.u32[meta + 1 + (this.u32[meta] & POS_MASK)] += cost
    this.u32[meta] &= LOW_24
    this.f64[d + F_SUM] += cost
    // Only replicated stores are drained; others never need to remember changes.
    if (this.replicated) {
      this.bump(meta - S_OWN_SUM, cost)
      this.bump(meta - S_OWN_CUR, cost)
      if ((this.u32[meta] & DIRTY) === 0) {
        this.u32[meta] |= DIRTY
        this.dirty.push(i)
      }
      if (this.aggregated) this.markAggregate(i, meta)
    }
  }

  /**
   * Adds `cost` to the local replica's count of key `i` at a retained `epoch` no newer
   * than the head. Returns false (and counts nothing) when the epoch is not retained.
   */
  addAt (i: number, epoch: number, cost: number): boolean {
    const d = i * (this.stride >> 1)
    const h = this.f64[d + F_HEAD]
    if (epoch <= h - this.pastSlots || epoch > h) return false
    this.u32[i * this.stride + this.metaAt + 1 + this.ownPos(i, epoch)] += cost
    this.f64[d + F_SUM] += cost
    this.touchNewest(i * this.stride + this.metaAt, h - epoch)
    if (epoch < h) this.invalidateAux(d)
    if (this.replicated) {
      this.bump(i * this.stride + this.metaAt - S_OWN_SUM, cost)
      this.markDirty(i, epoch)
      if (this.aggregated) this.markAggregate(i, i * this.stride + this.metaAt)
    }
    return true
  }

  /** Total over all replicas of key `i`'s slot `epoch` (0 outside the retained range). */
  slotTotal (i: number, epoch: number): number {
    const h = this.f64[i * (this.stride >> 1) + F_HEAD]
    if (epoch <= h - this.pastSlots || epoch > h + this.futureSlots) return 0
    const meta = i * this.stride + this.metaAt
    const o = epoch <= h ? this.u32[meta + 1 + this.ownPos(i, epoch)] : 0
    if ((this.u32[meta] & REMOTE) === 0) return o
    const b = this.u32[i * this.stride + this.remAt]
    return o + this.remote.tot(b, this.rpos(b, i, epoch))
  }

  /**
   * Total over all replicas of key `i`'s slot at `offset` from the head, for offsets
   * -(pastSlots - 1) .. 0. No range checks: the hot path.
   */
  totalAt (i: number, offset: number): number {
    const meta = i * this.stride + this.metaAt
    const m = this.u32[meta]
    let p = (m & POS_MASK) + offset
    if (p < 0) p += this.pastSlots
    const o = this.u32[meta + 1 + p]
    if ((m & REMOTE) === 0) return o
    const b = this.u32[i * this.stride + this.remAt]
    let q = this.remote.headPos(b) + offset
    if (q < 0) q += this.ring
    return o + this.remote.tot(b, q)
  }

  /** The local replica's count of key `i` at `epoch`. */
  ownAt (i: number, epoch: number): number {
    const h = this.headOf(i)
    if (epoch <= h - this.pastSlots || epoch > h) return 0
    return this.u32[i * this.stride + this.metaAt + 1 + this.ownPos(i, epoch)]
  }

  /**
   * Max-merges one entry: replica `rep` (0 = local) counted `count` in slot `epoch` of
   * key `i`. `nowEpoch` is the local epoch; the key is aligned to it first.
   */
  merge (i: number, rep: number, epoch: number, count: number, nowEpoch: number): MergeResult {
    this.advance(i, nowEpoch)
    const d = i * (this.stride >> 1)
    const h = this.f64[d + F_HEAD]
    if (epoch <= h - this.pastSlots) return MergeResult.Stale
    if (epoch > h + this.futureSlots) {
      this.droppedAhead++
      return MergeResult.TooFarAhead
    }
    const meta = i * this.stride + this.metaAt
    let delta: number
    if (rep === 0) {
      // Our own entries echoed back (e.g. by a snapshot): never lower than what we hold,
      // and never ahead of the head, where the local replica cannot have counted.
      // A local count never exceeds 2^32 - 1 (the ring is u32): a larger echo is forged.
      if (epoch > h || count > 0xffffffff) return MergeResult.Unchanged
      const p = this.ownPos(i, epoch)
      delta = count - this.u32[meta + 1 + p]
      if (delta <= 0) return MergeResult.Unchanged
      this.u32[meta + 1 + p] = count
      if (this.replicated) this.bump(meta - S_OWN_SUM, delta)
    } else {
      const rc = this.remote
      const ra = i * this.stride + this.remAt
      let b: number
      if ((this.u32[meta] & REMOTE) === 0) {
        // Without REMOTE the word holds the columns of the key's last block: size the new one for them.
        b = rc.create(mod(h, this.ring), this.u32[ra])
        this.u32[ra] = b
        this.u32[meta] |= REMOTE
      } else b = this.u32[ra]
      const p = this.rpos(b, i, epoch)
      let col = rc.find(b, rep)
      if (col < 0) {
        b = rc.addColumn(b, rep)
        this.u32[ra] = b
        col = rc.inUse(b) - 1
        // Writers: every replica given a column since the block was created, and this one.
        if (this.replicated && this.u32[meta - S_WRITERS] < rc.columns(b) + 1) this.u32[meta - S_WRITERS] = rc.columns(b) + 1
      }
      delta = rc.raise(b, p, col, count)
      if (delta <= 0) return MergeResult.Unchanged
      if (epoch > h) rc.addAhead(b, delta)
      // Credit the slot the entry's epoch names: gossip for a closed slot arrives late.
      if (this.replicated) this.bump(meta - (epoch >= h ? S_PEERS_CUR : epoch === h - 1 ? S_PEERS_PREV : S_PEERS_HIST), delta)
    }
    this.f64[d + F_SUM] += delta
    if (this.aggregated && !this.aggregateReps.has(rep)) this.markAggregate(i, meta)
    if (epoch <= h) {
      this.touchNewest(meta, h - epoch)
      if (epoch < h) this.invalidateAux(d)
    }
    return MergeResult.Applied
  }

  /**
   * Reads, without changing anything, the memory that merging `entries` (hash, epoch,
   * count triples from replica `rep`) will read: hash buckets, then records, then remote
   * blocks' headers, index buckets and cells, each stage for every entry before the next.
   * The cache misses of different entries then overlap instead of queueing one after the
   * other (a receiver's store is rarely in cache: a node hears from all its peers).
   */
  warm (entries: number[], rep: number): void {
    const n = entries.length
    if (n < 6 || this.mask < 0) return
    const t = this.table
    const m = this.mask
    const u = this.u32
    const w = this.stride
    const rc = this.remote
    let acc = 0
    for (let j = 0; j < n; j += 3) acc += t[(entries[j] >>> 0) & m]
    for (let j = 0; j < n; j += 3) {
      const v = t[(entries[j] >>> 0) & m]
      if (v !== 0) acc += this.f64[(v - 1) * (w >> 1)] + u[(v - 1) * w + this.metaAt]
    }
    for (let j = 0; j < n; j += 3) {
      const v = t[(entries[j] >>> 0) & m]
      if (v !== 0 && (u[(v - 1) * w + this.metaAt] & REMOTE) !== 0) acc += rc.inUse(u[(v - 1) * w + this.remAt])
    }
    if (rep !== 0) {
      for (let j = 0; j < n; j += 3) {
        const v = t[(entries[j] >>> 0) & m]
        if (v !== 0 && (u[(v - 1) * w + this.metaAt] & REMOTE) !== 0) acc += rc.firstBucket(u[(v - 1) * w + this.remAt], rep)
      }
      for (let j = 0; j < n; j += 3) {
        const v = t[(entries[j] >>> 0) & m]
        if (v === 0 || (u[(v - 1) * w + this.metaAt] & REMOTE) === 0) continue
        const b = u[(v - 1) * w + this.remAt]
        const c = rc.firstBucket(b, rep) - 1
        const p = rc.headPos(b) + (entries[j + 1] - this.f64[(v - 1) * (w >> 1)])
        if (c >= 0 && c < rc.inUse(b) && p >= 0 && p < this.ring) acc += rc.f64[rc.row(b, p) + c]
      }
    }
    this.warmed = acc
  }

  /** Max-merges an entry addressed by wire hash, creating the key when absent. */
  mergeHash (h: number, rep: number, epoch: number, count: number, nowEpoch: number): MergeResult {
    if (epoch <= nowEpoch - this.pastSlots) return MergeResult.Stale
    if (epoch > nowEpoch + this.futureSlots) {
      this.droppedAhead++
      return MergeResult.TooFarAhead
    }
    return this.merge(this.acquireHash(h, nowEpoch), rep, epoch, count, nowEpoch)
  }

  // --- replication ---------------------------------------------------------------

  /** Number of keys (and evicted keys) with undrained own changes. */
  get dirtyCount (): number {
    return this.dirty.length + this.pendingEvicted.length / 3
  }

  /**
   * Appends every own count changed since the last drain to `out`, as absolute
   * (hash, epoch, count) triples, and marks the keys clean.
   */
  drainDirty (out: number[]): void {
    if (this.pendingEvicted.length > 0) {
      for (const v of this.pendingEvicted) out.push(v)
      this.pendingEvicted = []
    }
    const list = this.dirty
    this.dirty = []
    for (const i of list) {
      const from = this.dirtyFrom(i)
      if (from !== from) continue
      this.markClean(i)
      this.emitOwn(i, from, out)
    }
  }

  private markAggregate (i: number, meta: number): void {
    if ((this.u32[meta] & AGG_DIRTY) !== 0) return
    this.u32[meta] |= AGG_DIRTY
    this.aggDirty.push(i)
  }

  /**
   * Appends, as (hash, epoch, total) triples, this region's totals (every replica but
   * those in aggregateReps) for the newest `slots` retained epochs of every key whose
   * region total changed since the last call (or of every key with `all`), and marks
   * them clean. Totals only grow, so receivers max-merge them like any count.
   */
  drainAggregates (out: number[], slots: number, all: boolean, nowEpoch: number): void {
    const list = all ? [] : this.aggDirty
    if (all) for (let i = 0; i < this.top; i++) if (this.isUsed(i)) list.push(i)
    this.aggDirty = []
    const rc = this.remote
    for (const i of list) {
      const meta = i * this.stride + this.metaAt
      this.u32[meta] &= ~AGG_DIRTY
      if (!this.isUsed(i)) continue
      this.advance(i, nowEpoch)
      const h = this.headOf(i)
      const b = (this.u32[meta] & REMOTE) !== 0 ? this.u32[i * this.stride + this.remAt] : -1
      for (let e = Math.max(h - slots + 1, h - this.pastSlots + 1); e <= h; e++) {
        let total = this.u32[meta + 1 + this.ownPos(i, e)]
        if (b >= 0) {
          const row = rc.row(b, this.rpos(b, i, e))
          for (let c = 0, n = rc.inUse(b); c < n; c++) if (!this.aggregateReps.has(rc.repAt(b, c))) total += rc.f64[row + c]
        }
        if (total > 0) out.push(this.hashOf(i), e, total)
      }
    }
  }

  /** Appends own (hash, epoch, count) triples of key `i` from epoch `from` to the head. */
  private emitOwn (i: number, from: number, out: number[]): void {
    const h = this.headOf(i)
    const hash = this.hashOf(i)
    const own = i * this.stride + this.metaAt + 1
    for (let e = Math.max(from, h - this.pastSlots + 1); e <= h; e++) {
      const c = this.u32[own + this.ownPos(i, e)]
      if (c > 0) out.push(hash, e, c)
    }
  }

  /**
   * Appends every live entry of every key as (replica, hash, epoch, count) quadruples,
   * aligned to `nowEpoch` first. `includeRemote` adds other replicas' entries (for a
   * full snapshot); otherwise only the local replica's (replica 0).
   */
  snapshot (nowEpoch: number, includeRemote: boolean, out: number[]): void {
    this.snapshotRange(0, Infinity, nowEpoch, includeRemote, out)
  }

  /**
   * Like snapshot(), for the records from index `from` on, stopping after the record
   * that brings `out` to at least `maxEntries` entries. Returns the index to continue
   * from, or -1 when every record was visited (a paged snapshot for anti-entropy).
   */
  snapshotRange (from: number, maxEntries: number, nowEpoch: number, includeRemote: boolean, out: number[]): number {
    const rc = this.remote
    let entries = 0
    for (let i = Math.max(0, from); i < this.top; i++) {
      if (!this.isUsed(i)) continue
      this.advance(i, nowEpoch)
      const h = this.headOf(i)
      const hash = this.hashOf(i)
      const own = i * this.stride + this.metaAt + 1
      const b = includeRemote && (this.u32[own - 1] & REMOTE) !== 0 ? this.u32[i * this.stride + this.remAt] : -1
      for (let e = h - this.pastSlots + 1; e <= h + this.futureSlots; e++) {
        const o = e <= h ? this.u32[own + this.ownPos(i, e)] : 0
        if (o > 0) {
          out.push(0, hash, e, o)
          entries++
        }
        if (b < 0) continue
        const p = this.rpos(b, i, e)
        if (rc.tot(b, p) === 0) continue
        const row = rc.row(b, p)
        for (let c = 0, n = rc.inUse(b); c < n; c++) {
          const v = rc.f64[row + c]
          if (v > 0) {
            out.push(rc.repAt(b, c), hash, e, v)
            entries++
          }
        }
      }
      if (entries >= maxEntries) return i + 1 < this.top ? i + 1 : -1
    }
    return -1
  }

  /**
   * Appends the local replica's live (hash, epoch, count) triples of up to `maxKeys`
   * records from index `from` on (periodic re-publication, so a lost message cannot
   * leave a peer behind). Returns how many keys it visited and the index to continue
   * from (-1 at the end).
   */
  ownRange (from: number, maxKeys: number, nowEpoch: number, out: number[]): { visited: number, next: number } {
    let visited = 0
    for (let i = Math.max(0, from); i < this.top; i++) {
      if (!this.isUsed(i)) continue
      this.advance(i, nowEpoch)
      this.emitOwn(i, this.headOf(i) - this.pastSlots + 1, out)
      if (++visited >= maxKeys) return { visited, next: i + 1 < this.top ? i + 1 : -1 }
    }
    return { visited, next: -1 }
  }

  /**
   * Per-replica counts of key `i` by epoch, as a plain object for tests and debugging:
   * { [epoch]: { [replicaIndex]: count } }.
   */
  entriesOf (i: number): Record<number, Record<number, number>> {
    const out: Record<number, Record<number, number>> = {}
    const h = this.headOf(i)
    const rc = this.remote
    const own = i * this.stride + this.metaAt + 1
    const b = (this.u32[own - 1] & REMOTE) !== 0 ? this.u32[i * this.stride + this.remAt] : -1
    for (let e = h - this.pastSlots + 1; e <= h + this.futureSlots; e++) {
      const row: Record<number, number> = {}
      const o = e <= h ? this.u32[own + this.ownPos(i, e)] : 0
      if (o > 0) row[0] = o
      if (b >= 0) {
        const at = rc.row(b, this.rpos(b, i, e))
        for (let c = 0, n = rc.inUse(b); c < n; c++) {
          const v = rc.f64[at + c]
          if (v > 0) row[rc.repAt(b, c)] = v
        }
      }
      if (Object.keys(row).length > 0) out[e] = row
    }
    return out
  }

  // --- export (policy changes re-bucket a store's counts into a new one) ----------

  /** Calls `fn` with the index of every live key. */
  forEachKey (fn: (i: number) => void): void {
    for (let i = 0; i < this.top; i++) if (this.isUsed(i)) fn(i)
  }

  /**
   * Calls `fn(replica, epoch, count)` for every nonzero count of key `i`: the local
   * replica's (replica 0) and every other replica's, including slots ahead of the head.
   * `fn` must not write to this store.
   */
  forEachEntry (i: number, fn: (replica: number, epoch: number, count: number) => void): void {
    const h = this.headOf(i)
    const rc = this.remote
    const own = i * this.stride + this.metaAt + 1
    const b = (this.u32[own - 1] & REMOTE) !== 0 ? this.u32[i * this.stride + this.remAt] : -1
    for (let e = h - this.pastSlots + 1; e <= h + this.futureSlots; e++) {
      const o = e <= h ? this.u32[own + this.ownPos(i, e)] : 0
      if (o > 0) fn(0, e, o)
      if (b < 0) continue
      const row = rc.row(b, this.rpos(b, i, e))
      for (let c = 0, n = rc.inUse(b); c < n; c++) {
        const v = rc.f64[row + c]
        if (v > 0) fn(rc.repAt(b, c), e, v)
      }
    }
  }

  /** Whether key `i` has own counts not drained yet. */
  hasUndrained (i: number): boolean {
    return (this.u32[i * this.stride + this.metaAt] & DIRTY) !== 0
  }

  /** Sets the level carried out of key `i`'s dropped slots (stores with a carry only). */
  setCarried (i: number, level: number): void {
    if (this.header !== 5) throw new RangeError('setCarried on a store without a carry')
    if (!(level >= 0)) throw new RangeError(`carried level must be >= 0, got ${level}`)
    const d = i * (this.stride >> 1)
    this.f64[d + F_CARRY] = level
    this.invalidateAux(d)
  }

  /** Whether this store keeps a carried level per key. */
  get carries (): boolean {
    return this.header === 5
  }

  // --- expiry --------------------------------------------------------------------

  /**
   * Examines up to `budget` keys and frees those with nothing left in the window at
   * `nowEpoch` and nothing left to drain. Returns how many were freed.
   */
  sweep (nowEpoch: number, budget: number): number {
    if (this.top === 0) return 0
    let freed = 0
    for (let n = 0; n < budget && n < this.top; n++) {
      const i = this.sweepCursor
      this.sweepCursor = (this.sweepCursor + 1) % this.top
      if (!this.isUsed(i)) continue
      if ((this.u32[i * this.stride + this.metaAt] & DIRTY) !== 0) continue
      this.advance(i, nowEpoch)
      // Keep keys whose share history (halved per slot) has not faded yet: freeing them
      // at a fixed window's boundary would forget who was admitting.
      if (this.sumOf(i) === 0 && this.carriedOf(i) === 0 && !this.hasHistory(i)) {
        this.release(i)
        this.expired++
        freed++
      }
    }
    if (this.remote.wasteful) this.compactRemote()
    return freed
  }

  /** Moves the remote blocks of live keys together once most of the arena is free blocks. */
  private compactRemote (): void {
    this.remote.compact(visit => {
      for (let i = 0; i < this.top; i++) {
        const meta = i * this.stride + this.metaAt
        if ((this.u32[meta] & (USED | REMOTE)) === (USED | REMOTE)) this.u32[i * this.stride + this.remAt] = visit(this.u32[i * this.stride + this.remAt])
      }
    })
  }

  /** Forgets every key. */
  clear (): void {
    for (let i = 0; i < this.top; i++) if (this.isUsed(i)) this.release(i)
    this.remote.clear()
    this.pendingEvicted = []
    this.dirty = []
  }
}
