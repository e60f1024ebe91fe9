import { layoutOf } from '../algorithms.js'
import type { Limit, Policy, PolicySet } from './types.js'

/** How one limit changes between two policy sets, and what that does to its counters. */
export interface LimitChange {
  id: string
  /**
   * `added` / `removed`; `ceiling`: only the limit changed (applies at once, usage
   * kept); `layout`: window, slots, rate or algorithm changed (usage re-bucketed);
   * `reset`: window limit <-> concurrency (counters start empty).
   */
  change: 'added' | 'removed' | 'ceiling' | 'layout' | 'reset'
  from?: string
  to?: string
}

export interface PolicyChange {
  id: string
  /** Policy fields (other than limits) whose value changed. */
  fields: string[]
  limits: LimitChange[]
}

export interface PolicyDiff {
  /** One human-readable line per change. */
  lines: string[]
  summary: {
    fromVersion: number
    toVersion: number
    added: string[]
    removed: string[]
    changed: PolicyChange[]
    unchanged: number
  }
}

const FIELDS: Array<keyof Policy> = ['description', 'match', 'key', 'group', 'priority', 'scope', 'shadow', 'replaces', 'ipv4Prefix', 'ipv6Prefix']

function describeLimit (l: Limit): string {
  switch (l.algorithm) {
    case 'token-bucket': return `token-bucket ${l.ratePerSecond}/s burst ${l.limit}, ${l.slots} slots`
    case 'concurrency': return `concurrency ${l.limit} in flight, lease ${l.windowMs} ms`
    case 'fixed-window': return `fixed-window ${l.limit} per ${l.windowMs} ms`
    default: return `sliding-window ${l.limit} per ${l.windowMs} ms, ${l.slots} slots`
  }
}

function limitChange (a: Limit, b: Limit): LimitChange | undefined {
  if (JSON.stringify(a) === JSON.stringify(b)) return undefined
  const from = describeLimit(a)
  const to = describeLimit(b)
  if ((a.algorithm === 'concurrency') !== (b.algorithm === 'concurrency')) return { id: a.id, change: 'reset', from, to }
  const sameLayout = a.algorithm === b.algorithm && a.windowMs === b.windowMs && layoutOf(a).slotMs === layoutOf(b).slotMs && a.ratePerSecond === b.ratePerSecond
  return { id: a.id, change: sameLayout ? 'ceiling' : 'layout', from, to }
}

/** What changes from policy set `a` to `b`, in the terms that matter for running counters. */
export function diffPolicies (a: PolicySet, b: PolicySet): PolicyDiff {
  const before = new Map(a.policies.map(p => [p.id, p]))
  const after = new Map(b.policies.map(p => [p.id, p]))
  const lines: string[] = []
  const added = b.policies.filter(p => !before.has(p.id)).map(p => p.id)
  const removed = a.policies.filter(p => !after.has(p.id)).map(p => p.id)
  for (const id of added) lines.push(`+ policy ${id}`)
  for (const id of removed) lines.push(`- policy ${id} (its counters are dropped)`)
  const changed: PolicyChange[] = []
  let unchanged = 0
  for (const p of b.policies) {
    const q = before.get(p.id)
    if (q === undefined) continue
    const fields = FIELDS.filter(f => JSON.stringify(q[f]) !== JSON.stringify(p[f]))
    const limits: LimitChange[] = []
    const qLimits = new Map(q.limits.map(l => [l.id, l]))
    const pLimits = new Map(p.limits.map(l => [l.id, l]))
    for (const l of p.limits) {
      const old = qLimits.get(l.id)
      if (old === undefined) limits.push({ id: l.id, change: 'added', to: describeLimit(l) })
      else {
        const c = limitChange(old, l)
        if (c !== undefined) limits.push(c)
      }
    }
    for (const l of q.limits) if (!pLimits.has(l.id)) limits.push({ id: l.id, change: 'removed', from: describeLimit(l) })
    if (fields.length === 0 && limits.length === 0) {
      unchanged++
      continue
    }
    changed.push({ id: p.id, fields, limits })
    for (const f of fields) lines.push(`~ policy ${p.id}: ${f} ${JSON.stringify(q[f])} -> ${JSON.stringify(p[f])}${f === 'key' ? ' (counters are per key: new keys start empty)' : ''}`)
    const effect = { added: 'starts empty', removed: 'its counters are dropped', ceiling: 'applies from the next check, usage kept', layout: 'usage re-bucketed into the new layout', reset: 'counters start empty' }
    for (const l of limits) lines.push(`~ limit ${p.id}/${l.id}: ${l.change}${l.from === undefined ? '' : ` ${l.from}`}${l.to === undefined ? '' : ` -> ${l.to}`} (${effect[l.change]})`)
  }
  return { lines, summary: { fromVersion: a.version, toVersion: b.version, added, removed, changed, unchanged } }
}
