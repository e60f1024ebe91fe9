import { PerformanceObserver } from 'node:perf_hooks'

/**
 * Keeps node's table of an HTTP/2 session's open streams in the young generation.
 *
 * Node (20) keeps a session's open streams in a Map (`session[kState].streams`, one entry
 * set and one deleted per call). V8 replaces a Map's backing table every few hundred of
 * those, and allocates the new table where the old one was. Once a table has reached the
 * old generation (a full collection, or surviving two scavenges while a backlog kept it
 * current), every later table is old too, and the streams those discarded tables still
 * point at survive each scavenge and are promoted with all they reach: about 1.9 KB per
 * call, full collections every few seconds at 10,000 calls/s, and a p99 of tens of ms
 * (docs/benchmarks.md, "What the gRPC path promotes").
 *
 * After each collection, the first call of a session swaps that Map for a fresh copy:
 * the copy and its tables are young again, and the streams of later calls are only in
 * young tables, which die with them. The copy holds the calls in flight, so it costs
 * O(calls in flight) per session per collection. Node's own code reads the table through
 * `session[kState].streams` each time it needs it (no reference outlives a callback), so
 * the swap is safe between callbacks; where the table is not found as expected (another
 * node, another grpc-js), nothing is done.
 */
export interface StreamTableRefresher {
  /** Called at the start of each call (a grpc-js base call): swaps its session's table if a collection ran since the last swap. */
  touch(call: unknown): void
  /** Tables swapped so far. */
  readonly swaps: number
  stop(): void
}

interface TableState { streams?: unknown }

const SEEN = Symbol('meshlimit.streamTableEpoch')

/**
 * The HTTP/2 stream of a grpc-js base call: a private field (grpc-js 1.14), read by the
 * two tricks that need it (this file and detachCall); undefined when it is not there
 * (another grpc-js, another interceptor first).
 */
export function streamOfCall (call: unknown): unknown {
  return (call as { stream?: unknown } | null | undefined)?.stream
}
// eslint-disable-next-line @typescript-eslint/unbound-method
const MAP_FOR_EACH = Map.prototype.forEach
// eslint-disable-next-line @typescript-eslint/unbound-method
const MAP_SET = Map.prototype.set

/** node's private `kState` symbol of an Http2Session, found by its description on the first session that has it. */
let kState: symbol | undefined

function stateOf (session: object): TableState | undefined {
  kState ??= Object.getOwnPropertySymbols(session).find(s => s.description === 'state')
  if (kState === undefined) return undefined
  const state = (session as Record<symbol, unknown>)[kState]
  return typeof state === 'object' && state !== null ? state as TableState : undefined
}

/**
 * Node majors whose http2 code was read for the swap to be safe: every use of the table
 * goes through `session[kState].streams` at the time (node 20: lib/internal/http2/core.js;
 * the one local copy lives within a single callback). A node that kept a reference to the
 * table across callbacks would update the old table after a swap, and a session waits
 * for its table to empty before it closes, so other majors are left alone until read.
 */
const CHECKED_NODE_MAJORS = new Set([20])

export function createStreamTableRefresher (nodeVersion = process.versions.node): StreamTableRefresher {
  if (!CHECKED_NODE_MAJORS.has(Number(nodeVersion.split('.')[0]))) return { touch () {}, swaps: 0, stop () {} }
  // Bumped by every collection, scavenges included: a table that survived one is swapped before a second promotes it.
  let epoch = 0
  let swaps = 0
  const observer = new PerformanceObserver(() => { epoch++ })
  observer.observe({ entryTypes: ['gc'] })
  return {
    touch (call: unknown): void {
      // A stream knows its session.
      const session = (streamOfCall(call) as { session?: unknown } | undefined)?.session
      if (typeof session !== 'object' || session === null) return
      const s = session as Record<symbol, unknown>
      if (s[SEEN] === epoch) return
      s[SEEN] = epoch
      const state = stateOf(session)
      const table = state?.streams
      // node's SafeMap is a Map whose prototype chain does not reach Map.prototype: Map's own methods work on it.
      if (Object.prototype.toString.call(table) !== '[object Map]') return
      // The same class as node's, with the same entries.
      const next = new ((table as object).constructor as new () => Map<unknown, unknown>)()
      MAP_FOR_EACH.call(table, (v: unknown, k: unknown) => { MAP_SET.call(next, k, v) })
      ;(state as TableState).streams = next
      swaps++
    },
    get swaps () { return swaps },
    stop (): void { observer.disconnect() }
  }
}
