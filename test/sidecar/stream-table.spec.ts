import { connect, createServer, type ClientHttp2Session, type Http2Server, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterEach, describe, expect, it } from 'vitest'
import { createStreamTableRefresher, type StreamTableRefresher } from '../../src/sidecar/stream-table.js'
import { until } from './helpers.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** node's table of a session's open streams (what the refresher swaps). */
function tableOf (session: object): Map<number, unknown> {
  const k = Object.getOwnPropertySymbols(session).find(s => s.description === 'state') as symbol
  return (session as Record<symbol, { streams: Map<number, unknown> }>)[k].streams
}

const ids = (m: Map<number, unknown>): number[] => { const out: number[] = []; Map.prototype.forEach.call(m, (_v, k) => out.push(k as number)); return out.sort((a, b) => a - b) }

let server: Http2Server | undefined
let client: ClientHttp2Session | undefined
let tables: StreamTableRefresher | undefined
afterEach(async () => {
  tables?.stop()
  client?.close()
  await new Promise<void>(resolve => { if (server === undefined) resolve(); else server.close(() => { resolve() }) })
})

describe('stream table refresher', () => {
  // First: an object without node's state seen first must not spoil the lookup for real sessions.
  it('leaves anything that is not a call with an HTTP/2 stream alone', () => {
    tables = createStreamTableRefresher()
    for (const call of [undefined, null, {}, { stream: {} }, { stream: { session: null } }, { stream: { session: {} } }]) tables.touch(call)
    expect(tables.swaps).toBe(0)
  })

  it('swaps a session\'s table for a copy once per collection on node 20, and node goes on using the copy', async () => {
    tables = createStreamTableRefresher()
    const t = tables
    // The same calls seen by a refresher for a node major whose http2 code was not checked: it does nothing.
    const unchecked = createStreamTableRefresher('22.1.0')
    const held: ServerHttp2Stream[] = []
    server = createServer()
    server.on('stream', stream => {
      // A stand-in for grpc-js's base call: its stream in a `stream` field.
      unchecked.touch({ stream })
      t.touch({ stream })
      held.push(stream)
    })
    await new Promise<void>(resolve => server?.listen(0, '127.0.0.1', resolve))
    client = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
    const c = client
    const request = async (): Promise<void> => {
      const req = c.request({ ':path': '/', ':method': 'POST' })
      req.end()
      await new Promise<void>((resolve, reject) => { req.on('close', resolve); req.on('error', reject); req.resume() })
    }
    // Three calls held open; a collection; a fourth call swaps the table it joins.
    const open = [request(), request(), request()]
    await until(() => held.length === 3, 'three streams at the server')
    const session = held[0].session as object
    const before = tableOf(session)
    expect(ids(before)).toHaveLength(3)
    const swapsBefore = t.swaps
    gc()
    await new Promise(resolve => setTimeout(resolve, 20)) // the gc entry reaches the observer
    const fourth = request()
    await until(() => held.length === 4, 'the fourth stream at the server')
    const after = tableOf(session)
    expect(after).not.toBe(before)
    expect(t.swaps).toBe(swapsBefore + 1)
    // The copy holds every open stream, the fourth included: node added it after the swap.
    expect(ids(after)).toEqual([1, 3, 5, 7])
    // No collection since: a fifth call swaps nothing.
    const fifth = request()
    await until(() => held.length === 5, 'the fifth stream at the server')
    expect(tableOf(session)).toBe(after)
    // Node closes streams through the copy: answered, each leaves it.
    for (const s of held) { s.respond({ ':status': 200 }); s.end() }
    await Promise.all([...open, fourth, fifth])
    await until(() => ids(tableOf(session)).length === 0, 'every answered stream to leave the table')
    expect(unchecked.swaps).toBe(0)
    unchecked.stop()
  })
})
