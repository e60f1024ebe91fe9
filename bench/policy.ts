/**
 * Policy benchmark: how long a new bundle takes to reach every node (virtual time, on
 * the loopback network), what opening a bundle costs next to validating the same
 * document, and what re-bucketing a limit's counters costs next to counting them.
 *
 *   npm run bench:policy -- [--json] [--runs N] [--keys N] [--libp2p-nodes N]
 *
 * Propagation runs in virtual time (VirtualClock): the figures are protocol latencies
 * (hops x 5 ms, announcement intervals, pull round trips), independent of the machine.
 * It is measured again on a real mesh: --libp2p-nodes mesh nodes (default 10; 0 skips)
 * over libp2p on TCP loopback in this process, wall clock.
 * The other two are wall-clock medians, each against a baseline measured in the same
 * run. The last stdout line is one JSON object.
 */
import { createLoopbackNetwork } from '../gossip/loopback.js'
import { VirtualClock } from '../membership/clock.js'
import { seededRandom } from '../membership/random.js'
import { createLimiter, type PolicyDocument } from '../src/index.js'
import { encodeBundle, generateOperatorKey, openBundle, signBundle, trustedKeyMap } from '../src/policy/bundle.js'
import { createPolicyDistributor } from '../src/policy/distribute.js'
import { DENY_ALL_POLICIES, createPolicyManager } from '../src/policy/manager.js'
import { validatePolicies } from '../src/policy/validate.js'
import { benchArgs } from './args.js'

type Args = { json: boolean, runs: number, keys: number, libp2pNodes: number }

function parseArgs (argv: string[]): Args {
  return benchArgs('bench:policy', argv, { json: false, runs: 5, keys: 100_000, libp2pNodes: 10 })
}

const OPERATOR = generateOperatorKey()
const LATENCY_MS = 5

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

// --- propagation -------------------------------------------------------------------

interface PropagationResult { nodes: number, dropRate: number, announceIntervalMs: number, runs: number, medianAllMs: number, maxAllMs: number, medianP50Ms: number, messagesPerNode: number, pullsPerNode: number }

async function propagation (nodes: number, dropRate: number, announceIntervalMs: number, runs: number): Promise<PropagationResult> {
  const all: number[] = []
  const p50s: number[] = []
  let messages = 0
  let pulls = 0
  for (let run = 0; run < runs; run++) {
    const clock = new VirtualClock(1_800_000_000_000)
    const rnd = seededRandom(run * 7919 + nodes)
    const net = createLoopbackNetwork({ clock, latencyMs: LATENCY_MS, drop: () => rnd() < dropRate })
    const installed: number[] = []
    const ms = Array.from({ length: nodes }, (_, i) => {
      const transport = net.connect(`n${i}`)
      const manager = createPolicyManager({ trustedKeys: [OPERATOR.text], limiter: createLimiter({ clock, policies: DENY_ALL_POLICIES }), clock })
      manager.on('update', () => installed.push(clock.now()))
      const dist = createPolicyDistributor({ transport, clock, manager, topic: 'bench/policies', announceIntervalMs, random: seededRandom(run * 1000 + i + 1) })
      void dist.start()
      return { manager, dist }
    })
    // Let startup finish and announcement timers drift apart (a steady state), then push on node 0.
    const settle = 6 * announceIntervalMs + Math.floor(rnd() * announceIntervalMs)
    for (let t = 0; t < settle; t += LATENCY_MS) {
      clock.advance(LATENCY_MS)
      await new Promise(resolve => setImmediate(resolve))
    }
    const published = net.stats.published
    const requests = net.stats.requests
    const t0 = clock.now()
    ms[0].manager.offer(encodeBundle(signBundle({ version: 1, policies: [{ id: 'p', key: 'user', limits: [{ limit: 10, window: '1s' }] }] }, OPERATOR)), 'admin')
    while (!ms.every(m => m.manager.version === 1)) {
      if (clock.now() - t0 > 120_000) throw new Error(`no convergence in 120 s: ${nodes} nodes, drop ${dropRate}`)
      clock.advance(LATENCY_MS)
      await new Promise(resolve => setImmediate(resolve))
    }
    const times = installed.map(t => t - t0).sort((a, b) => a - b)
    all.push(times[times.length - 1])
    p50s.push(times[Math.floor(times.length / 2)])
    messages += net.stats.published - published
    pulls += net.stats.requests - requests
    for (const m of ms) m.dist.stop()
  }
  return {
    nodes,
    dropRate,
    announceIntervalMs,
    runs,
    medianAllMs: median(all),
    maxAllMs: Math.max(...all),
    medianP50Ms: median(p50s),
    messagesPerNode: Number((messages / runs / nodes).toFixed(2)),
    pullsPerNode: Number((pulls / runs / nodes).toFixed(2))
  }
}

// --- propagation over libp2p ---------------------------------------------------------

interface Libp2pPropagationResult { nodes: number, pushes: number, medianAllMs: number, maxAllMs: number, medianFirstMs: number, meshFormedMs: number }

/**
 * Real mesh nodes (createMeshNode over libp2p TCP on 127.0.0.1, pre-shared key, every
 * node bootstrapping from up to three earlier ones); after gossipsub meshes formed, a
 * new bundle is installed from the admin API on a different node each round, and the
 * time until every node runs it is taken from each manager's update event.
 */
async function libp2pPropagation (nodes: number, pushes: number): Promise<Libp2pPropagationResult> {
  const { createMeshNode } = await import('../src/mesh.js')
  const { generateSwarmKey } = await import('../gossip/psk.js')
  type Node = Awaited<ReturnType<typeof createMeshNode>>
  const psk = generateSwarmKey()
  const doc = (limit: number): PolicyDocument => ({ policies: [{ id: 'p', key: 'user', limits: [{ id: 'w', limit, window: '1s' }] }] })
  const ms: Node[] = []
  const t0 = performance.now()
  try {
    for (let i = 0; i < nodes; i++) {
      const bootstrap = ms.slice(-3).map(n => n.multiaddrs()[0])
      ms.push(await createMeshNode({ policies: doc(10), trustedKeys: [OPERATOR.text], network: { psk, bootstrap, heartbeatIntervalMs: 200 }, syncOnStart: false, membership: { heartbeatIntervalMs: 200 } }))
    }
    // Until every node has gossipsub mesh peers on the policies topic (bounded).
    const meshed = (n: Node): boolean => {
      const ps = (n.transport as unknown as { libp2p: { services: { pubsub: { getMeshPeers: (t: string) => unknown[] } } } }).libp2p.services.pubsub
      return ps.getMeshPeers(n.topics.policies).length > 0
    }
    while (!ms.every(meshed)) {
      if (performance.now() - t0 > 30_000) throw new Error(`libp2p propagation: gossipsub meshes not formed after 30 s (${ms.filter(meshed).length}/${nodes} nodes meshed)`)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    const meshFormedMs = performance.now() - t0
    const all: number[] = []
    const first: number[] = []
    for (let v = 1; v <= pushes; v++) {
      await new Promise(resolve => setTimeout(resolve, 500))
      const at: number[] = []
      const offs = ms.map(n => n.policy?.manager.on('update', () => { at.push(performance.now()) }))
      const pushedAt = performance.now()
      const r = ms[v % nodes].policy?.manager.offer(encodeBundle(signBundle({ version: v, ...doc(10 + v) }, OPERATOR)), 'admin')
      if (r?.status !== 'installed') throw new Error(`libp2p propagation: push ${v} was not installed (${JSON.stringify(r)})`)
      while (!ms.every(n => n.policy?.manager.version === v)) {
        if (performance.now() - pushedAt > 30_000) throw new Error(`libp2p propagation: version ${v} not on every node after 30 s`)
        await new Promise(resolve => setTimeout(resolve, 1))
      }
      for (const off of offs) off?.()
      const times = at.map(t => t - pushedAt).sort((a, b) => a - b)
      all.push(times[times.length - 1])
      first.push(times[1] ?? times[0])
    }
    return { nodes, pushes, medianAllMs: round1(median(all)), maxAllMs: round1(Math.max(...all)), medianFirstMs: round1(median(first)), meshFormedMs: Math.round(meshFormedMs) }
  } finally {
    await Promise.all(ms.map(async n => { await n.stop() }))
  }
}

const round1 = (x: number): number => Math.round(x * 10) / 10

// --- bundle cost -------------------------------------------------------------------

function documentOf (policies: number): PolicyDocument {
  return {
    version: 1,
    policies: Array.from({ length: policies }, (_, i) => ({
      id: `p${i}`,
      key: 'user',
      match: { route: `/v1/r${i}/*`, method: ['GET', 'HEAD'] },
      limits: [{ id: 'minute', limit: 100 + i, window: '1m' }, { id: 'burst', algorithm: 'token-bucket' as const, ratePerSecond: 5, burst: 20 }]
    }))
  }
}

function timeMedian (fn: () => void, rounds: number): number {
  const xs: number[] = []
  for (let r = 0; r < rounds; r++) {
    const t = performance.now()
    fn()
    xs.push(performance.now() - t)
  }
  return median(xs)
}

function bundleCost (policies: number): Record<string, number> {
  const doc = documentOf(policies)
  const keys = trustedKeyMap([OPERATOR.text])
  const bytes = encodeBundle(signBundle(doc, OPERATOR))
  const rounds = policies >= 4000 ? 9 : 21
  // Interleave so a slow phase of the machine hits both.
  const open: number[] = []
  const validate: number[] = []
  for (let r = 0; r < rounds; r++) {
    open.push(timeMedian(() => openBundle(bytes, keys), 1))
    validate.push(timeMedian(() => validatePolicies(JSON.parse(JSON.stringify(doc))), 1))
  }
  const sign = timeMedian(() => signBundle(doc, OPERATOR), rounds)
  return { policies, bytes: bytes.byteLength, openMs: Number(median(open).toFixed(3)), validateMs: Number(median(validate).toFixed(3)), signMs: Number(sign.toFixed(3)), ratioOpenVsValidate: Number((median(open) / median(validate)).toFixed(2)) }
}

// --- migration cost ----------------------------------------------------------------

function migrationCost (keys: number): Record<string, number> {
  const doc = (window: string, limit: number): PolicyDocument => ({ policies: [{ id: 'per-user', key: 'user', limits: [{ id: 'm', limit, window }] }] })
  const clock = new VirtualClock(1_800_000_000_000)
  const names = Array.from({ length: keys }, (_, i) => `user-${i}`)
  const rounds = 5
  const fill: number[] = []
  const migrate: number[] = []
  const ceiling: number[] = []
  for (let r = 0; r < rounds; r++) {
    const limiter = createLimiter({ clock, policies: doc('1m', 100), maxKeys: keys * 2 })
    // Baseline: counting one request for every key (what filled the store).
    let t = performance.now()
    for (const user of names) limiter.check({ user })
    fill.push(performance.now() - t)
    t = performance.now()
    limiter.setPolicies(doc('1m', 200))
    ceiling.push(performance.now() - t)
    t = performance.now()
    limiter.setPolicies(doc('2m', 200))
    migrate.push(performance.now() - t)
    if (limiter.stats().limits[0].keys !== keys) throw new Error('migration lost keys')
    limiter.close()
  }
  return {
    keys,
    fillMs: Number(median(fill).toFixed(1)),
    ceilingChangeMs: Number(median(ceiling).toFixed(2)),
    windowChangeMs: Number(median(migrate).toFixed(1)),
    nsPerKey: Math.round(median(migrate) * 1e6 / keys),
    ratioMigrateVsFill: Number((median(migrate) / median(fill)).toFixed(2))
  }
}

async function main (): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const log = (s: string): void => { if (!args.json) console.log(s) }
  const prop: PropagationResult[] = []
  for (const [nodes, drop, interval] of [[10, 0, 5000], [50, 0, 5000], [100, 0, 5000], [50, 0.1, 5000], [50, 0.3, 5000], [100, 0.3, 5000], [50, 0.3, 1000], [100, 0.5, 1000]] as const) {
    const r = await propagation(nodes, drop, interval, args.runs)
    log(`propagation: ${nodes} nodes, ${drop * 100}% lost, announce every ${interval} ms: all nodes in ${r.medianAllMs} ms (median of ${r.runs}; worst ${r.maxAllMs} ms), half in ${r.medianP50Ms} ms; ${r.messagesPerNode} messages and ${r.pullsPerNode} pulls per node`)
    prop.push(r)
  }
  let libp2p: Libp2pPropagationResult | undefined
  if (args.libp2pNodes > 0) {
    libp2p = await libp2pPropagation(args.libp2pNodes, args.runs)
    log(`propagation over libp2p: ${libp2p.nodes} nodes on TCP loopback (meshes formed in ${libp2p.meshFormedMs} ms): all nodes in ${libp2p.medianAllMs} ms (median of ${libp2p.pushes} pushes; worst ${libp2p.maxAllMs} ms), the first peer in ${libp2p.medianFirstMs} ms`)
  }
  const bundles = [100, 1000, 4000].map(bundleCost)
  for (const b of bundles) log(`bundle of ${b.policies} policies (${b.bytes} bytes): open ${b.openMs} ms vs validate ${b.validateMs} ms (ratio ${b.ratioOpenVsValidate}); sign ${b.signMs} ms`)
  const migration = migrationCost(args.keys)
  log(`re-bucketing ${migration.keys} keys (1m -> 2m window): ${migration.windowChangeMs} ms (${migration.nsPerKey} ns/key), vs ${migration.fillMs} ms to count one request per key (ratio ${migration.ratioMigrateVsFill}); a ceiling-only change: ${migration.ceilingChangeMs} ms`)
  console.log(JSON.stringify({ bench: 'policy', node: process.version, propagation: prop, libp2pPropagation: libp2p, bundles, migration }))
}

main().catch(err => {
  console.error(err)
  process.exit(1)
})
