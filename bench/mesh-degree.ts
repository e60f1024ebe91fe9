/**
 * What a gossipsub mesh degree costs: CPU per published message in a mesh of real
 * libp2p nodes (TCP loopback, noise, yamux, pre-shared key, StrictSign), all in this
 * process so that process.cpuUsage() sees every node, for several gossipsub settings.
 *
 *   npm run bench:mesh-degree -- [--json] [--nodes N] [--rate R] [--seconds S] [--bytes B]
 *
 * Every node publishes R messages of B bytes per second on one topic; every message
 * reaches every other node (checked). Reported per setting: CPU ms per published
 * message (its signing, relaying, duplicate copies, verification and delivery on all
 * nodes), and the time from its publication until the last node had it (p50, p99). The baseline is gossipsub's own defaults
 * (D 6, flood publish, IDONTWANT from 512 bytes), measured in the same run; ratios are
 * against it. The last stdout line is one JSON object.
 */
import '../src/polyfill.js'
import { createLibp2pTransport, type Libp2pTransport, type Libp2pTransportInit } from '../gossip/libp2p.js'
import { generateSwarmKey } from '../gossip/psk.js'
import { benchArgs } from './args.js'
import { percentile } from './stats.js'

type Args = { json: boolean, nodes: number, rate: number, seconds: number, bytes: number }

function parseArgs (argv: string[]): Args {
  return benchArgs('bench:mesh-degree', argv, { json: false, nodes: 10, rate: 5, seconds: 10, bytes: 1200 })
}

type Setting = Pick<Libp2pTransportInit, 'meshDegree' | 'meshDegreeLow' | 'meshDegreeHigh' | 'floodPublish' | 'idontwantMinBytes'> & { name: string }

const SETTINGS: Setting[] = [
  { name: 'gossipsub defaults (D 6, flood, IDONTWANT)', meshDegree: 6, meshDegreeLow: 4, meshDegreeHigh: 12, floodPublish: true, idontwantMinBytes: 512 },
  { name: 'D 6, no flood, no IDONTWANT', meshDegree: 6, meshDegreeLow: 4, meshDegreeHigh: 12 },
  { name: 'D 4', meshDegree: 4 },
  { name: 'D 3 (meshlimit default)' },
  { name: 'D 2', meshDegree: 2 }
]

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

async function measure (args: Args, setting: Setting): Promise<{ name: string, deliveryP50Ms: number, deliveryP99Ms: number, cpuMsPerMessage: number, published: number, delivered: number }> {
  const psk = generateSwarmKey()
  const topic = 'bench/degree'
  const { name, ...tuning } = setting
  const nodes: Libp2pTransport[] = []
  let delivered = 0
  try {
    for (let i = 0; i < args.nodes; i++) {
      nodes.push(await createLibp2pTransport({ ...tuning, psk, topics: [topic], bootstrap: nodes.slice(-3).map(n => n.multiaddrs()[0]) }))
    }
    const sentAt: number[] = []
    const lastAt: number[] = []
    for (const n of nodes) {
      n.subscribe(topic, data => {
        delivered++
        lastAt[data[0] | (data[1] << 8) | (data[2] << 16)] = performance.now()
        return 'accept'
      })
    }
    for (const a of nodes) for (const b of nodes) if (a !== b && !a.peers().includes(b.peerId)) await a.dial(b.multiaddrs()[0]).catch(() => {})
    await sleep(3000)
    delivered = 0
    let published = 0
    const payload = new Uint8Array(args.bytes)
    const cpu0 = process.cpuUsage()
    const timer = setInterval(() => {
      for (const n of nodes) {
        payload[0] = published & 0xff
        payload[1] = (published >> 8) & 0xff
        payload[2] = (published >> 16) & 0xff
        sentAt[published] = performance.now()
        n.publish(topic, payload.slice())
        published++
      }
    }, 1000 / args.rate)
    await sleep(args.seconds * 1000)
    clearInterval(timer)
    // Let the last messages land.
    const deadline = performance.now() + 5000
    while (delivered < published * (args.nodes - 1) && performance.now() < deadline) await sleep(20)
    const cpu = process.cpuUsage(cpu0)
    if (delivered < published * (args.nodes - 1)) throw new Error(`${name}: ${published * (args.nodes - 1) - delivered} deliveries missing`)
    // Publish to the last node's delivery, per message (wall clock: loaded machines stretch it).
    const spread = Float64Array.from(sentAt, (t, i) => lastAt[i] - t).sort()
    const p = (q: number): number => Number(percentile(spread, q).toFixed(1))
    return { name, deliveryP50Ms: p(0.5), deliveryP99Ms: p(0.99), cpuMsPerMessage: Number(((cpu.user + cpu.system) / 1000 / published).toFixed(2)), published, delivered }
  } finally {
    await Promise.all(nodes.map(async n => { await n.stop() }))
  }
}

async function main (): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const results = []
  for (const s of SETTINGS) {
    const r = await measure(args, s)
    results.push(r)
    if (!args.json) console.log(`${r.name}: ${r.cpuMsPerMessage} ms CPU per message (${r.published} published, ${r.delivered} delivered); every node had it after ${r.deliveryP50Ms} ms (p50), ${r.deliveryP99Ms} ms (p99)`)
  }
  const base = results[0].cpuMsPerMessage
  const out = results.map(r => ({ name: r.name, cpuMsPerMessage: r.cpuMsPerMessage, deliveryP50Ms: r.deliveryP50Ms, deliveryP99Ms: r.deliveryP99Ms, ratioToDefaults: Number((r.cpuMsPerMessage / base).toFixed(2)), published: r.published }))
  console.log(JSON.stringify({ bench: 'mesh-degree', node: process.version, nodes: args.nodes, ratePerNode: args.rate, bytes: args.bytes, results: out }))
}

main().catch(err => {
  console.error(err)
  process.exit(1)
})
