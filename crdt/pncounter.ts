import { GCounter, type GCounterState } from './gcounter.js'

export interface PNCounterState {
  p: GCounterState
  n: GCounterState
}

/** Increment/decrement counter built from two G-Counters; value = P - N. */
export class PNCounter {
  private readonly p = new GCounter()
  private readonly n = new GCounter()

  increment (replica: string, by = 1): void {
    this.p.increment(replica, by)
  }

  decrement (replica: string, by = 1): void {
    this.n.increment(replica, by)
  }

  get value (): number {
    return this.p.value - this.n.value
  }

  merge (state: PNCounterState): boolean {
    const a = this.p.merge(state.p)
    const b = this.n.merge(state.n)
    return a || b
  }

  state (): PNCounterState {
    return { p: this.p.state(), n: this.n.state() }
  }

  takeDelta (): PNCounterState {
    return { p: this.p.takeDelta(), n: this.n.takeDelta() }
  }
}
