/**
 * Gossip benchmark: 10 real libp2p nodes, each its own OS process, on TCP loopback.
 *
 *   npm run bench:gossip -- [--json] [--no-baseline] [--nodes N] [--seconds S] [--flush MS] [--changes-per-sec N]
 *                           [--keys N] [--loop-resolution-ms MS]
 *                           [--mesh-degree D] [--flood-publish] [--idontwant-min-bytes B]  (gossipsub tuning)
 *
 * --changes-per-sec 0 runs an idle mesh (only the probes); --keys sets the key space the
 * checks draw from (default 1,000,000); --loop-resolution-ms the event-loop monitor's
 * sampling (default 1; each sample wakes the process).
 *
 * Measures, under a hot workload spread over the nodes (every check changes a key
 * drawn from 1M, so nearly every check is a new changed key in its flush):
 * - mergeEntriesPerSec: applyDelta throughput on one core, in this process (the merge
 *   path every received entry takes), and decodeMergeEntriesPerSec including decoding;
 * - wireBytesPerChangedKey: counter payload bytes published per changed (key, slot)
 *   entry, and gossipsubBytesPerMessage: the envelope gossipsub adds per message;
 * - convergence: every 100 ms one node counts a probe key; the time until all other
 *   nodes see it (p50, p99);
 * - eventLoopDelayP99Ms: the worst node's event-loop delay p99 under the workload;
 * - baselines.bareGossipsub (unless --no-baseline): the same number of processes
 *   publishing as many messages of the same size through gossipsub alone (bench/gossip-bare.ts),
 *   and cpuRatioToBareGossipsub: what the mesh node adds on top of the libp2p stack.
 * The last stdout line is one JSON object.
 */
import { fileURLToPath } from 'node:url'
import { encodeDelta, decodeDelta, type CounterGroup } from '../gossip/codec.js'
import { generateSwarmKey } from '../gossip/psk.js'
import { createLimiter, seededRandom, VirtualClock } from '../src/index.js'
import { startFleet } from './fleet.js'
import { pct, runBareBaseline } from './gossip-bare.js'
import { stubTransport } from './stub.js'
import { benchArgs } from './args.js'

type Args = { json: boolean, baseline: boolean, nodes: number, seconds: number, flush: number, changesPerSec: number, keys: number, loopResolutionMs: number, meshDegree?: number, floodPublish?: boolean, idontwantMinBytes?: number }

function parseArgs (argv: string[]): Args {
  return benchArgs('bench:gossip', argv, { json: false, baseline: true, nodes: 10, seconds: 15, flush: 50, changesPerSec: 50_000, keys: 1_000_000, loopResolutionMs: 1, meshDegree: undefined, floodPublish: false, idontwantMinBytes: undefined } as Args, { meshDegree: 'number', idontwantMinBytes: 'number' })
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** applyDelta throughput: messages of 10,000 entries over 200,000 keys, merged from 9 peers in turn. */
function mergeThroughput (): { mergeEntriesPerSec: number, decodeMergeEntriesPerSec: number } {
  const T0 = 1_800_000_000_000
  const clock = new VirtualClock(T0)
  const policies = { policies: [{ id: 'hot', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window' as const, limit: 1_000_000_000, window: '1h' }] }] }
  const limiter = createLimiter({ clock, policies, transport: stubTransport('bench'), maxKeys: 1_000_000, flushIntervalMs: 3_600_000 })
  const rnd = seededRandom(7)
  const epoch = Math.floor(T0 / 3_600_000)
  const peers = 9
  const messages = Array.from({ length: 40 }, (_, m) => {
    const entries: number[] = []
    for (let j = 0; j < 10_000; j++) entries.push(Math.floor(rnd() * 200_000) * 7919 + 1, epoch, 1 + m + Math.floor(rnd() * 5))
    const groups: CounterGroup[] = [{ limit: 'hot/w', slotMs: 3_600_000, entries }]
    return { bytes: encodeDelta({ incarnation: 1, sentAtMs: T0, groups })[0], msg: { incarnation: 1, sentAtMs: T0, groups } }
  })
  // Warm up: every key exists and every peer has a column, as in a running mesh.
  for (let p = 0; p < peers; p++) for (const m of messages) limiter.applyDelta(`peer-${p}`, m.msg)
  let entries = 0
  let t0 = performance.now()
  for (let r = 0; r < 5; r++) for (let p = 0; p < peers; p++) for (const m of messages) { limiter.applyDelta(`peer-${p}`, m.msg); entries += 10_000 }
  const mergeEntriesPerSec = entries / ((performance.now() - t0) / 1000)
  entries = 0
  t0 = performance.now()
  for (let r = 0; r < 3; r++) {
    for (let p = 0; p < peers; p++) {
      for (const m of messages) {
        const d = decodeDelta(m.bytes)
        if (d.ok) limiter.applyDelta(`peer-${p}`, d.msg)
        entries += 10_000
      }
    }
  }
  const decodeMergeEntriesPerSec = entries / ((performance.now() - t0) / 1000)
  limiter.close()
  return { mergeEntriesPerSec: Math.round(mergeEntriesPerSec), decodeMergeEntriesPerSec: Math.round(decodeMergeEntriesPerSec) }
}

interface Report { markersSent?: number, repairRequests?: number, messagesRepaired?: number, cpuMicros: number, allMessagesSent: number, checks: number, bytesSent: number, messagesSent: number, entriesSent: number, republishBytes: number, merged: number, peers: number, loopDelayP99Ms: number, loopDelayMaxMs: number }

async function main (): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const log = (s: string): void => { if (!args.json) console.log(s) }
  const merge = mergeThroughput()
  log(`merge: ${(merge.mergeEntriesPerSec / 1e6).toFixed(2)} M entries/s (decode + merge ${(merge.decodeMergeEntriesPerSec / 1e6).toFixed(2)} M/s)`)

  const psk = [...generateSwarmKey()]
  const probeSent = new Map<string, number>()
  const probeSeen = new Map<string, number[]>()
  const perNode = Math.round(args.changesPerSec / args.nodes)
  const fleet = await startFleet(fileURLToPath(new URL('./gossip-node.js', import.meta.url)), args.nodes, {
    what: 'bench:gossip',
    start: (i, bootstrap) => ({ type: 'start', bootstrap, psk, flushIntervalMs: args.flush, checksPerSec: perNode, keys: args.keys, seed: i + 1, loopResolutionMs: args.loopResolutionMs, meshDegree: args.meshDegree, floodPublish: args.floodPublish, idontwantMinBytes: args.idontwantMinBytes }),
    onMessage: m => {
      if (m.type === 'probe-sent') probeSent.set(m.id as string, m.at as number)
      else if (m.type === 'probe-seen') probeSeen.get(m.id as string)?.push(m.at as number)
      else return false
      return true
    }
  })
  const { children, next } = fleet
  let result: (Record<string, unknown> & { cpuMsPerNodePerSec: number }) | undefined
  let baselineLoad: { perSec: number, bytes: number } | undefined
  try {
    log(`${args.nodes} nodes up; hot workload ${args.changesPerSec} changes/s for ${args.seconds} s, flush every ${args.flush} ms`)
    for (const c of children) c.send({ type: 'traffic', on: true })
    await sleep(2000)
    const report = async (): Promise<Report[]> => {
      for (const c of children) c.send({ type: 'report' })
      const rs: Report[] = []
      for (let i = 0; i < children.length; i++) rs.push((await next('report')) as unknown as Report)
      return rs
    }
    const before = await report()
    const t0 = performance.now()
    const rnd = seededRandom(99)
    let probes = 0
    while (performance.now() - t0 < args.seconds * 1000) {
      const id = `p${probes++}`
      const from = Math.floor(rnd() * children.length)
      probeSeen.set(id, [])
      children.forEach((c, i) => { if (i !== from) c.send({ type: 'expect', id }) })
      children[from].send({ type: 'probe', id })
      await sleep(100)
    }
    const elapsed = (performance.now() - t0) / 1000
    const after = await report()
    for (const c of children) c.send({ type: 'traffic', on: false })
    await sleep(500)
    const sum = (rs: Report[], f: (r: Report) => number): number => rs.reduce((n, r) => n + f(r), 0)
    const bytes = sum(after, r => r.bytesSent) - sum(before, r => r.bytesSent)
    const entries = sum(after, r => r.entriesSent) - sum(before, r => r.entriesSent)
    const messages = sum(after, r => r.messagesSent) - sum(before, r => r.messagesSent)
    const changes = sum(after, r => r.checks) - sum(before, r => r.checks)
    const republished = sum(after, r => r.republishBytes) - sum(before, r => r.republishBytes)
    const cpuMs = (sum(after, r => r.cpuMicros) - sum(before, r => r.cpuMicros)) / 1000
    const allMessages = sum(after, r => r.allMessagesSent) - sum(before, r => r.allMessagesSent)
    const markers = sum(after, r => r.markersSent ?? 0) - sum(before, r => r.markersSent ?? 0)
    const repairRequests = sum(after, r => r.repairRequests ?? 0) - sum(before, r => r.repairRequests ?? 0)
    const repaired = sum(after, r => r.messagesRepaired ?? 0) - sum(before, r => r.messagesRepaired ?? 0)
    const convergence: number[] = []
    let incomplete = 0
    for (const [id, seen] of probeSeen) {
      const sent = probeSent.get(id)
      if (sent === undefined || seen.length < children.length - 1) { incomplete++; continue }
      convergence.push(Math.max(...seen) - sent)
    }
    const out = {
      bench: 'gossip',
      node: process.version,
      nodes: args.nodes,
      flushIntervalMs: args.flush,
      meshDegree: args.meshDegree ?? 3,
      floodPublish: args.floodPublish ?? false,
      changedKeysPerSec: Math.round(changes / elapsed),
      mergeEntriesPerSec: merge.mergeEntriesPerSec,
      decodeMergeEntriesPerSec: merge.decodeMergeEntriesPerSec,
      wireBytesPerChangedKey: Number((bytes / entries).toFixed(2)),
      messagesPerNodePerSec: Number((messages / args.nodes / elapsed).toFixed(1)),
      // Idle markers (gossip/repair.ts): sent after a burst so receivers see trailing losses.
      markersPerNodePerSec: Number((markers / args.nodes / elapsed).toFixed(1)),
      entriesPerMessage: Math.round(entries / messages),
      payloadBytesPerNodePerSec: Math.round(bytes / args.nodes / elapsed),
      republishBytesPerNodePerSec: Math.round(republished / args.nodes / elapsed),
      // Gap repair (gossip/repair.ts): requests made and lost messages merged back, over the run.
      repairRequestsPerNodePerSec: Number((repairRequests / args.nodes / elapsed).toFixed(2)),
      messagesRepaired: repaired,
      // CPU of all nodes per counter message published (its delivery to every peer included):
      // comparable across machines under load, unlike the latencies.
      cpuMsPerNodePerSec: Math.round(cpuMs / args.nodes / elapsed),
      cpuMsPerMessage: Number((cpuMs / allMessages).toFixed(2)),
      convergenceP50Ms: Number(pct(convergence, 0.5).toFixed(1)),
      convergenceP99Ms: Number(pct(convergence, 0.99).toFixed(1)),
      convergenceMaxMs: Number(Math.max(...convergence).toFixed(1)),
      probes: probeSeen.size,
      probesIncomplete: incomplete,
      eventLoopDelayP99Ms: Number(Math.max(...after.map(r => r.loopDelayP99Ms)).toFixed(2)),
      eventLoopDelayMaxMs: Number(Math.max(...after.map(r => r.loopDelayMaxMs)).toFixed(2)),
      peersPerNode: Math.min(...after.map(r => r.peers))
    }
    log(`changed keys/s ${out.changedKeysPerSec}; ${out.wireBytesPerChangedKey} B per changed key (${out.entriesPerMessage} entries/message)`)
    log(`convergence p50 ${out.convergenceP50Ms} ms, p99 ${out.convergenceP99Ms} ms (${out.probesIncomplete}/${out.probes} probes incomplete); event loop p99 ${out.eventLoopDelayP99Ms} ms`)
    result = out
    // The baseline publishes what the mesh published: its counter messages and idle markers
    // plus one membership heartbeat per node per second, at the counter messages' mean size.
    baselineLoad = { perSec: Number(((allMessages + markers) / args.nodes / elapsed + 1).toFixed(1)), bytes: Math.round((bytes + republished) / Math.max(1, allMessages)) }
  } finally {
    await fleet.stop()
  }
  if (result === undefined || baselineLoad === undefined) return
  if (!args.baseline) {
    console.log(JSON.stringify(result))
    return
  }
  log(`baseline: gossipsub alone, ${args.nodes} processes, ${baselineLoad.perSec} messages of ${baselineLoad.bytes} B per node per second`)
  const bare = await runBareBaseline({ nodes: args.nodes, ...baselineLoad, seconds: args.seconds, psk: [...generateSwarmKey()], loopResolutionMs: args.loopResolutionMs, meshDegree: args.meshDegree })
  log(`baseline: ${bare.cpuMsPerNodePerSec} ms CPU per node per second, delivery p50 ${bare.deliveryP50Ms} ms p99 ${bare.deliveryP99Ms} ms, event loop p99 ${bare.eventLoopDelayP99Ms} ms`)
  console.log(JSON.stringify({
    ...result,
    baselines: { bareGossipsub: bare },
    // What meshlimit costs on top of the libp2p stack at the same message rate.
    cpuRatioToBareGossipsub: Number((result.cpuMsPerNodePerSec / Math.max(1, bare.cpuMsPerNodePerSec)).toFixed(2))
  }))
}

main().catch(err => {
  console.error(err)
  process.exit(1)
})
