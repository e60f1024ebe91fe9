/**
 * The fixed-rate HTTP load generator of bench:sidecar. autocannon's rate option is a
 * budget per second (each connection sends back to back until it has sent its share of
 * the second, then waits for the next one), so its "20,000/s" is bursts at full speed
 * and idle gaps: not a rate. This one paces requests on a 1 ms schedule (i / rate) over
 * a pool of keep-alive connections, one request in flight per connection (HTTP/1.1, no
 * pipelining), with the requests encoded up front and the answers parsed only as far as
 * their length.
 */
import { connect, type Socket } from 'node:net'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { latencies, percentile, round3, type Latencies } from './stats.js'

/** Latencies are from the moment each request was written. */
export interface PacedHttpRun extends Latencies {
  reqPerSec: number
  /** From each request's scheduled time: also charges waiting for a free connection and this process's lateness. */
  scheduledP99Ms: number
  clientLoopMaxMs: number
  non2xx: number
  errors: number
  offered: number
}

interface Conn { socket: Socket, buf: Buffer, sentAt: number, dueAt: number, busy: boolean }

/**
 * Sends `rate` POST requests per second for `durationS` seconds to `url` (http://host:port)
 * at `path`, each with the next of `bodies` (JSON), over `connections` connections.
 */
export async function pacedHttpRun (url: string, path: string, bodies: string[], rate: number, durationS: number, connections: number): Promise<PacedHttpRun> {
  const { hostname, port } = new URL(url)
  const requests = bodies.map(b => Buffer.from(`POST ${path} HTTP/1.1\r\nhost: ${hostname}:${port}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(b)}\r\n\r\n${b}`))
  const total = Math.round(rate * durationS)
  const sent = new Float64Array(total)
  const scheduled = new Float64Array(total)
  let done = 0
  let non2xx = 0
  let errors = 0
  let next = 0
  const waiting: number[] = []
  const free: Conn[] = []
  let finish!: () => void
  const finished = new Promise<void>(resolve => { finish = resolve })
  const delay = monitorEventLoopDelay({ resolution: 1 })

  const send = (c: Conn, i: number, dueAt: number): void => {
    c.busy = true
    c.dueAt = dueAt
    c.sentAt = performance.now()
    c.socket.write(requests[i % requests.length])
  }
  const complete = (c: Conn, status: number): void => {
    const now = performance.now()
    if (status < 200 || status >= 300) non2xx++
    sent[done] = now - c.sentAt
    scheduled[done] = now - c.dueAt
    done++
    c.busy = false
    const q = waiting.shift()
    if (q !== undefined) send(c, q, q / rate * 1000 + start)
    else free.push(c)
    if (done + errors >= total) finish()
  }
  const open = async (): Promise<Conn> => await new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => { resolve(c) })
    socket.setNoDelay(true)
    const c: Conn = { socket, buf: Buffer.alloc(0), sentAt: 0, dueAt: 0, busy: false }
    socket.on('data', (chunk: Buffer) => {
      c.buf = c.buf.length === 0 ? chunk : Buffer.concat([c.buf, chunk])
      for (;;) {
        const end = c.buf.indexOf('\r\n\r\n')
        if (end < 0) return
        const head = c.buf.toString('latin1', 0, end)
        const m = /\r\ncontent-length: *(\d+)/i.exec(head)
        const len = end + 4 + (m === null ? 0 : Number(m[1]))
        if (c.buf.length < len) return
        c.buf = c.buf.subarray(len)
        complete(c, Number(head.slice(9, 12)))
      }
    })
    socket.on('error', err => {
      if (!c.busy) { reject(err); return }
      errors++
      c.busy = false
      if (done + errors >= total) finish()
    })
  })
  const pool = await Promise.all(Array.from({ length: connections }, open))
  free.push(...pool)

  const start = performance.now()
  delay.enable()
  // Every millisecond, issue every request whose time has come (to a free connection,
  // or to the queue, where its latency from the schedule keeps growing).
  const tick = (): void => {
    const due = Math.min(total, Math.floor((performance.now() - start) * rate / 1000) + 1)
    for (; next < due; next++) {
      const c = free.pop()
      if (c !== undefined) send(c, next, next / rate * 1000 + start)
      else waiting.push(next)
    }
    if (next < total) setTimeout(tick, 1)
  }
  tick()
  const timer = setTimeout(() => { finish() }, durationS * 1000 + 10_000)
  await finished
  clearTimeout(timer)
  delay.disable()
  const elapsedS = (performance.now() - start) / 1000
  for (const c of pool) c.socket.destroy()
  const s = sent.subarray(0, done).sort()
  const q = scheduled.subarray(0, done).sort()
  return {
    reqPerSec: Math.round(done / elapsedS),
    ...latencies(s),
    scheduledP99Ms: round3(percentile(q, 0.99)),
    clientLoopMaxMs: round3(delay.max / 1e6),
    non2xx,
    errors,
    offered: rate
  }
}
