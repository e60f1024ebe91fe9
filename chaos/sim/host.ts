import type { Scenario } from '../scenario.js'
import type { Envelope } from './exchange.js'
import type { PartialFacts } from './merge.js'
import { createSim, type RunOptions, type Sim } from './run.js'

/** What a host sends back after a window: per unit, its outbox and node notes. */
export interface WindowOut {
  outboxes: Envelope[][]
  notes: number[][]
}

/**
 * The units (regions) one thread runs. Each window, every unit in turn takes its inbox,
 * applies the fleet's notes of the last window and runs up to the window's end; a host
 * holding two units runs them alternately, which gives the same result as one thread
 * each (units share nothing but the envelopes and notes handed over between windows).
 */
export class Host {
  private readonly sims: Sim[]
  private readonly outboxes: Envelope[][]
  private readonly notes: number[][]

  constructor (s: Scenario, opts: Pick<RunOptions, 'seed' | 'durationMs'>, readonly units: number[]) {
    this.outboxes = units.map(() => [])
    this.notes = units.map(() => [])
    this.sims = units.map((region, u) => createSim(s, opts, { region, outbox: this.outboxes[u], notes: this.notes[u] }))
  }

  /** Runs one window up to `target`: `inboxes` per unit of this host, `notes` of every unit in unit order. */
  async step (target: number, inboxes: Envelope[][], notes: number[][]): Promise<WindowOut> {
    const out: WindowOut = { outboxes: [], notes: [] }
    for (let u = 0; u < this.sims.length; u++) {
      const sim = this.sims[u]
      for (const n of notes) sim.view.apply(n)
      for (const env of inboxes[u]) sim.receive(env)
      while (!sim.runUntil(target)) await new Promise(resolve => setImmediate(resolve))
      // Let continuations woken at the end run now, before another unit takes the thread.
      await new Promise(resolve => setImmediate(resolve))
      out.outboxes.push(this.outboxes[u].splice(0))
      out.notes.push(this.notes[u].splice(0))
    }
    return out
  }

  finish (): PartialFacts[] {
    return this.sims.map(sim => sim.partial())
  }
}
