import type { Random } from '../../membership/random.js'
import type { LimitMeta, Scenario } from '../scenario.js'
import { auditKey, newTally, type AuditContext, type AuditTally, type ReplicaInfo } from './audit.js'
import type { SimNetwork } from './network.js'
import type { SimNode } from './node.js'
import type { Samples } from './samples.js'
import type { LimitTruth } from './truth.js'

/** What the running audits and convergence probes read (owned by the run). */
export interface ProbeInit {
  s: Scenario
  metas: LimitMeta[]
  truths: LimitTruth[]
  nodes: Array<SimNode | undefined>
  replicas: ReplicaInfo[]
  samples: Samples
  network: SimNetwork
  size: number
  rAudit: Random
  /** Where running audits count what they find. */
  tally: AuditTally
  now: () => number
  auditCtx: () => AuditContext
}

/**
 * The running audit (every auditEvery, on a few keys), the check of waiting convergence
 * samples against real views, and the convergence probe (after a heal, after the
 * traffic) of one run.
 */
export function createProbes (init: ProbeInit): { audit: () => void, sampleViews: () => void, healed: (before: number) => boolean } {
  const { s, metas, truths, nodes, replicas, samples, network, size, rAudit, tally, auditCtx } = init
  /** Keys the running audit inspects: the busiest, then a seeded sample of the rest. */
  const auditKeysOf = (k: number): string[] => {
    const all = [...truths[k].byKey.values()]
    const n = s.measure.auditKeys
    if (all.length <= n) return all.map(c => c.key)
    const top = all.slice().sort((a, b) => b.total - a.total || (a.key < b.key ? -1 : 1)).slice(0, Math.ceil(n / 2))
    const chosen = new Set(top.map(c => c.key))
    while (chosen.size < n) chosen.add(all[Math.floor(rAudit() * all.length)].key)
    return [...chosen]
  }

  const audit = (): void => {
    const ctx = auditCtx()
    metas.forEach((meta, k) => {
      for (const key of auditKeysOf(k)) {
        const cells = truths[k].byKey.get(key)
        if (cells === undefined) continue
        for (const b of nodes) if (b !== undefined) auditKey(ctx, tally, b, meta, cells, false)
      }
    })
  }

  /**
   * Samples still waiting once every copy has landed: a receiver may hold the cell by
   * another path (a gap repair, an anti-entropy pull, a relay); its real view decides.
   * Runs every flush interval, not with the audit: a repaired cell must be seen before
   * it leaves the window, and its convergence time read to the flush, not the second.
   */
  const sampleViews = (): void => {
    for (const smp of samples.takenBefore(init.now() - network.maxTransitMs)) {
      for (let j = 0; j < size; j++) {
        const b = nodes[j]
        if (smp.pending[j] !== 1 || b === undefined) continue
        const pairs = b.limiter.inspect(smp.limit, smp.key, true)?.replicas?.get(replicas[smp.rep].key)
        let has = 0
        if (pairs !== undefined) for (let p = 0; p < pairs.length; p += 2) if (pairs[p] === smp.epoch) has = pairs[p + 1]
        if (has >= smp.count) samples.covered([smp], j, init.now(), () => true)
      }
    }
    samples.expire(init.now())
  }

  /**
   * Whether every audited view holds every count published before `before` (or that
   * left its window). With `before` = Infinity: every count at all, which must also
   * have been published by its live replica (after the last request).
   */
  const healed = (before: number): boolean => {
    const ctx = auditCtx()
    const probe = newTally()
    const all = before === Infinity
    let unpublished = false
    metas.forEach((meta, k) => {
      for (const key of auditKeysOf(k)) {
        const cells = truths[k].byKey.get(key)
        if (cells === undefined) continue
        const probeCtx: AuditContext = { ...ctx, judgeAggregates: true, settledBefore: node => all ? Infinity : Math.min(before, network.oldestInFlight(node)) }
        for (const b of nodes) if (b !== undefined) auditKey(probeCtx, probe, b, meta, cells, false)
        if (!all || meta.scope === 'node') continue
        for (let j = 0; j < cells.epoch.length; j++) {
          if (cells.published[j] < cells.count[j] && replicas[cells.rep[j]].crashedAt === undefined) unpublished = true
        }
      }
    })
    return !unpublished && Object.values(probe.lag).every(v => v === 0)
  }

  return { audit, sampleViews, healed }
}
