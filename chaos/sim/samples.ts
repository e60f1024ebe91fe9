import type { DeltaMessage } from '../../gossip/codec.js'

/**
 * Convergence after traffic: a sample is one admission (replica r counted `count` in
 * cell (limit, hash, epoch) at time `at`); it converges when every peer of r's gossip
 * group that could hear r at that moment has accepted a message of r carrying that
 * cell with at least `count` (or, checked at each running audit, holds it however it
 * arrived: a pull or a relay). Samples are taken at a fixed rate (the first admission
 * after each sampling instant), so no randomness is drawn for them.
 */
export interface Sample {
  rep: number
  limit: string
  key: string
  hash: number
  epoch: number
  count: number
  at: number
  /** 1 for each receiver still waiting. */
  pending: Uint8Array
  left: number
  /** Limit index, for the receiver's accepted range. */
  meta: number
  /** Whether a message carrying it left its node (else a crash can take it along). */
  published: boolean
}

export class Samples {
  private readonly open = new Map<number, Sample[]>()
  private next = 0
  readonly times: number[] = []
  unconverged = 0
  taken = 0
  diedWithCrash = 0

  constructor (private readonly size: number, private readonly everyMs: number, private readonly maxAgeMs: number) {}

  /** Whether the admission at `now` is to be sampled. */
  due (now: number): boolean {
    return this.everyMs > 0 && now >= this.next
  }

  take (s: Omit<Sample, 'pending' | 'left' | 'published'>, receivers: number[]): void {
    this.next = s.at + this.everyMs
    if (receivers.length === 0) return
    const pending = new Uint8Array(this.size)
    for (const r of receivers) pending[r] = 1
    const sample: Sample = { ...s, pending, left: receivers.length, published: false }
    this.taken++
    const list = this.open.get(s.rep)
    if (list === undefined) this.open.set(s.rep, [sample])
    else list.push(sample)
  }

  /** Open samples of replica `rep` that message `msg` carries. */
  covering (rep: number, msg: DeltaMessage): Sample[] | undefined {
    const list = this.open.get(rep)
    if (list === undefined || list.length === 0) return undefined
    let out: Sample[] | undefined
    for (const g of msg.groups) {
      for (const s of list) {
        if (s.limit !== g.limit) continue
        const e = g.entries
        for (let j = 0; j < e.length; j += 3) {
          if (e[j] === s.hash && e[j + 1] === s.epoch && e[j + 2] >= s.count) {
            s.published = true
            ;(out ??= []).push(s)
            break
          }
        }
      }
    }
    return out
  }

  /** A copy carrying `samples` was accepted by `to` (and its epoch was in `to`'s range). */
  covered (samples: Sample[], to: number, now: number, accepts: (s: Sample) => boolean): void {
    for (const s of samples) {
      if (s.pending[to] !== 1 || !accepts(s)) continue
      s.pending[to] = 0
      if (--s.left === 0) this.close(s, now - s.at)
    }
  }

  /** A receiver is gone (crashed or left): it no longer has to converge. */
  drop (node: number, now: number): void {
    for (const list of this.open.values()) {
      for (const s of list.slice()) {
        if (s.pending[node] !== 1) continue
        s.pending[node] = 0
        if (--s.left === 0) this.close(s, now - s.at)
      }
    }
  }

  /**
   * Replica `rep` crashed: its samples never published died with it (counted as lost at
   * crash, not as unconverged); published ones are still in flight.
   */
  crashed (rep: number): void {
    const list = this.open.get(rep)
    if (list === undefined) return
    for (const s of list.slice()) {
      if (s.published) continue
      list.splice(list.indexOf(s), 1)
      this.diedWithCrash++
    }
    if (list.length === 0) this.open.delete(rep)
  }

  /** Open samples taken before `at`, oldest first. */
  takenBefore (at: number): Sample[] {
    const out: Sample[] = []
    for (const list of this.open.values()) for (const s of list) if (s.at < at) out.push(s)
    return out.sort((a, b) => a.at - b.at || a.rep - b.rep)
  }

  /** Closes samples older than the max age as unconverged (their cell left every window). */
  expire (now: number): void {
    for (const list of this.open.values()) {
      for (const s of list.slice()) if (now - s.at > this.maxAgeMs) this.close(s, Infinity)
    }
  }

  private close (s: Sample, ms: number): void {
    const list = this.open.get(s.rep) as Sample[]
    list.splice(list.indexOf(s), 1)
    if (list.length === 0) this.open.delete(s.rep)
    if (ms === Infinity) this.unconverged++
    else this.times.push(ms)
  }

  /** Closes everything still open as unconverged (end of run). */
  finish (): void {
    for (const list of [...this.open.values()]) for (const s of list.slice()) this.close(s, Infinity)
  }
}

/** The p-quantile of `xs` (nearest rank) with `inf` extra values at +Infinity; null when it is infinite. */
export function quantileOf (xs: number[], inf: number, p: number): number | null {
  const n = xs.length + inf
  if (n === 0) return null
  const sorted = xs.slice().sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil(p * n))
  return rank <= sorted.length ? sorted[rank - 1] : null
}
