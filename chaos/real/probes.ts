import type { Random } from '../../membership/random.js'
import type { LimitMeta } from '../scenario.js'
import type { KeyCells, LimitTruth } from '../sim/truth.js'
import { lagging, type AuditSetup } from './audit.js'
import type { Cluster } from './cluster.js'

/**
 * Convergence probes of a real run: poll the nodes (views of the audited keys, or
 * membership) until they reach a state, and time it. Polls cost one IPC round trip per
 * node, so they run every 50-100 ms, which is also their resolution.
 */
export interface Probes {
  /** Keys the probes inspect per limit: the busiest half, then a seeded sample of the rest. */
  auditKeys(): string[][]
  /**
   * Polls until no view (or only node `only`'s) lacks a count that the audited keys
   * had when called; ms from `from`, or null at the end of the run.
   */
  converged(from: number, opts?: { only?: number, everyMs?: number }): Promise<number | null>
  /** Polls membership until every live node i holds want(i) members alive, while valid(); ms, or null. */
  members(valid: () => boolean, want: (i: number) => number): Promise<number | null>
}

export interface ProbesInit {
  cluster: Cluster
  setup: AuditSetup
  metas: LimitMeta[]
  truths: LimitTruth[]
  /** Keys per limit the probes inspect. */
  auditKeys: number
  rnd: Random
  /** Machine time at which the run ends: probes give up then. */
  runEnd: () => number
  say: (line: string) => void
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

export function createProbes (init: ProbesInit): Probes {
  const { cluster, setup, metas, truths } = init

  const auditKeysOf = (k: number): string[] => {
    const all = [...truths[k].byKey.values()]
    const n = init.auditKeys
    if (all.length <= n) return all.map(c => c.key)
    const top = all.slice().sort((a, b) => b.total - a.total || (a.key < b.key ? -1 : 1)).slice(0, Math.ceil(n / 2))
    const chosen = new Set(top.map(c => c.key))
    while (chosen.size < n) chosen.add(all[Math.floor(init.rnd() * all.length)].key)
    return [...chosen]
  }

  /** The counts every cell of `keys` has now: what views must reach. */
  const countsNow = (keys: string[][]): (k: number, cells: KeyCells, j: number) => number | undefined => {
    const snap = keys.map((ks, k) => new Map(ks.map(key => {
      const cells = truths[k].byKey.get(key)
      const m = new Map<string, number>()
      if (cells !== undefined) for (let j = 0; j < cells.epoch.length; j++) m.set(`${cells.epoch[j]}|${cells.rep[j]}`, cells.count[j])
      return [key, m]
    })))
    return (k, cells, j) => snap[k].get(cells.key)?.get(`${cells.epoch[j]}|${cells.rep[j]}`)
  }

  return {
    auditKeys: () => metas.map((_, k) => auditKeysOf(k)),
    async converged (from, opts = {}) {
      const everyMs = opts.everyMs ?? 100
      const keys = metas.map((_, k) => auditKeysOf(k))
      const expected = countsNow(keys)
      for (;;) {
        const snaps = await cluster.snapshot(keys)
        const judged = opts.only === undefined ? snaps : snaps.filter(x => x.node === opts.only)
        const examples: string[] = []
        if (judged.length > 0 && lagging(setup, snaps, keys, expected, opts.only, examples) === 0) return Date.now() - from
        if (Date.now() + everyMs > init.runEnd()) {
          init.say(`still lagging at the end of the run: ${examples.join('; ')}`)
          return null
        }
        await sleep(everyMs)
      }
    },
    async members (valid, want) {
      const from = Date.now()
      while (valid() && Date.now() < init.runEnd()) {
        const st = await cluster.stats()
        if (st.length > 0 && st.every(x => x.alive === want(x.node))) return Date.now() - from
        await sleep(100)
      }
      return null
    }
  }
}
