import type { Random } from '../../membership/random.js'
import type { Marker } from '../summary.js'
import type { Cluster } from './cluster.js'
import { selectNodes, type RealPlan } from './plan.js'
import type { Probes } from './probes.js'
import type { RealSamples } from './samples.js'

/** A partition of the run, as membership saw it. */
export interface PartitionFacts {
  atMs: number
  /** Node indexes on each side (nodes running at the cut). */
  sides: number[][]
  /** From the cut until every node held every node of other sides not alive (suspect after 3 heartbeats); null: not before the heal. */
  detectedMs: number | null
  healAtMs: number | null
  /** From the heal until every node held every other alive again. */
  rejoinedMs: number | null
}

/** What a restarted node did. */
export interface RestartFacts {
  node: number
  peerId: string
  /** Replica keys before and after: the same peer id, a new incarnation. */
  before: string
  after: string | null
  /** From spawn to ready (start-up pull included), ms. */
  readyMs: number | null
  startupSync: { peers: number, failed: number, pages: number, merged: number } | null
  /** From ready until its view held every count the mesh had when it was ready (audited keys); null: never. */
  caughtUpMs: number | null
}

/** What the timeline records, for the summary. */
export interface TimelineFacts {
  markers: Marker[]
  /** Side of every node index, per partition (the bounds' phases). */
  phases: Int32Array[]
  /** Times (ms from t0) of node starts after the first (restarts, joins), and of crashes. */
  starts: number[]
  crashes: number[]
  /** Per heal: ms until the audited views held every count of the heal's moment. */
  healTimes: Array<number | null>
  partitions: PartitionFacts[]
  restarts: RestartFacts[]
}

export interface TimelineInit {
  plan: RealPlan
  cluster: Cluster
  probes: Probes
  samples: RealSamples
  /** Machine time of the start of traffic. */
  t0: number
  rnd: Random
  /** Runs `fn` in `ms` (the run cancels what is left at its end). */
  at: (ms: number, fn: () => void) => void
  say: (line: string) => void
  /** Background work (probes, restarts) the run waits for before its final audit. */
  tasks: Array<Promise<void>>
  /** A description of how partitions are made, for the progress lines. */
  cutBy: string
}

/** Schedules the scenario's partitions, heals, crashes and restarts, joins and leaves on real processes. */
export function scheduleTimeline (init: TimelineInit): TimelineFacts {
  const { plan, cluster, probes, samples, t0, say, tasks } = init
  const s = plan.scenario
  const F = s.gossip.flushIntervalMs
  const facts: TimelineFacts = { markers: [], phases: [], starts: [], crashes: [], healTimes: [], partitions: [], restarts: [] }
  const running = (): number[] => cluster.running()

  const restart = (i: number, before: number): void => {
    const r: RestartFacts = { node: i, peerId: cluster.reps[before].key.split('@')[0], before: cluster.reps[before].key, after: null, readyMs: null, startupSync: null, caughtUpMs: null }
    facts.restarts.push(r)
    const spawnedAt = Date.now()
    say(`restart node ${i} (same identity file, new incarnation)`)
    tasks.push(cluster.spawn(i).then(async ready => {
      r.after = ready.replica
      r.readyMs = ready.readyAt - spawnedAt
      r.startupSync = ready.startupSync ?? null
      facts.starts.push(ready.readyAt - t0)
      facts.markers.push({ atMs: ready.readyAt - t0, kind: 'restart', label: `node ${i} back` })
      r.caughtUpMs = await probes.converged(ready.readyAt, { only: i })
      say(`node ${i} ready ${r.readyMs} ms after its restart (start-up pull merged ${ready.startupSync?.merged ?? 0} entries from ${ready.startupSync?.peers ?? 0} peers), caught up ${r.caughtUpMs === null ? 'never' : `${r.caughtUpMs} ms later`}`)
    }, (err: Error) => { cluster.nodeFailures.push(`restart of node ${i}: ${err.message.split('\n')[0]}`) }))
  }

  s.events.forEach((e, idx) => {
    const fire = (atMs: number): void => {
      init.at(t0 + atMs - Date.now(), () => {
        switch (e.kind) {
          case 'partition': {
            const side = new Int32Array(plan.size).fill(e.groups.length)
            e.groups.forEach((sels, g) => { for (const sel of sels) for (const i of selectNodes(plan, running(), sel, init.rnd)) side[i] = g })
            const cutAt = Date.now()
            cluster.applyCut(side)
            facts.phases.push(side.slice())
            facts.markers.push({ atMs, kind: 'partition', label: `split into ${new Set(side).size} groups` })
            const sides = [...new Set(side)].sort((a, b) => a - b).map(g => Array.from(side).flatMap((x, i) => x === g && cluster.state[i] !== 'down' ? [i] : [])).filter(g => g.length > 0)
            const p: PartitionFacts = { atMs, sides, detectedMs: null, healAtMs: null, rejoinedMs: null }
            facts.partitions.push(p)
            say(`partition: ${sides.map(g => `[${g.join(',')}]`).join(' | ')} (${init.cutBy})`)
            // Membership sees it when every node holds only its own side alive.
            tasks.push(probes.members(() => cluster.cut === side, i => running().filter(j => j !== i && side[j] === side[i]).length).then(ms => {
              if (ms !== null) p.detectedMs = Date.now() - cutAt
              say(ms === null ? 'membership did not see the partition before it healed' : `membership saw the partition after ${p.detectedMs} ms`)
            }))
            return
          }
          case 'heal': {
            const healAt = Date.now()
            cluster.applyCut(undefined)
            facts.markers.push({ atMs, kind: 'heal', label: 'heal' })
            say('heal')
            const p = facts.partitions[facts.partitions.length - 1]
            if (p !== undefined) {
              p.healAtMs = atMs
              tasks.push(probes.members(() => cluster.cut === undefined, i => running().filter(j => j !== i).length).then(ms => {
                if (ms !== null) p.rejoinedMs = Date.now() - healAt
                say(ms === null ? 'members did not all see each other alive again' : `every node sees every other alive again ${p.rejoinedMs} ms after the heal`)
              }))
            }
            const slot = facts.healTimes.length
            facts.healTimes.push(null)
            tasks.push(probes.converged(healAt).then(ms => {
              facts.healTimes[slot] = ms
              say(`views converged ${ms === null ? 'never' : `${ms} ms`} after the heal`)
            }))
            return
          }
          case 'crash': {
            const victims = selectNodes(plan, running(), e.nodes, init.rnd)
            const now = Date.now()
            for (const i of victims) {
              const before = cluster.kill(i)
              facts.crashes.push(now - t0)
              // Samples it may not have flushed died with it.
              samples.crashed(i, now, F + 100)
              if (e.restartAfterMs !== undefined) init.at(e.restartAfterMs, () => { if (cluster.state[i] === 'down') restart(i, before) })
            }
            facts.markers.push({ atMs, kind: 'crash', label: `crash ${victims.length}` })
            say(`SIGKILL node${victims.length === 1 ? '' : 's'} ${victims.join(', ')}`)
            if (e.everyMs !== undefined) {
              const next = atMs + e.everyMs
              if (next <= (e.untilMs ?? s.durationMs) && next < s.durationMs) fire(next)
            }
            return
          }
          case 'join': {
            const list = plan.joinNodes.get(idx) as number[]
            for (const i of list) {
              tasks.push(cluster.spawn(i).then(r => { facts.starts.push(r.readyAt - t0) }, (err: Error) => { cluster.nodeFailures.push(`join of node ${i}: ${err.message.split('\n')[0]}`) }))
            }
            facts.markers.push({ atMs, kind: 'join', label: `join ${list.length} in ${e.region}` })
            say(`join nodes ${list.join(', ')}`)
            return
          }
          case 'leave': {
            const gone = selectNodes(plan, running(), e.nodes, init.rnd)
            for (const i of gone) void cluster.stop(i)
            facts.markers.push({ atMs, kind: 'leave', label: `leave ${gone.length}` })
            say(`nodes ${gone.join(', ')} leave (graceful stop)`)
          }
        }
      })
    }
    fire(e.atMs)
  })
  return facts
}
