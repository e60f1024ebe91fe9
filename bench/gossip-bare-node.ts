/**
 * One node of bench:gossip's baseline (bench/gossip-bare.ts): a libp2p node built
 * exactly as meshlimit builds it (gossip/libp2p.ts: TCP, pnet, noise, yamux, identify,
 * gossipsub with StrictSign and meshlimit's degrees), but with no mesh node on it: it
 * publishes opaque messages at a given rate and accepts what it receives. What it
 * costs is the floor the libp2p stack sets under any counter traffic of that rate.
 * IPC (parent -> node): start, connect, go; (node -> parent): ready, connected, done.
 */
import '../src/polyfill.js'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createLibp2pTransport, type Libp2pTransport } from '../gossip/libp2p.js'

export interface BareStart { type: 'start', psk: number[], bootstrap: string[], meshDegree?: number, index: number }
export interface BareGo { type: 'go', perSec: number, bytes: number, seconds: number, loopResolutionMs: number }
export interface BareDone { type: 'done', index: number, cpuMicros: number, published: number, loopDelayP99Ms: number, loopDelayMaxMs: number, received: Array<[number, number, number]> }

const TOPIC = 'bench/bare'
const send = (m: object): void => { process.send?.(m) }
const now = (): number => performance.timeOrigin + performance.now()
let t: Libp2pTransport | undefined
let index = 0

process.on('message', (raw: unknown) => {
  void (async () => {
    const m = raw as { type: string } & Record<string, unknown>
    if (m.type === 'start') {
      const s = m as unknown as BareStart
      index = s.index
      t = await createLibp2pTransport({ psk: Uint8Array.from(s.psk), bootstrap: s.bootstrap, meshDegree: s.meshDegree, topics: [TOPIC] })
      send({ type: 'ready', multiaddr: t.multiaddrs()[0] })
    } else if (m.type === 'connect') {
      for (const a of m.addrs as string[]) if (a !== t?.multiaddrs()[0]) await t?.dial(a).catch(() => {})
      send({ type: 'connected' })
    } else if (m.type === 'go') {
      const g = m as unknown as BareGo
      // (origin, seq, latency ms) of every message received while measuring.
      const received: Array<[number, number, number]> = []
      t?.subscribe(TOPIC, data => {
        const v = new DataView(data.buffer, data.byteOffset, data.byteLength)
        received.push([v.getUint32(0), v.getUint32(4), now() - v.getFloat64(8)])
        return 'accept'
      })
      const delay = monitorEventLoopDelay({ resolution: g.loopResolutionMs })
      await new Promise(resolve => setTimeout(resolve, 1000))
      delay.enable()
      const cpu0 = process.cpuUsage()
      let seq = 0
      const timer = setInterval(() => {
        const data = new Uint8Array(Math.max(16, g.bytes))
        const v = new DataView(data.buffer)
        v.setUint32(0, index)
        v.setUint32(4, seq++)
        v.setFloat64(8, now())
        t?.publish(TOPIC, data)
      }, 1000 / g.perSec)
      await new Promise(resolve => setTimeout(resolve, g.seconds * 1000))
      clearInterval(timer)
      const cpu = process.cpuUsage(cpu0)
      delay.disable()
      await new Promise(resolve => setTimeout(resolve, 1000))
      const done: BareDone = { type: 'done', index, cpuMicros: cpu.user + cpu.system, published: seq, loopDelayP99Ms: delay.percentile(99) / 1e6, loopDelayMaxMs: delay.max / 1e6, received }
      send(done)
    } else if (m.type === 'stop') {
      await t?.stop()
      process.exit(0)
    }
  })().catch(err => {
    console.error(err)
    process.exit(1)
  })
})
