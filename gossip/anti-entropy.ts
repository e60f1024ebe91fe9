import type { Clock } from '../membership/clock.js'
import { seededRandom, type Random } from '../membership/random.js'
import { DEFAULT_SYNC_LIMITS, decodeSnapshotPage, decodeSyncRequest, encodeSnapshotPage, encodeSyncRequest, type SnapshotCursor, type SnapshotGroup, type SnapshotPage, type SyncLimits } from './sync-codec.js'
import type { Transport } from './transport.js'

/** The state anti-entropy moves: implemented by the limiter. */
export interface SyncState {
  snapshotPage(cursor: SnapshotCursor | undefined, maxEntries: number): SnapshotPage
  applySnapshot(groups: SnapshotGroup[]): number
}

export interface AntiEntropyInit {
  transport: Transport
  clock: Clock
  state: SyncState
  /** @default "/meshlimit/sync/1" */
  protocol?: string
  /** Entries per answered page. @default 20000 */
  maxEntriesPerPage?: number
  /** Timeout of one page request, in ms. @default 5000 */
  requestTimeoutMs?: number
  /** Pages pulled from one peer at most (bounds a pull even against a lying peer). @default 1000 */
  maxPages?: number
  /**
   * Interval of background pulls from one random peer (repairs what re-publication
   * cannot: counts of nodes that died before a peer heard them); 0 disables.
   * @default 60000
   */
  pullIntervalMs?: number
  /** Randomness for background pull targets. @default seededRandom(1) */
  random?: Random
  /**
   * Peers background pulls may pick from (a mesh node passes the alive members of its
   * own region).
   * @default every connected peer (transport.peers())
   */
  peers?: () => string[]
  limits?: SyncLimits
}

export interface PullResult {
  /** Peers that answered every page. */
  peers: number
  /** Peers that failed (timeout, unreachable, malformed page). */
  failed: number
  pages: number
  /** Entries that raised a count here. */
  merged: number
}

export interface AntiEntropyStats {
  pagesServed: number
  pagesPulled: number
  pullsFailed: number
  entriesMerged: number
  rejectedPages: number
}

export interface AntiEntropy {
  /** Serves the protocol and starts background pulls. */
  start(): void
  stop(): void
  /** Pulls every live entry from each of `peers` (in parallel) and merges them. */
  pull(peers: string[]): Promise<PullResult>
  readonly stats: AntiEntropyStats
}

/**
 * Anti-entropy over a request/response protocol: a joining or restarted node pulls a
 * paged snapshot of everything its peers hold and max-merges it, so it starts from
 * the mesh's usage instead of zero; background pulls from a random peer repair what
 * periodic re-publication cannot. Transport-agnostic (libp2p, loopback, simulator).
 */
export function createAntiEntropy (init: AntiEntropyInit): AntiEntropy {
  const { transport, clock, state } = init
  const protocol = init.protocol ?? '/meshlimit/sync/1'
  const limits = init.limits ?? DEFAULT_SYNC_LIMITS
  // A page larger than decoders accept would be refused by every puller.
  const maxEntriesPerPage = Math.min(init.maxEntriesPerPage ?? 20_000, limits.maxEntries)
  const requestTimeoutMs = init.requestTimeoutMs ?? 5000
  const maxPages = init.maxPages ?? 1000
  const pullIntervalMs = init.pullIntervalMs ?? 60_000
  const random = init.random ?? seededRandom(1)
  const stats: AntiEntropyStats = { pagesServed: 0, pagesPulled: 0, pullsFailed: 0, entriesMerged: 0, rejectedPages: 0 }
  let running = false
  let cancel: (() => void) | undefined

  const serve = (data: Uint8Array): Uint8Array => {
    const req = decodeSyncRequest(data)
    if (req === undefined) throw new Error('malformed sync request')
    stats.pagesServed++
    return encodeSnapshotPage(state.snapshotPage(req.cursor, maxEntriesPerPage))
  }

  // Pages and merges are counted into `result` as they land: a peer that fails on a later page still changed our state.
  const pullOne = async (peer: string, result: PullResult): Promise<void> => {
    let cursor: SnapshotCursor | undefined
    let pages = 0
    do {
      const bytes = await transport.request(peer, protocol, encodeSyncRequest(cursor), requestTimeoutMs)
      const r = decodeSnapshotPage(bytes, limits)
      if (!r.ok) {
        stats.rejectedPages++
        throw new Error(`malformed snapshot page from ${peer}: ${r.reason}`)
      }
      pages++
      result.pages++
      stats.pagesPulled++
      const m = state.applySnapshot(r.page.groups)
      result.merged += m
      stats.entriesMerged += m
      cursor = r.page.next
    } while (cursor !== undefined && pages < maxPages)
    // A peer that still has pages after maxPages is lying or far larger than allowed.
    if (cursor !== undefined) throw new Error(`${peer} still had pages after ${maxPages}`)
  }

  const pull = async (peers: string[]): Promise<PullResult> => {
    const result: PullResult = { peers: 0, failed: 0, pages: 0, merged: 0 }
    await Promise.all(peers.map(async peer => {
      try {
        await pullOne(peer, result)
        result.peers++
      } catch {
        result.failed++
        stats.pullsFailed++
      }
    }))
    return result
  }

  const background = (): void => {
    if (!running) return
    const peers = init.peers?.() ?? transport.peers()
    if (peers.length > 0) void pull([peers[Math.floor(random() * peers.length)]])
    cancel = clock.setTimer(pullIntervalMs * (0.75 + 0.5 * random()), background)
  }

  return {
    stats,
    pull,
    start () {
      if (running) return
      running = true
      transport.handle(protocol, serve)
      if (pullIntervalMs > 0) cancel = clock.setTimer(pullIntervalMs * (0.75 + 0.5 * random()), background)
    },
    stop () {
      if (!running) return
      running = false
      cancel?.()
      transport.unhandle(protocol)
    }
  }
}
