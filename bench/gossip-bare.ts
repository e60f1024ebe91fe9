/**
 * bench:gossip's baseline: the same number of node processes publishing the same
 * number of messages of the same size per second through gossipsub alone (no mesh
 * node, no limiter, no counters: bench/gossip-bare-node.ts). Measured in the same run
 * as the mesh, it separates what meshlimit adds from what the libp2p stack costs on
 * this machine at that message rate.
 */
import { fileURLToPath } from 'node:url'
import type { BareDone } from './gossip-bare-node.js'
import { startFleet } from './fleet.js'
import { percentile } from './stats.js'

export interface BareInit { nodes: number, perSec: number, bytes: number, seconds: number, psk: number[], loopResolutionMs: number, meshDegree?: number }

export interface BareResult {
  perSec: number
  bytes: number
  cpuMsPerNodePerSec: number
  /** Time until every other node had a message: p50 / p99 over messages. */
  deliveryP50Ms: number
  deliveryP99Ms: number
  /** Messages some node never received, of all published while measuring. */
  undelivered: number
  eventLoopDelayP99Ms: number
  eventLoopDelayMaxMs: number
}

/** The q-quantile of xs, nearest rank as in every bench (bench/stats.ts); NaN when empty. */
export const pct = (xs: number[], q: number): number => percentile(Float64Array.from(xs).sort(), q)

export async function runBareBaseline (init: BareInit): Promise<BareResult> {
  const fleet = await startFleet(fileURLToPath(new URL('./gossip-bare-node.js', import.meta.url)), init.nodes, {
    what: 'bench:gossip baseline',
    // 'done' comes after the measured seconds.
    timeoutMs: (init.seconds + 60) * 1000,
    start: (index, bootstrap) => ({ type: 'start', psk: init.psk, bootstrap, meshDegree: init.meshDegree, index })
  })
  const { children, next } = fleet
  try {
    for (const c of children) c.send({ type: 'go', perSec: init.perSec, bytes: init.bytes, seconds: init.seconds, loopResolutionMs: init.loopResolutionMs })
    const done: BareDone[] = []
    for (let i = 0; i < children.length; i++) done.push((await next('done')) as unknown as BareDone)
    // Per message (origin, seq): the latest of its receivers.
    const last = new Map<number, { n: number, ms: number }>()
    for (const d of done) {
      for (const [origin, seq, ms] of d.received) {
        const id = origin * 1_000_000 + seq
        const e = last.get(id)
        if (e === undefined) last.set(id, { n: 1, ms })
        else { e.n++; e.ms = Math.max(e.ms, ms) }
      }
    }
    const published = done.reduce((n, d) => n + d.published, 0)
    const complete = [...last.values()].filter(e => e.n === init.nodes - 1).map(e => e.ms)
    return {
      perSec: init.perSec,
      bytes: init.bytes,
      cpuMsPerNodePerSec: Math.round(done.reduce((n, d) => n + d.cpuMicros, 0) / 1000 / init.nodes / init.seconds),
      deliveryP50Ms: Number(pct(complete, 0.5).toFixed(1)),
      deliveryP99Ms: Number(pct(complete, 0.99).toFixed(1)),
      undelivered: published - complete.length,
      eventLoopDelayP99Ms: Number(Math.max(...done.map(d => d.loopDelayP99Ms)).toFixed(2)),
      eventLoopDelayMaxMs: Number(Math.max(...done.map(d => d.loopDelayMaxMs)).toFixed(2))
    }
  } finally {
    await fleet.stop()
  }
}
