// CPU of idle mesh nodes: N processes, each a createMeshNode over libp2p on loopback,
// fully connected, no traffic, no event-loop monitor; prints the mean CPU per node per
// second over the measured seconds (all threads of each process). Run `npm run build`
// first. Usage: node scripts/idle-mesh-cpu.mjs [--nodes 10] [--seconds 10] [--dist DIR]
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '10' }, seconds: { type: 'string', default: '10' }, dist: { type: 'string', default: fileURLToPath(new URL('../dist', import.meta.url)) }, child: { type: 'boolean', default: false } } })
const dist = values.dist

if (values.child) {
  await import(`${dist}/src/polyfill.js`)
  const { createLibp2pTransport } = await import(`${dist}/gossip/libp2p.js`)
  const { topicsOf } = await import(`${dist}/gossip/topics.js`)
  const { createMeshNode } = await import(`${dist}/src/mesh.js`)
  let t
  process.on('message', async m => {
    if (m.type === 'start') {
      const topics = topicsOf('idle')
      t = await createLibp2pTransport({ psk: Uint8Array.from(m.psk), bootstrap: m.bootstrap, topics: [topics.counters('default'), topics.membership, topics.aggregates, topics.policies, topics.blocklist] })
      await createMeshNode({ mesh: 'idle', policies: { policies: [{ id: 'p', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 100, window: '1s' }] }] }, transport: t, syncOnStart: false })
      process.send({ type: 'ready', multiaddr: t.multiaddrs()[0] })
    } else if (m.type === 'connect') {
      for (const a of m.addrs) if (a !== t.multiaddrs()[0]) await t.dial(a).catch(() => {})
      process.send({ type: 'connected' })
    } else if (m.type === 'measure') {
      const c0 = process.cpuUsage()
      setTimeout(() => {
        const c = process.cpuUsage(c0)
        process.send({ type: 'cpu', ms: (c.user + c.system) / 1000 / m.seconds })
        setTimeout(() => process.exit(0), 100)
      }, m.seconds * 1000)
    }
  })
} else {
  const { generateSwarmKey } = await import(`${dist}/gossip/psk.js`)
  const { startFleet } = await import(`${dist}/bench/fleet.js`)
  const nodes = Number(values.nodes)
  const seconds = Number(values.seconds)
  const psk = [...generateSwarmKey()]
  const fleet = await startFleet(fileURLToPath(import.meta.url), nodes, {
    what: 'idle-mesh-cpu',
    args: ['--child', '--dist', dist],
    start: (_i, bootstrap) => ({ type: 'start', psk, bootstrap })
  })
  try {
    // The fleet settled 2 s after connecting; one more, as this script always waited 3 s.
    await new Promise(resolve => setTimeout(resolve, 1000))
    for (const c of fleet.children) c.send({ type: 'measure', seconds })
    let sum = 0
    for (let i = 0; i < nodes; i++) sum += (await fleet.next('cpu')).ms
    console.log(JSON.stringify({ script: 'idle-mesh-cpu', nodes, seconds, cpuMsPerNodePerSec: Number((sum / nodes).toFixed(1)) }))
  } finally {
    await fleet.stop()
  }
}
