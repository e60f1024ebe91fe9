import type { LimiterOptions } from '../scenario.js'
import type { PolicyDocument } from '../../src/policy/types.js'

/**
 * Messages between the real-mode parent and its node processes. Commands go to a node
 * over the Node.js IPC channel; everything a node says comes back as JSON lines on a
 * dedicated pipe (file descriptor REPORT_FD) written with blocking writes, so what a node
 * reported has left it before its next turn can publish gossip, and a SIGKILL cannot
 * take back an admission the parent was already told about.
 */

/** File descriptor of the report pipe in a node process (0-2 stdio, 3 the IPC channel). */
export const REPORT_FD = 4

/** Fields of one request result, flat in `Results.r`. */
export const RESULT_FIELDS = 5

export interface NodeInit {
  t: 'init'
  /** Index of the node in the fleet (stable across its restarts). */
  index: number
  identityFile: string
  pskFile: string
  listen: string[]
  bootstrap: string[]
  mesh: string
  /** Region label of the node on the mesh (its counters topic). */
  region: string
  policies: PolicyDocument
  /** Descriptor field the workload's key goes in. */
  field: string
  /** Limit names ("policy/limit") in the parent's order: results name limits by index. */
  limits: string[]
  /** Slot width of each limit, in ms (the epoch a result reports is in these slots). */
  slotMs: number[]
  flushIntervalMs: number
  limiter: LimiterOptions
  /** Offset of this node's clock from the machine's, in ms (clock skew). */
  clockOffsetMs: number
  /** Peers to refuse from the start (a restart while a gater partition is in force). */
  blocked: string[]
  /** Heartbeat interval of membership, in ms (suspect after 3, dead after 10). */
  heartbeatIntervalMs: number
  /** Bound on the start-up wait for peers and the first anti-entropy pull, in ms. */
  syncTimeoutMs: number
  /** Log level of the node's mesh events (written to its standard error). */
  logLevel: string
}

/** Requests to check now: [request id, key] pairs, flat. */
export interface Requests { t: 'req', q: Array<number | string> }
/** Refuse (gater and hang-up) or accept again the given peers. */
export interface Block { t: 'block', peers: string[] }
export interface Unblock { t: 'unblock', peers: string[] }
/** Answer the counters this node holds for these (limit index, key) pairs. */
export interface Inspect { t: 'inspect', id: number, q: Array<[number, string]> }
/** Report (once) when this node holds at least `count` for the cell, or the cell left its range. */
export interface Watch { t: 'watch', sid: number, limit: number, key: string, replica: string, epoch: number, count: number }
export interface Unwatch { t: 'unwatch', sid: number }
/** Report traffic and gossip statistics. */
export interface StatsRequest { t: 'stats', id: number }
/** Flush, leave the mesh and exit 0. */
export interface Stop { t: 'stop' }

export type Command = NodeInit | Requests | Block | Unblock | Inspect | Watch | Unwatch | StatsRequest | Stop

export interface Ready {
  t: 'ready'
  peerId: string
  incarnation: number
  /** Replica key of this incarnation ("peerId@incarnation"), as views name it. */
  replica: string
  multiaddrs: string[]
  /** What the start-up anti-entropy pull brought. */
  startupSync: { peers: number, failed: number, pages: number, merged: number } | undefined
  /** Machine time at which the node started being built, and at which it was ready, ms. */
  startedAt: number
  readyAt: number
}

/**
 * Results of a batch of requests: RESULT_FIELDS numbers per request: id, allowed (0/1),
 * limit index of the deciding limit (-1: no limit matched), the slot epoch the node
 * counted in (its own clock), and the machine time of the check in ms.
 */
export interface Results { t: 'res', r: number[] }

/** One key's counters as a node holds them (Limiter.inspect with replicas), or null. */
export interface ViewOf {
  firstEpoch: number
  head: number
  totals: number[]
  /** [replica key, flat (epoch, count) pairs]. */
  replicas: Array<[string, number[]]>
}

export interface Views {
  t: 'views'
  id: number
  /** The node's clock when it read the views. */
  now: number
  views: Array<ViewOf | null>
}

export interface Held { t: 'held', sid: number, at: number }

export interface NodeStats {
  t: 'stats'
  id: number
  /** Index of the node (set by the parent when it reads the line). */
  node: number
  /** Bytes written on the node's TCP sockets (libp2p: noise, yamux, every gossipsub copy). */
  socketBytes: number
  /** Bytes sent on the namespace's interface (netns mode only: IP and TCP headers included). */
  wireBytes: number | undefined
  /** Counter messages and payload bytes this node published (flushes and re-publication). */
  countersPublished: number
  countersBytes: number
  countersReceived: number
  countersRejected: number
  /** Reasons of the last counter messages this node rejected (bounded). */
  rejections: string[]
  aggregatesPublished: number
  aggregatesBytes: number
  heartbeatsSent: number
  /** Members this node holds alive. */
  alive: number
  /** Connected peers, subscribers of its counters topic among them, and its gossipsub mesh on that topic. */
  peers: number
  topicPeers: number
  meshPeers: number
}

/** The node failed (start-up or a command); it exits after saying so. */
export interface Failed { t: 'failed', error: string }

export type Report = Ready | Results | Views | Held | NodeStats | Failed
