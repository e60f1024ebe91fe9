import { WindowStore } from '../crdt/window-store.js'
import type { Algorithm, Limit, Scope } from './policy/types.js'

/**
 * What a decision reports about a limit that does not change per request; rebuilt on
 * every policy install (scope and shadow belong to the policy).
 */
export interface LimitInfo {
  readonly policy: string
  readonly id: string
  /** The ceiling when the policy was installed (the runtime's `max`). */
  readonly limit: number
  readonly algorithm: Algorithm
  readonly scope: Scope
  readonly windowMs: number
  readonly shadow: boolean
}

/** Options shared by every limit's stores. */
export interface StoreOptions {
  maxKeys: number
  hashSeed: number
  maxClockSkewMs: number
  replicated: boolean
  samplerSeed: number
}

/**
 * The runtime of one limit: its counters and its admission arithmetic. A runtime is
 * identified by `name` ("policy/limit") and outlives policy reloads that keep the
 * name and the counter layout; `max` may change in place.
 *
 * The limiter calls, per matched limit: `locate` (find or create the key, aligned to
 * now), `usage` (current estimate in limit units), and only when every limit passed,
 * `commit`. `usage` and `commit` are O(1) amortised; `retryAfterMs` and `resetMs` may
 * walk the key's slots (O(slots)).
 */
export abstract class LimitRuntime {
  readonly name: string
  /** The limit's id within its policy. */
  readonly id: string
  readonly algorithm: Algorithm
  /** The ceiling usage + cost is compared against. */
  max: number
  /** Requests this limit would have denied while its policy is in shadow mode (a cheap metrics field). */
  shadowDenied = 0
  /** Static report data, set by the limiter when it binds the runtime to a policy. */
  info!: LimitInfo
  readonly windowMs: number
  readonly slotMs: number
  /** Epoch computed by the last locate(), reused by the commit() of the same check. */
  protected epoch = 0
  private lastNow = NaN
  /** The stores holding this limit's counters, by wire suffix ("" or "#acq"/"#rel"). */
  abstract readonly stores: ReadonlyArray<readonly [string, WindowStore]>

  constructor (name: string, limit: Limit, slotMs: number) {
    this.name = name
    this.id = limit.id
    this.algorithm = limit.algorithm
    this.max = limit.limit
    this.windowMs = limit.windowMs
    this.slotMs = slotMs
  }

  /** Slab index of `key`, created when absent and aligned to `now`. */
  abstract locate (key: string, now: number): number
  /** Usage estimate of key `i` at `now`, in limit units (requests, tokens or leases). */
  abstract usage (i: number, now: number): number
  /** Records `cost` against key `i` at `now` (right after locate() of the same check). */
  abstract commit (i: number, now: number, cost: number): void
  /** Milliseconds until the key's current usage has fully drained, with no new traffic. */
  abstract resetMs (i: number, now: number): number
  /**
   * Earliest wait, in ms, after which `cost` would fit given what this node knows now;
   * Infinity when cost exceeds the limit itself.
   */
  abstract retryAfterMs (i: number, now: number, usage: number, cost: number): number

  /** The slot epoch of `now`, remembered while the (coarse) clock stands still. */
  protected epochAt (now: number): number {
    if (now !== this.lastNow) {
      this.lastNow = now
      this.epoch = Math.floor(now / this.slotMs)
    }
    return this.epoch
  }

  /** Whether a store built from `limit` would lay counters out the same way. */
  compatible (limit: Limit, slotMs: number): boolean {
    return limit.algorithm === this.algorithm && limit.windowMs === this.windowMs && slotMs === this.slotMs
  }
}

/** Slot width and retained slot count of a limit. */
export function layoutOf (limit: Limit): { slotMs: number, pastSlots: number } {
  switch (limit.algorithm) {
    case 'fixed-window':
      return { slotMs: limit.windowMs, pastSlots: 1 }
    case 'token-bucket':
      // k slots of at least burst/(rate*k): after k slots a full bucket has drained.
      return { slotMs: Math.max(1, Math.ceil(limit.windowMs / limit.slots)), pastSlots: limit.slots + 1 }
    default:
      return { slotMs: limit.windowMs / limit.slots, pastSlots: limit.slots + 1 }
  }
}

function makeStore (slotMs: number, pastSlots: number, o: StoreOptions, salt: number, carryPerSlot?: number): WindowStore {
  return new WindowStore({
    carryPerSlot,
    slotMs,
    pastSlots,
    futureSlots: o.maxClockSkewMs <= 0 ? 0 : Math.min(pastSlots, Math.ceil(o.maxClockSkewMs / slotMs)),
    maxKeys: o.maxKeys,
    hashSeed: o.hashSeed,
    replicated: o.replicated,
    samplerSeed: o.samplerSeed + salt
  })
}

/**
 * Sliding-window counter over k slots of windowMs/k: the estimate counts every slot
 * inside the window in full, and the oldest slot (which the window's start cuts)
 * weighted by the share of it still inside, which assumes its requests were spread
 * evenly (Cloudflare's two-slot formula generalised to k slots).
 */
export class SlidingWindow extends LimitRuntime {
  readonly store: WindowStore
  readonly stores: ReadonlyArray<readonly [string, WindowStore]>
  private readonly k: number

  constructor (name: string, limit: Limit, o: StoreOptions) {
    const { slotMs, pastSlots } = layoutOf(limit)
    super(name, limit, slotMs)
    this.k = limit.slots
    this.store = makeStore(slotMs, pastSlots, o, 0)
    this.stores = [['', this.store]]
  }

  locate (key: string, now: number): number {
    const s = this.store
    const e = this.epochAt(now)
    const i = s.acquire(key, e)
    if (e > s.headOf(i)) s.advance(i, e)
    return i
  }

  usage (i: number, now: number): number {
    const s = this.store
    const oldest = s.totalAt(i, -this.k)
    if (oldest === 0) return s.sumOf(i)
    // Subtract before dividing: epochs times slotMs are exact, so the share is too.
    const frac = (now - s.headOf(i) * this.slotMs) / this.slotMs
    return s.sumOf(i) - oldest * (frac > 0 ? frac : 0)
  }

  commit (i: number, _now: number, cost: number): void {
    this.store.add(i, this.epoch, cost)
  }

  resetMs (i: number, now: number): number {
    const s = this.store
    // The newest slot with usage leaves the window k+1 slots after it started.
    if (s.aheadOf(i) !== 0) {
      for (let e = s.headOf(i) + s.futureSlots; e > s.headOf(i); e--) {
        if (s.slotTotal(i, e) > 0) return Math.max(0, (e + this.k + 1) * this.slotMs - now)
      }
    }
    const newest = s.newestEpoch(i)
    return newest === newest ? Math.max(0, (newest + this.k + 1) * this.slotMs - now) : 0
  }

  retryAfterMs (i: number, now: number, usage: number, cost: number): number {
    const target = this.max - cost
    if (target < 0) return Infinity
    if (usage <= target) return 0
    const s = this.store
    const h = s.headOf(i)
    const w = this.slotMs
    const k = this.k
    // At a time in slot m = h + j, the window holds slot m - k weighted by the part of
    // it still inside, plus every newer slot in full (a below); walk j until it fits.
    // Past slots are read by offset (no range checks); slots ahead only exist when
    // peers with fast clocks wrote them, and are walked the slow way.
    let a = s.sumOf(i)
    for (let j = 0; j <= k; j++) {
      const b = s.totalAt(i, j - k)
      a -= b
      if (a > target) continue
      // usage(f) = a + b * (1 - f), f the elapsed share of slot m: solve for f.
      const f = b > 0 ? Math.max(0, 1 - (target - a) / b) : 0
      return Math.max(0, Math.ceil((h + j + f) * w - now))
    }
    for (let j = k + 1; j <= k + s.futureSlots + 1; j++) {
      const b = s.slotTotal(i, h + j - k)
      a -= b
      if (a > target) continue
      const f = b > 0 ? Math.max(0, 1 - (target - a) / b) : 0
      return Math.max(0, Math.ceil((h + j + f) * w - now))
    }
    return Math.max(0, Math.ceil((h + k + s.futureSlots + 1) * w - now))
  }
}

/** Fixed window: one counter per window-aligned period, reset at each boundary. */
export class FixedWindow extends LimitRuntime {
  readonly store: WindowStore
  readonly stores: ReadonlyArray<readonly [string, WindowStore]>

  constructor (name: string, limit: Limit, o: StoreOptions) {
    super(name, limit, limit.windowMs)
    this.store = makeStore(limit.windowMs, 1, o, 0)
    this.stores = [['', this.store]]
  }

  locate (key: string, now: number): number {
    const s = this.store
    const e = this.epochAt(now)
    const i = s.acquire(key, e)
    if (e > s.headOf(i)) s.advance(i, e)
    return i
  }

  usage (i: number): number {
    // Includes windows ahead of the local clock (peers whose clocks run fast): counting
    // them early can only deny, never over-admit.
    return this.store.sumOf(i)
  }

  commit (i: number, _now: number, cost: number): void {
    this.store.add(i, this.epoch, cost)
  }

  resetMs (i: number, now: number): number {
    return Math.max(0, (this.store.headOf(i) + 1) * this.slotMs - now)
  }

  retryAfterMs (i: number, now: number, usage: number, cost: number): number {
    const target = this.max - cost
    if (target < 0) return Infinity
    if (usage <= target) return 0
    const s = this.store
    const h = s.headOf(i)
    // Usage in window h + j is what peers with fast clocks already counted there and beyond.
    let ahead = s.aheadOf(i)
    for (let j = 1; j <= s.futureSlots + 1; j++) {
      if (ahead <= target) return Math.max(0, Math.ceil((h + j) * this.slotMs - now))
      ahead -= s.slotTotal(i, h + j)
    }
    return Math.max(0, Math.ceil((h + s.futureSlots + 1) * this.slotMs - now))
  }
}

/**
 * Token bucket (rate r, capacity b) as a leaky-bucket level computed from the slot
 * counts, so every node that holds the same counts computes the same level.
 *
 * The level at the start of slot e+1 is max(0, L(e) - r*slotMs) + count(e): tokens
 * taken in a slot start to refill when the slot closes, which errs towards denying by
 * at most one slot of refill (r*slotMs = b/k tokens). Within the current slot the
 * level is max(0, L(head) - r*elapsed) + count(head). A busy bucket never forgets its
 * history, so the store folds every slot that leaves the ring into a carried level
 * with the same recurrence; L(head) starts from it and runs over the k retained
 * slots. It is cached per key and recomputed (O(k)) only when the head moves or a
 * peer's entry lands in a past slot. Because the model only delays refills, admitted
 * units over any interval of length T never exceed b + r*T.
 */
export class TokenBucket extends LimitRuntime {
  readonly store: WindowStore
  readonly stores: ReadonlyArray<readonly [string, WindowStore]>
  readonly ratePerMs: number
  private readonly k: number

  constructor (name: string, limit: Limit, o: StoreOptions) {
    const { slotMs, pastSlots } = layoutOf(limit)
    super(name, limit, slotMs)
    this.k = limit.slots
    this.ratePerMs = limit.ratePerSecond / 1000
    this.store = makeStore(slotMs, pastSlots, o, 0, this.ratePerMs * slotMs)
    this.stores = [['', this.store]]
  }

  override compatible (limit: Limit, slotMs: number): boolean {
    return super.compatible(limit, slotMs) && limit.ratePerSecond / 1000 === this.ratePerMs
  }

  locate (key: string, now: number): number {
    const s = this.store
    const e = this.epochAt(now)
    const i = s.acquire(key, e)
    if (e > s.headOf(i)) s.advance(i, e)
    return i
  }

  /** Level at the start of the head slot, from the cache or the k slots before it. */
  private levelAtHead (i: number): number {
    const s = this.store
    const cached = s.auxOf(i)
    if (cached === cached) return cached
    const drain = this.ratePerMs * this.slotMs
    let level = s.carriedOf(i)
    for (let off = -this.k; off < 0; off++) {
      level = Math.max(0, level - drain) + s.totalAt(i, off)
    }
    s.setAux(i, level)
    return level
  }

  /** Usage in the head slot, including slots ahead of the local clock. */
  private current (i: number): number {
    const s = this.store
    return s.totalAt(i, 0) + s.aheadOf(i)
  }

  usage (i: number, now: number): number {
    const s = this.store
    const start = this.levelAtHead(i)
    const elapsed = now - s.headOf(i) * this.slotMs
    const drained = start - this.ratePerMs * (elapsed > 0 ? elapsed : 0)
    return (drained > 0 ? drained : 0) + this.current(i)
  }

  commit (i: number, _now: number, cost: number): void {
    this.store.add(i, this.epoch, cost)
  }

  resetMs (i: number, now: number): number {
    const s = this.store
    const start = this.levelAtHead(i)
    const c = this.current(i)
    const elapsed = Math.max(0, now - s.headOf(i) * this.slotMs)
    if (c === 0) return Math.ceil(Math.max(0, start - this.ratePerMs * elapsed) / this.ratePerMs)
    const next = Math.max(0, start - this.ratePerMs * this.slotMs) + c
    return Math.ceil((s.headOf(i) + 1) * this.slotMs - now + next / this.ratePerMs)
  }

  retryAfterMs (i: number, now: number, usage: number, cost: number): number {
    const target = this.max - cost
    if (target < 0) return Infinity
    if (usage <= target) return 0
    const s = this.store
    const h = s.headOf(i)
    const start = this.levelAtHead(i)
    const c = this.current(i)
    if (c <= target) {
      // Draining the carried-over level within (or past) this slot is enough.
      return Math.max(0, Math.ceil(h * this.slotMs + (start + c - target) / this.ratePerMs - now))
    }
    // Tokens taken in this slot only start to refill when it closes.
    const next = Math.max(0, start - this.ratePerMs * this.slotMs) + c
    return Math.max(0, Math.ceil((h + 1) * this.slotMs + (next - target) / this.ratePerMs - now))
  }
}

/** What a concurrency lease must remember to release itself. */
export interface LeaseHold {
  readonly runtime: Concurrency
  readonly key: string
  readonly epoch: number
  readonly cost: number
}

/**
 * Concurrency limit as a windowed PN-Counter: acquisitions (P) and releases (N) are
 * counted in the slot of the acquisition, in two stores with the same layout, and
 * in-flight = P - N over the retained slots. A lease never released (its holder
 * crashed, or forgot) stops counting when its slot leaves the lease TTL, so leaked
 * leases heal by themselves.
 */
export class Concurrency extends LimitRuntime {
  readonly acquired: WindowStore
  readonly released: WindowStore
  readonly stores: ReadonlyArray<readonly [string, WindowStore]>
  /** Retry hint for denied acquisitions: in-flight work has no schedule to predict. */
  static readonly RETRY_HINT_MS = 1000

  constructor (name: string, limit: Limit, o: StoreOptions) {
    const { slotMs, pastSlots } = layoutOf(limit)
    super(name, limit, slotMs)
    this.acquired = makeStore(slotMs, pastSlots, o, 0)
    this.released = makeStore(slotMs, pastSlots, o, 1)
    this.stores = [['#acq', this.acquired], ['#rel', this.released]]
  }

  locate (key: string, now: number): number {
    const s = this.acquired
    const e = this.epochAt(now)
    const i = s.acquire(key, e)
    if (e > s.headOf(i)) s.advance(i, e)
    return i
  }

  usage (i: number, now: number): number {
    const key = this.acquired.keyAt(i)
    if (key === undefined) return this.acquired.sumOf(i)
    const r = this.released
    const j = r.find(key)
    if (j < 0) return this.acquired.sumOf(i)
    r.advance(j, Math.floor(now / this.slotMs))
    const inflight = this.acquired.sumOf(i) - r.sumOf(j)
    return inflight > 0 ? inflight : 0
  }

  commit (i: number, _now: number, cost: number): void {
    this.acquired.add(i, this.epoch, cost)
  }

  /** Counts the release of a lease acquired at `epoch` (a no-op once it left the TTL). */
  release (hold: LeaseHold, now: number): void {
    const e = Math.floor(now / this.slotMs)
    if (hold.epoch <= e - this.acquired.pastSlots) return
    const r = this.released
    const j = r.acquire(hold.key, e)
    r.advance(j, e)
    r.addAt(j, hold.epoch, hold.cost)
  }

  resetMs (): number {
    return 0
  }

  retryAfterMs (_i: number, _now: number, usage: number, cost: number): number {
    if (cost > this.max) return Infinity
    return usage + cost <= this.max ? 0 : Concurrency.RETRY_HINT_MS
  }
}

/** Builds the runtime for a limit. */
export function createRuntime (name: string, limit: Limit, o: StoreOptions): LimitRuntime {
  switch (limit.algorithm) {
    case 'sliding-window': return new SlidingWindow(name, limit, o)
    case 'fixed-window': return new FixedWindow(name, limit, o)
    case 'token-bucket': return new TokenBucket(name, limit, o)
    case 'concurrency': return new Concurrency(name, limit, o)
  }
}
