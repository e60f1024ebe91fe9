import { decode, encode } from '@msgpack/msgpack'
import { hashString } from '../crdt/hash.js'
import type { Transport } from '../gossip/transport.js'
import type { Clock } from '../membership/clock.js'

/**
 * Strict mode: escrow of admission rights (the Bounded Counter of Balegas et al.,
 * applied to one fixed window at a time).
 *
 * For every key and window of a strict limit, the limit's units are rights. At the
 * start of a window the holders named in the policy (`escrow.holders`) own them, split
 * evenly; every other node owns none. A node admits a request only by spending rights
 * it owns, so the mesh admits at most the limit per window whatever the network does:
 * stale views, lost messages and partitions cost denials, never over-admission.
 *
 * Rights move by transfer, on demand: a node short of rights asks a holder (off the
 * request path; check() never waits), which gives part of what it owns. Only the giver
 * decides and records a transfer, as a cumulative count per recipient, and its answer
 * carries that count, so a lost or repeated answer loses rights at worst (the receiver
 * keeps the largest count it heard) and never mints any. Counts are kept per replica
 * incarnation, so a restarted node never reuses its previous life's transfers.
 *
 * Rights are never created outside the holders' initial split, and a holder only gets
 * its split for windows that started after it did (a restarted holder cannot remember
 * what it gave) and, when a policy changes a strict limit's holders or ceiling, the
 * smaller of the old and new split for windows starting within one window of the
 * change (nodes that install the change within that time never add up to more than
 * either policy allows). A holder forced to forget a key in the current window (key
 * flood past maxKeys) remembers, in a Bloom filter, that the key's rights are spent.
 */

/** Request/response protocol of rights transfers. */
export const ESCROW_PROTOCOL = '/meshlimit/escrow/1.0.0'

const WIRE_VERSION = 1

export interface EscrowLimit {
  /** Units per window. */
  limit: number
  windowMs: number
  /** Peer ids of the nodes that own the rights at the start of each window. */
  holders: readonly string[]
}

export interface EscrowInit {
  transport: Transport
  clock: Clock
  /** This node's incarnation (transfers are counted per replica incarnation). */
  incarnation: number
  /**
   * Most keys tracked per strict limit.
   * @default 100000
   */
  maxKeys?: number
  /**
   * Time a transfer request may take, in ms.
   * @default 250
   */
  requestTimeoutMs?: number
  /**
   * How far ahead a node asks for rights, in ms of its own demand: a node asks for what
   * it expects to spend in this long, and keeps that much of its own when it gives.
   * @default 200
   */
  horizonMs?: number
  /**
   * Shortest pause between two requests for the same key after one brought nothing, in ms.
   * @default 50
   */
  retryMs?: number
  /** When this node started (holders issue no rights for windows that began by then). @default the clock's time now */
  startedAtMs?: number
}

export interface EscrowStats {
  /** Transfer requests sent, and those that failed (timeout, unreachable, refused). */
  requests: number
  requestsFailed: number
  /** Rights received from peers, and given to them. */
  rightsReceived: number
  rightsGiven: number
  /** Requests this node answered. */
  served: number
  /** Malformed requests refused. */
  rejected: number
  /** Current-window keys a holder had to forget (their rights count as spent). */
  spentForgotten: number
}

/** One key's rights in one window. */
export class EscrowEntry {
  epoch = -1
  /** Rights this node owned at the start of the window. */
  initial = 0
  consumed = 0
  givenTotal = 0
  receivedTotal = 0
  /** Cumulative rights given, by recipient replica ("peer@incarnation"). */
  given: Map<string, number> | undefined
  /** Largest cumulative count each giver reported, by giver replica. */
  received: Map<string, number> | undefined
  /** Units asked for this window (admitted or not): the node's demand. */
  demand = 0
  /** Cost of the last request that found too few rights. */
  short = 0
  asking = false
  nextAskMs = 0

  constructor (readonly key: string, readonly table: EscrowTable) {}

  /** Rights this node owns now. */
  get available (): number {
    return this.initial + this.receivedTotal - this.givenTotal - this.consumed
  }
}

interface Split {
  limit: number
  holders: readonly string[]
}

/** Bloom filter bits per strict limit for forgotten current-window keys (2^18 bits = 32 KiB). */
const SPENT_BITS = 1 << 18

/** The rights of one strict limit. */
export class EscrowTable {
  readonly entries = new Map<string, EscrowEntry>()
  windowMs: number
  private current: Split
  /** The split before the last change, and the window start until which the smaller split applies. */
  private previous: Split | undefined
  private previousUntilMs = 0
  private spentEpoch = -1
  private spent: Uint32Array | undefined

  constructor (readonly name: string, cfg: EscrowLimit, private readonly escrow: Escrow) {
    this.windowMs = cfg.windowMs
    this.current = { limit: cfg.limit, holders: [...cfg.holders].sort() }
  }

  /** Applies a changed policy: splits of windows starting within one window take the smaller share. */
  update (cfg: EscrowLimit, now: number): void {
    const holders = [...cfg.holders].sort()
    const same = cfg.limit === this.current.limit && cfg.windowMs === this.windowMs && holders.join('\n') === this.current.holders.join('\n')
    if (same) return
    if (cfg.windowMs !== this.windowMs) {
      // Another window length is another set of windows: start over, owning nothing until the next one.
      this.entries.clear()
      this.windowMs = cfg.windowMs
      this.previous = { limit: 0, holders: [] }
    } else this.previous = this.current
    this.previousUntilMs = now + cfg.windowMs
    this.current = { limit: cfg.limit, holders }
  }

  /** The holders, in the order a key's requests try them (rendezvous order spreads keys over holders). */
  holdersFor (key: string): string[] {
    const h = hashString(key, 0x35c0)
    return [...this.current.holders].sort((a, b) => (hashString(b, h) >>> 0) - (hashString(a, h) >>> 0))
  }

  private shareOf (s: Split): number {
    const i = s.holders.indexOf(this.escrow.peerId)
    if (i < 0) return 0
    const n = s.holders.length
    return Math.floor(s.limit / n) + (i < s.limit % n ? 1 : 0)
  }

  /** Rights this node starts window `epoch` of `key` with. */
  private initialFor (key: string, epoch: number): number {
    const start = epoch * this.windowMs
    // A previous incarnation may have given rights in any window that had begun when this one started.
    if (start <= this.escrow.startedAtMs) return 0
    let share = this.shareOf(this.current)
    if (share === 0) return 0
    if (this.previous !== undefined && start < this.previousUntilMs) share = Math.min(share, this.shareOf(this.previous))
    if (share > 0 && this.spent !== undefined && this.spentEpoch === epoch && this.spentHas(key)) return 0
    return share
  }

  /** The entry of `key` in the window holding `now`, created or rolled over as needed. */
  entry (key: string, now: number): EscrowEntry {
    const epoch = Math.floor(now / this.windowMs)
    let e = this.entries.get(key)
    if (e === undefined) {
      if (this.entries.size >= this.escrow.maxKeys) this.evict(epoch)
      e = new EscrowEntry(key, this)
      this.entries.set(key, e)
    }
    if (e.epoch !== epoch) this.roll(e, epoch)
    return e
  }

  private roll (e: EscrowEntry, epoch: number): void {
    e.epoch = epoch
    e.initial = this.initialFor(e.key, epoch)
    e.consumed = 0
    e.givenTotal = 0
    e.receivedTotal = 0
    e.given?.clear()
    e.received?.clear()
    e.demand = 0
    e.short = 0
    e.nextAskMs = 0
  }

  /** Frees the oldest entry; a holder remembers a current-window key's rights as spent. */
  private evict (epoch: number): void {
    const first = this.entries.keys().next()
    if (first.done === true) return
    const e = this.entries.get(first.value) as EscrowEntry
    this.entries.delete(first.value)
    if (e.epoch === epoch && e.initial > 0) {
      this.spentAdd(e.key, epoch)
      this.escrow.stats.spentForgotten++
    }
  }

  private spentAdd (key: string, epoch: number): void {
    if (this.spent === undefined) this.spent = new Uint32Array(SPENT_BITS / 32)
    if (this.spentEpoch !== epoch) {
      this.spent.fill(0)
      this.spentEpoch = epoch
    }
    const a = hashString(key, 0x5e17) >>> 0
    const b = hashString(key, 0x0b100) >>> 0
    for (const h of [a, b]) {
      const bit = h & (SPENT_BITS - 1)
      this.spent[bit >>> 5] |= 1 << (bit & 31)
    }
  }

  private spentHas (key: string): boolean {
    const s = this.spent as Uint32Array
    for (const h of [hashString(key, 0x5e17) >>> 0, hashString(key, 0x0b100) >>> 0]) {
      const bit = h & (SPENT_BITS - 1)
      if ((s[bit >>> 5] & (1 << (bit & 31))) === 0) return false
    }
    return true
  }

  /** Frees entries of windows that have ended. */
  sweep (now: number): void {
    const epoch = Math.floor(now / this.windowMs)
    for (const [k, e] of this.entries) if (e.epoch < epoch && !e.asking) this.entries.delete(k)
  }
}

/** Demand rate of an entry, in units per ms since its window started. */
function rateOf (e: EscrowEntry, now: number): number {
  const elapsed = now - e.epoch * e.table.windowMs
  return e.demand / Math.max(elapsed, 1)
}

/** The escrow of one node: its strict limits' rights, the transfer protocol and its stats. */
export class Escrow {
  readonly peerId: string
  readonly startedAtMs: number
  readonly maxKeys: number
  readonly stats: EscrowStats = { requests: 0, requestsFailed: 0, rightsReceived: 0, rightsGiven: 0, served: 0, rejected: 0, spentForgotten: 0 }
  private readonly tables = new Map<string, EscrowTable>()
  private readonly transport: Transport
  private readonly clock: Clock
  private readonly incarnation: number
  private readonly requestTimeoutMs: number
  private readonly horizonMs: number
  private readonly retryMs: number
  private queue: EscrowEntry[] = []
  private cancelDrain: (() => void) | undefined
  private running = false

  constructor (init: EscrowInit) {
    this.transport = init.transport
    this.clock = init.clock
    this.peerId = init.transport.peerId
    this.incarnation = init.incarnation
    this.maxKeys = init.maxKeys ?? 100_000
    this.requestTimeoutMs = init.requestTimeoutMs ?? 250
    this.horizonMs = init.horizonMs ?? 200
    this.retryMs = init.retryMs ?? 50
    this.startedAtMs = init.startedAtMs ?? this.clock.now()
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.transport.handle(ESCROW_PROTOCOL, (data, from) => this.serve(data, from))
  }

  stop (): void {
    if (!this.running) return
    this.running = false
    this.transport.unhandle(ESCROW_PROTOCOL)
    this.cancelDrain?.()
    this.cancelDrain = undefined
    this.queue = []
  }

  /** The table of strict limit `name`, created or updated to `cfg`. */
  table (name: string, cfg: EscrowLimit): EscrowTable {
    let t = this.tables.get(name)
    if (t === undefined) {
      t = new EscrowTable(name, cfg, this)
      this.tables.set(name, t)
    } else t.update(cfg, this.clock.now())
    return t
  }

  /** Drops the tables of limits no longer strict (their rights lapse). */
  retain (names: ReadonlySet<string>): void {
    for (const name of this.tables.keys()) if (!names.has(name)) this.tables.delete(name)
  }

  /** Frees entries of ended windows. */
  sweep (): void {
    const now = this.clock.now()
    for (const t of this.tables.values()) t.sweep(now)
  }

  /**
   * Hot path, after a request of `cost` on `e` was decided: counts demand, spends the
   * rights when admitted, and queues a refill when the node runs short or soon will.
   */
  after (e: EscrowEntry, cost: number, admitted: boolean, now: number): void {
    e.demand += cost
    if (admitted) e.consumed += cost
    else e.short = cost
    if (e.asking || now < e.nextAskMs || !this.running) return
    // Short now, or within the horizon at the current demand.
    if (!admitted || e.available < rateOf(e, now) * this.horizonMs) {
      e.asking = true
      this.queue.push(e)
      if (this.cancelDrain === undefined) this.cancelDrain = this.clock.setTimer(0, () => { this.drain() })
    }
  }

  private drain (): void {
    this.cancelDrain = undefined
    const q = this.queue
    this.queue = []
    for (const e of q) void this.refill(e)
  }

  /** Asks holders (then whoever they point to) for rights until the entry has enough. */
  private async refill (e: EscrowEntry): Promise<void> {
    const epoch = e.epoch
    const t = e.table
    const now = this.clock.now()
    const want = Math.max(1, e.short, Math.ceil(rateOf(e, now) * this.horizonMs * 2)) - Math.max(0, e.available)
    let gained = 0
    try {
      if (want <= 0) return
      const connected = new Set(this.transport.peers())
      const order = t.holdersFor(e.key).filter(p => p !== this.peerId)
      // Holders this node is connected to first: others may be unreachable.
      const targets = [...order.filter(p => connected.has(p)), ...order.filter(p => !connected.has(p))]
      const asked = new Set<string>()
      for (let i = 0; i < targets.length && asked.size < 4 && gained < want; i++) {
        const peer = targets[i]
        if (asked.has(peer) || peer === this.peerId) continue
        asked.add(peer)
        this.stats.requests++
        let answer: Uint8Array
        try {
          answer = await this.transport.request(peer, ESCROW_PROTOCOL, encodeRequest(t.name, e.key, epoch, want - gained, this.incarnation), this.requestTimeoutMs)
        } catch {
          this.stats.requestsFailed++
          continue
        }
        const a = decodeAnswer(answer)
        if (a === undefined) {
          this.stats.requestsFailed++
          continue
        }
        if (a.epoch !== epoch || e.epoch !== epoch || t.entries.get(e.key) !== e) continue
        const giver = `${peer}@${a.incarnation}`
        e.received ??= new Map()
        const prev = e.received.get(giver) ?? 0
        if (a.cumulative > prev) {
          e.received.set(giver, a.cumulative)
          e.receivedTotal += a.cumulative - prev
          gained += a.cumulative - prev
          this.stats.rightsReceived += a.cumulative - prev
        }
        if (a.hint !== undefined && !asked.has(a.hint)) targets.splice(i + 1, 0, a.hint)
      }
    } finally {
      e.asking = false
      e.short = 0
      // Nothing came: do not ask again for this key before the retry pause.
      e.nextAskMs = gained > 0 ? 0 : this.clock.now() + this.retryMs
    }
  }

  /** Answers a transfer request: gives what this node can spare, keeping its own horizon's demand. */
  private serve (data: Uint8Array, from: string): Uint8Array {
    const req = decodeRequest(data)
    if (req === undefined) {
      this.stats.rejected++
      throw new Error('malformed escrow request')
    }
    this.stats.served++
    const t = this.tables.get(req.limit)
    const now = this.clock.now()
    if (t === undefined) return encodeAnswer(req.epoch, 0, this.incarnation, undefined)
    const e = t.entry(req.key, now)
    if (e.epoch !== req.epoch) return encodeAnswer(e.epoch, 0, this.incarnation, undefined)
    const recipient = `${from}@${req.incarnation}`
    e.given ??= new Map()
    let cumulative = e.given.get(recipient) ?? 0
    const keep = Math.ceil(rateOf(e, now) * this.horizonMs)
    const grant = Math.min(req.want, Math.floor(e.available - keep))
    if (grant > 0) {
      cumulative += grant
      e.given.set(recipient, cumulative)
      e.givenTotal += grant
      this.stats.rightsGiven += grant
    }
    let hint: string | undefined
    if (grant < req.want) {
      // Point to the recipient that got the most from this node: it may have rights to spare.
      let best = 0
      for (const [r, n] of e.given) {
        const peer = r.slice(0, r.lastIndexOf('@'))
        if (n > best && peer !== from && peer !== this.peerId) {
          best = n
          hint = peer
        }
      }
    }
    return encodeAnswer(e.epoch, cumulative, this.incarnation, hint)
  }
}

interface Request { limit: string, key: string, epoch: number, want: number, incarnation: number }
interface Answer { epoch: number, cumulative: number, incarnation: number, hint: string | undefined }

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

export function encodeRequest (limit: string, key: string, epoch: number, want: number, incarnation: number): Uint8Array {
  return encode([WIRE_VERSION, limit, key, epoch, want, incarnation])
}

/** Decodes a transfer request; undefined when malformed. */
export function decodeRequest (data: Uint8Array): Request | undefined {
  let v: unknown
  try { v = decode(data) } catch { return undefined }
  if (!Array.isArray(v) || v.length !== 6 || v[0] !== WIRE_VERSION) return undefined
  const [, limit, key, epoch, want, incarnation] = v as unknown[]
  if (typeof limit !== 'string' || limit.length > 200 || typeof key !== 'string' || key.length > 1024) return undefined
  if (!isCount(epoch) || !isCount(want) || want < 1 || !isCount(incarnation)) return undefined
  return { limit, key, epoch, want, incarnation }
}

export function encodeAnswer (epoch: number, cumulative: number, incarnation: number, hint: string | undefined): Uint8Array {
  return encode([WIRE_VERSION, epoch, cumulative, incarnation, hint ?? null])
}

/** Decodes a transfer answer; undefined when malformed. */
export function decodeAnswer (data: Uint8Array): Answer | undefined {
  let v: unknown
  try { v = decode(data) } catch { return undefined }
  if (!Array.isArray(v) || v.length !== 5 || v[0] !== WIRE_VERSION) return undefined
  const [, epoch, cumulative, incarnation, hint] = v as unknown[]
  if (!isCount(epoch) || !isCount(cumulative) || !isCount(incarnation)) return undefined
  if (hint !== null && (typeof hint !== 'string' || hint.length === 0 || hint.length > 200)) return undefined
  return { epoch, cumulative, incarnation, hint: hint === null ? undefined : hint as string }
}
