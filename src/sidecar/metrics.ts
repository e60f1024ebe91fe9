import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { BlockEntry, BlockEvent, Blocklist } from '../abuse/blocklist.js'
import type { Escalation } from '../abuse/escalation.js'
import type { Decision } from '../decision.js'
import type { GateObserver } from '../gate.js'
import type { Limiter } from '../limiter.js'
import type { StallWatch } from './stalls.js'

/** What the metrics need to know about the mesh a node is in (libp2p or loopback). */
export interface MeshInfo {
  /** Peers this node is connected to. */
  peers(): number
  /** Recent delay between a peer stamping a counter message and this node receiving it, in ms; undefined before any. */
  lagMs(): number | undefined
}

export interface MetricsInit {
  limiter: Limiter
  blocklist?: Blocklist
  escalation?: Escalation
  mesh?: MeshInfo
  /**
   * Also export the process metrics of prom-client (CPU, memory, event-loop lag).
   * @default true
   */
  processMetrics?: boolean
  /** Event-loop stalls by cause (collection or other), when the stall watch runs. */
  stalls?: StallWatch
}

export interface SidecarMetrics extends GateObserver {
  readonly registry: Registry
  /** Counts a block-list change (wire it to the block list's onChange). */
  blockChange(e: BlockEvent): void
  /** The exposition text for /metrics. */
  text(): Promise<string>
}

const LATENCY_BUCKETS = [0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01]

/**
 * Prometheus metrics of a node. Per request only plain fields are bumped and one
 * histogram observed; everything else is read from stats when scraped.
 */
export function createMetrics (init: MetricsInit): SidecarMetrics {
  const registry = new Registry()
  const registers = [registry]
  const { limiter, blocklist, mesh } = init
  if (init.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'meshlimit_process_' })

  // Request-path counts: plain fields, read at scrape time.
  const byApi = new Map<string, { allowed: number, denied: number, blocked: number }>()
  const deniedByPolicy = new Map<string, number>()
  const blocks = { manual: 0, escalation: 0, peer: 0, unblocks: 0 }
  const apiCounts = (api: string): { allowed: number, denied: number, blocked: number } => {
    let c = byApi.get(api)
    if (c === undefined) byApi.set(api, c = { allowed: 0, denied: 0, blocked: 0 })
    return c
  }

  const latency = new Histogram({ name: 'meshlimit_check_duration_seconds', help: 'Time of one admission (block list, limiter, decision), in seconds.', buckets: LATENCY_BUCKETS, registers })

  new Counter({
    name: 'meshlimit_decisions_total', help: 'Admission decisions by API and result (allowed, denied by a limit, refused by the block list).', labelNames: ['api', 'result'], registers,
    collect () {
      this.reset()
      for (const [api, c] of byApi) {
        this.inc({ api, result: 'allowed' }, c.allowed)
        this.inc({ api, result: 'denied' }, c.denied)
        this.inc({ api, result: 'blocked' }, c.blocked)
      }
    }
  })
  new Counter({
    name: 'meshlimit_denied_total', help: 'Denied requests by deciding policy.', labelNames: ['policy'], registers,
    collect () {
      this.reset()
      for (const [policy, n] of deniedByPolicy) this.inc({ policy }, n)
    }
  })
  new Gauge({
    name: 'meshlimit_peers', help: 'Peers this node is connected to.', registers,
    collect () { this.set(mesh?.peers() ?? 0) }
  })
  new Gauge({
    name: 'meshlimit_gossip_lag_seconds', help: 'Recent delay between a peer publishing counters and this node receiving them.', registers,
    collect () {
      const lag = mesh?.lagMs()
      if (lag === undefined) this.reset()
      else this.set(lag / 1000)
    }
  })
  const replicator = (): { bytesSent: number, messagesSent: number, messagesReceived: number, messagesRejected: number } =>
    limiter.stats().replicator ?? { bytesSent: 0, messagesSent: 0, messagesReceived: 0, messagesRejected: 0 }
  new Counter({ name: 'meshlimit_gossip_sent_bytes_total', help: 'Bytes of counter messages published.', registers, collect () { this.reset(); this.inc(replicator().bytesSent) } })
  new Counter({
    name: 'meshlimit_gossip_messages_total', help: 'Counter messages by direction (sent, received, rejected).', labelNames: ['direction'], registers,
    collect () {
      const r = replicator()
      this.reset()
      this.inc({ direction: 'sent' }, r.messagesSent)
      this.inc({ direction: 'received' }, r.messagesReceived)
      this.inc({ direction: 'rejected' }, r.messagesRejected)
    }
  })
  new Gauge({ name: 'meshlimit_policy_version', help: 'Version of the policy document in force.', registers, collect () { this.set(limiter.policies.version) } })
  new Gauge({
    name: 'meshlimit_keys', help: 'Keys tracked per limit.', labelNames: ['limit'], registers,
    collect () {
      this.reset()
      for (const l of limiter.stats().limits) this.set({ limit: l.name }, l.keys)
    }
  })
  const stalls = init.stalls
  if (stalls !== undefined) {
    new Counter({
      name: 'meshlimit_event_loop_stalls_total', help: 'Event-loop stalls by cause: gc (collection filled half of it), task (the process was busy: a long task), wait (the process was not running).', labelNames: ['cause'], registers,
      collect () {
        const st = stalls.stats()
        this.reset()
        this.inc({ cause: 'gc' }, st.gcStalls)
        this.inc({ cause: 'task' }, st.taskStalls)
        this.inc({ cause: 'wait' }, st.waitStalls)
      }
    })
    new Counter({
      name: 'meshlimit_event_loop_stall_seconds_total', help: 'Summed length of event-loop stalls by cause.', labelNames: ['cause'], registers,
      collect () {
        const st = stalls.stats()
        this.reset()
        this.inc({ cause: 'gc' }, st.gcStallMs / 1000)
        this.inc({ cause: 'task' }, st.taskStallMs / 1000)
        this.inc({ cause: 'wait' }, st.waitStallMs / 1000)
      }
    })
    new Counter({ name: 'meshlimit_event_loop_stall_gc_seconds_total', help: 'Garbage-collection time inside event-loop stalls.', registers, collect () { this.reset(); this.inc(stalls.stats().gcInStallsMs / 1000) } })
    new Gauge({ name: 'meshlimit_event_loop_stall_max_seconds', help: 'Longest event-loop stall since the previous scrape.', registers, collect () { this.set(stalls.takeMaxMs() / 1000) } })
  }
  if (blocklist !== undefined) {
    new Gauge({ name: 'meshlimit_blocklist_blocked', help: 'Clients blocked right now.', registers, collect () { this.set(blocklist.stats().blocked) } })
    new Counter({
      name: 'meshlimit_blocks_total', help: 'Block-list changes by source (manual, escalation, peer) and unblocks.', labelNames: ['source'], registers,
      collect () {
        this.reset()
        this.inc({ source: 'manual' }, blocks.manual)
        this.inc({ source: 'escalation' }, blocks.escalation)
        this.inc({ source: 'peer' }, blocks.peer)
        this.inc({ source: 'unblock' }, blocks.unblocks)
      }
    })
    new Counter({ name: 'meshlimit_blocklist_rejected_messages_total', help: 'Block-list messages refused as malformed or forged.', registers, collect () { this.reset(); this.inc(blocklist.stats().messagesRejected) } })
  }

  return {
    registry,
    decision (api, _key, d: Decision, latencyMs) {
      const c = apiCounts(api)
      if (d.allowed) c.allowed++
      else {
        c.denied++
        const p = d.policy ?? ''
        deniedByPolicy.set(p, (deniedByPolicy.get(p) ?? 0) + 1)
      }
      latency.observe(latencyMs / 1000)
    },
    blocked (api, _key, _entry: BlockEntry) {
      apiCounts(api).blocked++
    },
    blockChange (e) {
      if (e.action === 'unblock') blocks.unblocks++
      else if (!e.local) blocks.peer++
      else if (e.entry.reason.startsWith('escalation')) blocks.escalation++
      else blocks.manual++
    },
    async text () {
      return await registry.metrics()
    }
  }
}
