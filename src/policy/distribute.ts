import { hashString } from '../../crdt/hash.js'
import type { Transport, Verdict } from '../../gossip/transport.js'
import type { Clock } from '../../membership/clock.js'
import { seededRandom, type Random } from '../../membership/random.js'
import { ErrorCode, invalid } from '../errors.js'
import { DEFAULT_BUNDLE_LIMITS, compareBundles } from './bundle.js'
import type { BundleInfo, PolicyManager } from './manager.js'
import { decodePolicyMessage, decodePullRequest, encodeAnnouncement, encodeBundleMessage, encodePullAnswer, encodePullRequest, type PolicyMessage } from './wire.js'

/**
 * Distribution of signed policy bundles over the Transport seam.
 *
 * - Push: a bundle installed from an operator source (admin push, file) is published
 *   on the policies topic; receivers offer it to their manager and return `reject` for
 *   malformed, forged or invalid bundles (feeding peer scoring), `ignore` for older or
 *   already-running ones.
 * - Anti-entropy: every node re-announces (version, hash) of its bundle at a jittered
 *   interval; a node that hears of a newer one pulls it from the announcer over a
 *   request/response protocol. A node that hears an older announcement answers with
 *   its own soon (one answer per mesh, others suppress theirs on hearing it).
 * - Startup: start() pulls from a few peers; `ready` resolves once a peer answered, a
 *   bundle arrived another way, or the startup timeout passed. Until then the limiter
 *   runs the policies it was created with (its fallback).

 * Wire format: src/policy/wire.ts.
 */
export interface PolicyDistributorInit {
  transport: Transport
  clock: Clock
  manager: PolicyManager
  /** Topic bundles and announcements travel on, e.g. `topicsOf(mesh).policies`. */
  topic: string
  /**
   * Request/response protocol of pulls.
   * @default "/" + topic + "/pull/1.0.0"
   */
  protocol?: string
  /**
   * Mean interval between re-announcements of the running (version, hash), in ms
   * (each is jittered by +-20%); 0 turns them off (e.g. when membership heartbeats
   * carry the version and call observe()).
   * @default 5000
   */
  announceIntervalMs?: number
  /**
   * Timeout of one pull request, in ms.
   * @default 2000
   */
  pullTimeoutMs?: number
  /**
   * How long `ready` waits for a first answer at startup, in ms.
   * @default 10000
   */
  startupTimeoutMs?: number
  /**
   * Interval between startup pull rounds while no peer answered, in ms.
   * @default 500
   */
  startupRetryMs?: number
  /**
   * Peers asked in each startup round.
   * @default 3
   */
  pullFanout?: number
  /**
   * Largest topic message or pull answer accepted, in bytes; keep it at least the
   * managers' maxBundleBytes plus 64.
   * @default 1048640
   */
  maxMessageBytes?: number
  /**
   * Randomness for jitter and peer choice.
   * @default seededRandom from a hash of the peer id
   */
  random?: Random
}

/** How the startup wait ended. */
export interface StartupOutcome {
  /**
   * `pulled`: a peer served a bundle; `up-to-date`: peers answered with nothing newer
   * than ours; `empty`: peers answered and none has a bundle; `received`: a bundle was
   * installed another way (gossip, admin, file); `timeout`: no peer answered in time;
   * `stopped`: stop() was called first.
   */
  outcome: 'pulled' | 'up-to-date' | 'empty' | 'received' | 'timeout' | 'stopped'
  /** Version and hash running when the wait ended (0 / undefined: the fallback). */
  version: number
  hash: string | undefined
  waitedMs: number
}

export interface PolicyDistributorStats {
  bundlesPublished: number
  announcementsPublished: number
  bundlesReceived: number
  announcementsReceived: number
  /** Topic messages answered with `reject` (malformed, forged, invalid). */
  rejected: number
  pulls: number
  pullFailures: number
  /** Pull requests this node answered. */
  served: number
}

export interface PolicyDistributor {
  /** Subscribes, serves pulls, starts announcing, and pulls from peers; resolves as `ready` does. */
  start(): Promise<StartupOutcome>
  /** Resolves when the startup wait ends (see StartupOutcome). */
  readonly ready: Promise<StartupOutcome>
  /** Publishes the running (version, hash) now. */
  announce(): void
  /**
   * Tells the distributor that `peerId` runs (version, hash), e.g. from a membership
   * heartbeat; pulls from it when that is newer than the running bundle.
   */
  observe(peerId: string, version: number, hash: string): void
  /** Unsubscribes, stops serving and announcing. */
  stop(): void
  readonly stats: PolicyDistributorStats
}

/** Most peers remembered as holding a newer bundle at once. */
const MAX_CANDIDATES = 64
/** Most pulls in flight at once. */
const MAX_PULLS = 2

function positive (name: string, v: number | undefined, dflt: number, min: number): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
    throw invalid(ErrorCode.OPTION_INVALID, name, v, `must be a number >= ${min}`, `leave ${name} out for ${dflt}`)
  }
  return v
}

class PolicyDistributorImpl implements PolicyDistributor {
  readonly stats: PolicyDistributorStats = { bundlesPublished: 0, announcementsPublished: 0, bundlesReceived: 0, announcementsReceived: 0, rejected: 0, pulls: 0, pullFailures: 0, served: 0 }
  readonly ready: Promise<StartupOutcome>
  private readonly transport: Transport
  private readonly clock: Clock
  private readonly manager: PolicyManager
  private readonly topic: string
  private readonly protocol: string
  private readonly announceIntervalMs: number
  private readonly pullTimeoutMs: number
  private readonly startupTimeoutMs: number
  private readonly startupRetryMs: number
  private readonly pullFanout: number
  private readonly maxMessageBytes: number
  private readonly random: Random
  private resolveReady!: (o: StartupOutcome) => void
  private settled = false
  private running = false
  private startedAt = 0
  private readonly timers = new Set<() => void>()
  private answerTimer: (() => void) | undefined
  private offUpdate: (() => void) | undefined
  /** Peers known to hold a bundle newer than ours, with what they announced. */
  private readonly candidates = new Map<string, { version: number, hash: string }>()
  private readonly inFlight = new Set<string>()

  constructor (init: PolicyDistributorInit) {
    for (const k of ['transport', 'clock', 'manager'] as const) {
      if (init[k] === undefined || init[k] === null) throw invalid(ErrorCode.OPTION_INVALID, k, init[k], 'is required', `pass the node's ${k}`)
    }
    if (typeof init.topic !== 'string' || init.topic.length === 0) throw invalid(ErrorCode.OPTION_INVALID, 'topic', init.topic, 'must be a topic name', 'pass topicsOf(mesh).policies')
    this.transport = init.transport
    this.clock = init.clock
    this.manager = init.manager
    this.topic = init.topic
    this.protocol = init.protocol ?? `/${init.topic}/pull/1.0.0`
    this.announceIntervalMs = positive('announceIntervalMs', init.announceIntervalMs, 5000, 0)
    this.pullTimeoutMs = positive('pullTimeoutMs', init.pullTimeoutMs, 2000, 1)
    this.startupTimeoutMs = positive('startupTimeoutMs', init.startupTimeoutMs, 10_000, 0)
    this.startupRetryMs = positive('startupRetryMs', init.startupRetryMs, 500, 1)
    this.pullFanout = Math.floor(positive('pullFanout', init.pullFanout, 3, 1))
    this.maxMessageBytes = positive('maxMessageBytes', init.maxMessageBytes, DEFAULT_BUNDLE_LIMITS.maxBundleBytes + 64, 1024)
    this.random = init.random ?? seededRandom(hashString(init.transport.peerId, 0x9011c7))
    this.ready = new Promise(resolve => { this.resolveReady = resolve })
  }

  async start (): Promise<StartupOutcome> {
    if (this.running) return await this.ready
    this.running = true
    this.startedAt = this.clock.now()
    this.transport.subscribe(this.topic, (data, from) => this.receive(data, from))
    this.transport.handle(this.protocol, (data, from) => this.serve(data, from))
    this.offUpdate = this.manager.on('update', b => { this.installed(b) })
    if (this.announceIntervalMs > 0) this.scheduleAnnounce()
    this.later(this.startupTimeoutMs, () => { this.settle('timeout') })
    this.startupRound()
    return await this.ready
  }

  stop (): void {
    if (!this.running) return
    this.running = false
    this.transport.unsubscribe(this.topic)
    this.transport.unhandle(this.protocol)
    this.offUpdate?.()
    for (const cancel of this.timers) cancel()
    this.timers.clear()
    this.answerTimer = undefined
    this.settle('stopped')
  }

  announce (): void {
    const cur = this.manager.current
    if (!this.running || cur === undefined) return
    this.answerTimer?.()
    this.answerTimer = undefined
    this.transport.publish(this.topic, encodeAnnouncement(cur.version, cur.hash))
    this.stats.announcementsPublished++
  }

  observe (peerId: string, version: number, hash: string): void {
    if (!this.running || peerId === this.transport.peerId) return
    if (!Number.isSafeInteger(version) || version < 1 || !/^[0-9a-f]{64}$/.test(hash)) return
    const cur = this.manager.current
    if (this.manager.isNewer(version, hash)) {
      if (this.candidates.size < MAX_CANDIDATES || this.candidates.has(peerId)) this.candidates.set(peerId, { version, hash })
      this.pullNext()
    } else if (cur !== undefined && compareBundles({ version, hash }, cur) < 0 && this.announceIntervalMs > 0) {
      // The peer is behind: answer soon, unless another node's answer is heard first.
      if (this.answerTimer === undefined) this.answerTimer = this.later(this.random() * this.announceIntervalMs / 4, () => { this.answerTimer = undefined; this.announce() })
    } else if (cur !== undefined && version === cur.version && hash === cur.hash) {
      this.answerTimer?.()
      this.answerTimer = undefined
    }
  }

  private receive (data: Uint8Array, from: string): Verdict {
    const msg = decodePolicyMessage(data, this.maxMessageBytes)
    if (msg === undefined || msg.kind === 'none' || msg.kind === 'not-newer') {
      this.stats.rejected++
      return 'reject'
    }
    if (msg.kind === 'announce') {
      this.stats.announcementsReceived++
      this.observe(from, msg.version, msg.hash)
      return 'accept'
    }
    this.stats.bundlesReceived++
    const r = this.manager.offer(msg.bytes, 'gossip', from)
    if (r.status === 'installed') return 'accept'
    if (r.status === 'current') return 'ignore'
    // Older bundles come from peers that lag; a closed limiter is our problem, not theirs.
    if (r.error.code === ErrorCode.BUNDLE_STALE || r.error.code === ErrorCode.STATE_INVALID) return 'ignore'
    this.stats.rejected++
    return 'reject'
  }

  private serve (data: Uint8Array, _from: string): Uint8Array {
    const req = decodePullRequest(data)
    if (req === undefined) throw new Error('malformed policy pull request')
    this.stats.served++
    const cur = this.manager.current
    const bytes = this.manager.bundle
    if (cur === undefined || bytes === undefined) return encodePullAnswer(undefined)
    if (req.hash !== undefined && compareBundles(cur, { version: req.version, hash: req.hash }) <= 0) return encodePullAnswer('not-newer')
    return encodePullAnswer(bytes)
  }

  /** Pulls from `peer`; resolves to what it answered (undefined on failure). */
  private async pull (peer: string): Promise<PolicyMessage | undefined> {
    this.stats.pulls++
    const cur = this.manager.current
    try {
      const answer = await this.transport.request(peer, this.protocol, encodePullRequest(cur?.version ?? 0, cur?.hash), this.pullTimeoutMs)
      const msg = decodePolicyMessage(answer, this.maxMessageBytes)
      if (msg === undefined || msg.kind === 'announce') {
        this.stats.pullFailures++
        return undefined
      }
      if (msg.kind === 'bundle' && this.running) this.manager.offer(msg.bytes, 'pull', peer)
      return msg
    } catch {
      this.stats.pullFailures++
      return undefined
    }
  }

  /** Pulls from the next peer known to hold a newer bundle, within the in-flight cap. */
  private pullNext (): void {
    for (const [peer, want] of this.candidates) {
      if (this.inFlight.size >= MAX_PULLS) return
      if (this.inFlight.has(peer)) continue
      this.candidates.delete(peer)
      if (!this.manager.isNewer(want.version, want.hash)) continue
      this.inFlight.add(peer)
      void this.pull(peer).then(() => {
        this.inFlight.delete(peer)
        // A peer that did not deliver is tried again when it announces again.
        if (this.running) this.pullNext()
      })
    }
  }

  private startupRound (): void {
    if (this.settled || !this.running) return
    const peers = this.transport.peers().filter(p => p !== this.transport.peerId)
    // A seeded shuffle, so simulated runs replay.
    for (let i = peers.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1))
      const t = peers[i]
      peers[i] = peers[j]
      peers[j] = t
    }
    const asked = peers.slice(0, this.pullFanout)
    if (asked.length === 0) {
      this.later(this.startupRetryMs, () => { this.startupRound() })
      return
    }
    void Promise.all(asked.map(async p => await this.pull(p))).then(answers => {
      if (this.settled) return
      if (answers.some(a => a?.kind === 'bundle')) this.settle('pulled')
      else if (answers.some(a => a?.kind === 'not-newer')) this.settle('up-to-date')
      else if (answers.some(a => a?.kind === 'none')) this.settle(this.manager.current === undefined ? 'empty' : 'up-to-date')
      else this.later(this.startupRetryMs, () => { this.startupRound() })
    })
  }

  private installed (b: BundleInfo): void {
    if (!this.running) return
    if (b.source === 'admin' || b.source === 'file' || b.source === 'api') {
      this.transport.publish(this.topic, encodeBundleMessage(this.manager.bundle as Uint8Array))
      this.stats.bundlesPublished++
    } else if (b.source === 'initial') {
      this.announce()
    }
    this.settle(b.source === 'pull' ? 'pulled' : 'received')
  }

  private settle (outcome: StartupOutcome['outcome']): void {
    if (this.settled) return
    this.settled = true
    this.resolveReady({ outcome, version: this.manager.version, hash: this.manager.hash, waitedMs: this.clock.now() - this.startedAt })
  }

  private scheduleAnnounce (): void {
    const delay = this.announceIntervalMs * (0.8 + 0.4 * this.random())
    this.later(delay, () => {
      this.announce()
      if (this.running) this.scheduleAnnounce()
    })
  }

  /** A timer that is cancelled by stop(); returns its cancel function. */
  private later (ms: number, fn: () => void): () => void {
    let cancel: () => void = () => {}
    const wrapped = (): void => {
      this.timers.delete(cancel)
      if (this.running) fn()
    }
    const c = this.clock.setTimer(ms, wrapped)
    cancel = () => {
      c()
      this.timers.delete(cancel)
    }
    this.timers.add(cancel)
    return cancel
  }
}

/** Creates the distributor of a node's policy bundles (see PolicyDistributorInit). */
export function createPolicyDistributor (init: PolicyDistributorInit): PolicyDistributor {
  if (typeof init !== 'object' || init === null) throw invalid(ErrorCode.OPTION_INVALID, 'init', init, 'must be an object', 'pass { transport, clock, manager, topic }')
  return new PolicyDistributorImpl(init)
}
