import { breach, newTally, type AuditTally, type LagCause } from '../sim/audit.js'
import type { KeyCells, LimitTruth } from '../sim/truth.js'
import type { LimitMeta } from '../scenario.js'
import type { ViewOf } from './protocol.js'

/**
 * Audits of real nodes' views against the truth the parent recorded (every admission,
 * reported by the admitting node before it could gossip it). Stricter than the
 * simulator's: real nodes run anti-entropy (start-up pulls, re-publication), so after
 * the quiet period a missing count is lost whatever happened before, unless a cut is
 * still in force or the count died unpublished with a SIGKILLed process.
 */

/** One incarnation of a node. */
export interface Incarnation {
  node: number
  /** Gossip group (the region under the region topology, 0 for one mesh). */
  group: number
  /** Region label on the mesh (aggregates are named after it). */
  region: string
  /** Replica key, "peerId@incarnation". */
  key: string
  /** Machine time it was ready, and (when it was SIGKILLed) killed, ms. */
  readyAt: number
  crashedAt: number | undefined
}

/** What one live node held when asked. */
export interface Snapshot {
  node: number
  /** Index of the node's current incarnation. */
  rep: number
  /** The node's clock when it read its views. */
  now: number
  /** Per limit index, per key: the view (null when the node does not know the key). */
  views: Array<Map<string, ViewOf | null>>
}

export interface AuditSetup {
  metas: LimitMeta[]
  truths: LimitTruth[]
  reps: Incarnation[]
  repIndex: Map<string, number>
  /** Slots behind and ahead of a node's current slot that it accepts, per limit index. */
  pastSlots(k: number): number
  futureSlots(k: number): number
  /** Whether limit k's other regions arrive as region aggregates (global limits under the region topology). */
  aggregated(k: number): boolean
  /** Whether nodes a and b are cut apart now. */
  cut(a: number, b: number): boolean
}

const REGION_PREFIX = 'region:'

/** Held counts of a view: replica key -> epoch -> count. */
function heldOf (view: ViewOf | null | undefined): Map<string, Map<number, number>> {
  const out = new Map<string, Map<number, number>>()
  if (view === null || view === undefined) return out
  for (const [name, pairs] of view.replicas) {
    const m = new Map<number, number>()
    for (let p = 0; p < pairs.length; p += 2) m.set(pairs[p], pairs[p + 1])
    out.set(name, m)
  }
  return out
}

function inRange (setup: AuditSetup, k: number, snap: Snapshot, epoch: number): boolean {
  const nowEpoch = Math.floor(snap.now / setup.metas[k].slotMs)
  return epoch > nowEpoch - setup.pastSlots(k) && epoch <= nowEpoch + setup.futureSlots(k)
}

/** Per cell of a key: the most any snapshot holds (what reached the mesh). */
function reachedOf (setup: AuditSetup, k: number, cells: KeyCells, snaps: Snapshot[]): number[] {
  const reached = new Array<number>(cells.epoch.length).fill(0)
  for (const s of snaps) {
    const held = heldOf(s.views[k].get(cells.key))
    for (let j = 0; j < cells.epoch.length; j++) {
      const h = held.get(setup.reps[cells.rep[j]].key)?.get(cells.epoch[j]) ?? 0
      if (h > reached[j]) reached[j] = h
    }
  }
  return reached
}

export interface FinalAudit {
  tally: AuditTally
  /** The first few cells some view lacks, in words. */
  missing: string[]
  /** Units some live node lacks (worst node per cell), crash losses excluded. */
  countsLost: number
  /** Units admitted by SIGKILLed incarnations that no live node holds. */
  countsLostAtCrash: number
}

/**
 * The final audit, after the quiet period: every snapshot against the truth, cell by
 * cell (own counts exact, nothing above what was admitted, nothing missing), and
 * region aggregates against their region's total.
 */
export function finalAudit (setup: AuditSetup, snaps: Snapshot[]): FinalAudit {
  const tally = newTally()
  const missing: string[] = []
  let lost = 0
  let atCrash = 0
  const lag = (cause: LagCause, units: number): void => {
    tally.lag[cause]++
    tally.missingUnits[cause] += units
  }
  setup.metas.forEach((meta, k) => {
    for (const cells of setup.truths[k].byKey.values()) {
      const inSome = snaps.some(s => cells.epoch.some(e => inRange(setup, k, s, e)))
      if (!inSome) continue
      const reached = reachedOf(setup, k, cells, snaps)
      const expected = cells.count.map((c, j) => setup.reps[cells.rep[j]].crashedAt === undefined ? c : Math.min(c, reached[j]))
      const worst = new Array<number>(cells.epoch.length).fill(0)
      for (let j = 0; j < cells.epoch.length; j++) {
        if (setup.reps[cells.rep[j]].crashedAt !== undefined && snaps.some(s => inRange(setup, k, s, cells.epoch[j]))) atCrash += cells.count[j] - expected[j]
      }
      /** Per (region label, epoch): the region's expected total, for its aggregate column. */
      const regionTotals = new Map<string, number>()
      if (setup.aggregated(k)) {
        for (let j = 0; j < cells.epoch.length; j++) {
          const id = `${setup.reps[cells.rep[j]].region}|${cells.epoch[j]}`
          regionTotals.set(id, (regionTotals.get(id) ?? 0) + expected[j])
        }
      }
      const admittedTotals = new Map<string, number>()
      for (let j = 0; j < cells.epoch.length; j++) {
        const id = `${setup.reps[cells.rep[j]].region}|${cells.epoch[j]}`
        admittedTotals.set(id, (admittedTotals.get(id) ?? 0) + cells.count[j])
      }
      for (const s of snaps) {
        const me = setup.reps[s.rep]
        const held = heldOf(s.views[k].get(cells.key))
        const take = (name: string, epoch: number): number => {
          const m = held.get(name)
          const h = m?.get(epoch) ?? 0
          m?.delete(epoch)
          return h
        }
        for (let j = 0; j < cells.epoch.length; j++) {
          const e = cells.epoch[j]
          if (!inRange(setup, k, s, e)) continue
          const rep = setup.reps[cells.rep[j]]
          const has = take(rep.key, e)
          if (cells.rep[j] === s.rep) {
            if (has !== cells.count[j]) breach(tally, 'own-count-exact', `node ${s.node} holds ${has} of its own cell (${cells.key}, epoch ${e}) but admitted ${cells.count[j]}`)
            continue
          }
          if (meta.scope === 'node' || rep.group !== me.group) {
            if (has > 0) breach(tally, 'view-not-above-truth', `node ${s.node} holds ${has} from ${rep.key}, a replica outside its gossip group`)
            continue
          }
          if (has > cells.count[j]) {
            breach(tally, 'view-not-above-truth', `node ${s.node} holds ${has} for (${rep.key}, ${cells.key}, epoch ${e}) but only ${cells.count[j]} were admitted`)
            continue
          }
          if (has < expected[j]) {
            if (missing.length < 5) missing.push(`node ${s.node} holds ${has} of ${expected[j]} for (${rep.key}, ${cells.key}, epoch ${e})`)
            lag(setup.cut(rep.node, s.node) ? 'partitioned' : 'unexplained', expected[j] - has)
            worst[j] = Math.max(worst[j], expected[j] - has)
          }
        }
        // What is left in the view: region aggregates, or counts nobody admitted.
        for (const [name, epochs] of held) {
          for (const [e, count] of epochs) {
            if (count <= 0 || !inRange(setup, k, s, e)) continue
            if (name.startsWith(REGION_PREFIX) && setup.aggregated(k)) {
              const region = name.slice(REGION_PREFIX.length, name.lastIndexOf('@'))
              const id = `${region}|${e}`
              if (region === me.region) breach(tally, 'view-not-above-truth', `node ${s.node} holds an aggregate of its own region ${region}`)
              else if (count > (admittedTotals.get(id) ?? 0)) breach(tally, 'view-not-above-truth', `node ${s.node} holds ${count} in region ${region}'s aggregate (${cells.key}, epoch ${e}) but the region admitted ${admittedTotals.get(id) ?? 0}`)
              continue
            }
            breach(tally, 'view-not-above-truth', `node ${s.node} holds ${count} for (${name}, ${cells.key}, epoch ${e}) that no replica admitted`)
          }
        }
        // Every other region's aggregate must have arrived.
        if (setup.aggregated(k)) {
          for (const [id, total] of regionTotals) {
            const [region, epoch] = [id.slice(0, id.lastIndexOf('|')), Number(id.slice(id.lastIndexOf('|') + 1))]
            if (region === me.region || total === 0 || !inRange(setup, k, s, epoch)) continue
            const view = heldOf(s.views[k].get(cells.key))
            let has = 0
            for (const [name, epochs] of view) if (name.startsWith(`${REGION_PREFIX}${region}@`)) has = Math.max(has, epochs.get(epoch) ?? 0)
            if (has < total) {
              if (missing.length < 5) missing.push(`node ${s.node} holds ${has} of ${total} in region ${region}'s aggregate (${cells.key}, epoch ${epoch})`)
              const apart = [...setup.reps.keys()].some(r => setup.reps[r].region === region && setup.cut(setup.reps[r].node, s.node))
              lag(apart ? 'partitioned' : 'unexplained', total - has)
              lost += total - has
            }
          }
        }
      }
      for (const w of worst) lost += w
    }
  })
  if (tally.missingUnits.unexplained > 0) {
    breach(tally, 'no-count-lost', `after the quiet period ${tally.missingUnits.unexplained} units are missing from live views with no cut in force to explain them (anti-entropy runs in real mode), e.g. ${missing[0]}`)
  }
  return { tally, missing, countsLost: lost, countsLostAtCrash: atCrash }
}

/**
 * Cells some snapshot lacks against `expected` (the count each cell must have reached:
 * its count at a heal, at a restart, or at the end of traffic; undefined: not
 * expected), for the convergence probes. A SIGKILLed replica's cell is expected only
 * up to what some snapshot holds; cells across a cut in force, of another gossip
 * group, of node-scoped limits or outside a node's range are not expected. With
 * `only`, only that node's snapshot is judged (the others still tell what reached the mesh).
 */
export function lagging (setup: AuditSetup, snaps: Snapshot[], keys: string[][], expected: (k: number, cells: KeyCells, j: number) => number | undefined, only?: number, examples?: string[]): number {
  let lacking = 0
  setup.metas.forEach((meta, k) => {
    if (meta.scope === 'node') return
    for (const key of keys[k]) {
      const cells = setup.truths[k].byKey.get(key)
      if (cells === undefined) continue
      const reached = reachedOf(setup, k, cells, snaps)
      for (const s of snaps) {
        if (only !== undefined && s.node !== only) continue
        const me = setup.reps[s.rep]
        const held = heldOf(s.views[k].get(key))
        for (let j = 0; j < cells.epoch.length; j++) {
          const rep = setup.reps[cells.rep[j]]
          if (cells.rep[j] === s.rep || rep.group !== me.group || setup.cut(rep.node, s.node) || !inRange(setup, k, s, cells.epoch[j])) continue
          let want = expected(k, cells, j)
          if (want === undefined) continue
          if (rep.crashedAt !== undefined) want = Math.min(want, reached[j])
          const has = held.get(rep.key)?.get(cells.epoch[j]) ?? 0
          if (has >= want) continue
          lacking++
          if (examples !== undefined && examples.length < 5) examples.push(`node ${s.node} holds ${has} of ${want} for (${rep.key}, ${key}, epoch ${cells.epoch[j]})`)
        }
      }
    }
  })
  return lacking
}
