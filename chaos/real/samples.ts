/**
 * Convergence samples of a real run: every `everyMs`, the next admission is watched on
 * every live peer of its gossip group that is not cut from it; each peer reports the
 * machine time at which it first held the admitted count (checked every 5 ms, so a
 * figure is late by up to 5 ms plus an IPC hop). A sample converges when every peer
 * did; one still open after `maxAgeMs` (its cell left every window) never converged.
 */
interface Open {
  node: number
  at: number
  pending: Set<number>
  last: number
}

export class RealSamples {
  private readonly open = new Map<number, Open>()
  private nextAt = -Infinity
  private nextId = 0
  readonly times: number[] = []
  unconverged = 0
  diedWithCrash = 0

  constructor (private readonly everyMs: number, private readonly maxAgeMs: number, private readonly unwatch: (node: number, sid: number) => void) {}

  /** Whether an admission at machine time `t` is to be sampled. */
  due (t: number): boolean {
    return this.everyMs > 0 && t >= this.nextAt
  }

  /** Starts a sample of an admission by `node` at `t`, watched by `receivers`; returns its id (undefined: nobody to wait for). */
  take (node: number, t: number, receivers: number[]): number | undefined {
    this.nextAt = t + this.everyMs
    if (receivers.length === 0) return undefined
    const sid = this.nextId++
    this.open.set(sid, { node, at: t, pending: new Set(receivers), last: t })
    return sid
  }

  held (sid: number, receiver: number, at: number): void {
    const s = this.open.get(sid)
    if (s === undefined || !s.pending.delete(receiver)) return
    if (at > s.last) s.last = at
    if (s.pending.size === 0) {
      this.open.delete(sid)
      this.times.push(Math.max(0, s.last - s.at))
    }
  }

  /** A receiver is gone: it no longer has to converge. */
  drop (receiver: number, now: number): void {
    for (const [sid, s] of this.open) {
      if (!s.pending.delete(receiver)) continue
      if (s.pending.size === 0) {
        this.open.delete(sid)
        this.times.push(Math.max(0, Math.max(s.last, now) - s.at))
      }
    }
  }

  /** The admitting node was SIGKILLed at `at`: samples it may not have flushed yet died with it. */
  crashed (node: number, at: number, flushMs: number): void {
    for (const [sid, s] of this.open) {
      if (s.node !== node || s.at < at - flushMs) continue
      this.close(sid, s)
      this.diedWithCrash++
    }
  }

  /** Samples older than the max age never converged. */
  expire (now: number): void {
    for (const [sid, s] of this.open) {
      if (now - s.at <= this.maxAgeMs) continue
      this.close(sid, s)
      this.unconverged++
    }
  }

  /** Everything still open never converged (end of run). */
  finish (): void {
    for (const [sid, s] of this.open) {
      this.close(sid, s)
      this.unconverged++
    }
  }

  private close (sid: number, s: Open): void {
    this.open.delete(sid)
    for (const r of s.pending) this.unwatch(r, sid)
  }
}
