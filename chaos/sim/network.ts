import type { MessageHandler, RequestHandler, Transport, Verdict } from '../../gossip/transport.js'
import type { Random } from '../../membership/random.js'
import type { NetworkSpec } from '../scenario.js'
import type { Envelope, RemoteLink } from './exchange.js'
import { MeshOverlay } from './overlay.js'
import { createRemoteSide, serve } from './remote.js'
import { sampler } from './random.js'
import { ALWAYS, type EventOwner, type Scheduler, type Task } from './scheduler.js'

/**
 * The simulated network. Model (see docs/chaos.md):
 *
 * - Direct fan-out: a publish sends one copy to every other live subscriber of the topic,
 *   over the link between the two nodes. Each copy takes the sender's uplink for
 *   (payload + overhead) / bandwidth, then a latency drawn from the link's distribution
 *   (intra- or inter-region).
 * - Each copy is independently lost, duplicated, or held back (reordered) with the
 *   scenario's probabilities. Partitions cut links between groups; a copy sent across a
 *   cut is never sent. A copy in flight to a node that crashes is lost with the process.
 * - Requests travel the same links both ways (each leg lost or cut like a message) and
 *   fail after their timeout when a leg is lost; an unknown protocol or a throwing
 *   handler answers with an error one round trip later.
 */

/** Why a copy of a message did not arrive. */
export type DropReason = 'loss' | 'partition'

/** What the measurement side learns about traffic; everything is optional. */
export interface NetworkObserver {
  /** A node published; the return value comes back in delivered() for each copy. */
  published?(from: number, topic: string, data: Uint8Array): unknown
  /** A copy reached `to`, whose handler answered `verdict`. */
  delivered?(tag: unknown, from: number, to: number, verdict: Verdict): void
  /** A copy from `from` to `to` was not delivered. */
  dropped?(from: number, to: number, reason: DropReason): void
}

export interface NetworkStats {
  published: number
  copiesSent: number
  delivered: number
  duplicated: number
  reordered: number
  droppedLoss: number
  droppedPartition: number
  rejected: number
  /** Relayed copies a node had already seen (mesh delivery): dropped before its handler. */
  duplicatesSuppressed: number
  requests: number
  requestFailures: number
  /** Uplink bytes per node (payload + overhead of every copy sent). */
  bytesSent: Float64Array
  payloadBytesSent: Float64Array
}

interface Member {
  owner: EventOwner
  topics: Map<string, MessageHandler>
  protocols: Map<string, RequestHandler>
}

export interface SimNetwork {
  /** Transport of node `index`'s incarnation `owner` (events it schedules die with the owner). */
  attach(index: number, peerId: string, owner: EventOwner): Transport
  /** Takes node `index` off the network (crash or leave): it neither sends nor receives. */
  detach(index: number): void
  /** Splits nodes into groups (group id per node index); messages cross no group boundary. */
  partition(groupOf: Int32Array): void
  heal(): void
  /**
   * A copy or request leg from another unit of a parallel run (chaos/sim/exchange.ts),
   * sent at `env.at`: its latency, loss and so on are drawn here, now.
   */
  receive(env: Envelope): void
  /** Whether two nodes can currently talk. */
  connected(a: number, b: number): boolean
  /** Requests whose promise is not settled yet. */
  readonly requestsInFlight: number
  /** Longest time from send to arrival of any copy so far (uplink queue + latency + delays). */
  readonly maxTransitMs: number
  /**
   * Publish time of the oldest message of node `index` with copies still on the way
   * (Infinity when none): every message it published before that has fully landed.
   */
  oldestInFlight(index: number): number
  readonly stats: NetworkStats
}

export interface SimNetworkInit {
  scheduler: Scheduler
  spec: NetworkSpec
  /**
   * `direct`: a publish sends a copy to every subscriber. `mesh`: gossipsub-like relay,
   * each node forwards a new message it accepted to its mesh peers (degree D).
   * @default direct
   */
  delivery?: 'direct' | 'mesh'
  /** Mesh degree D of the `mesh` delivery. @default 6 */
  meshDegree?: number
  /** Region index of every node index that can ever exist (initial and joining nodes). */
  regionOf: Int32Array
  rnd: Random
  observer?: NetworkObserver
  /**
   * Set when this network carries one unit (region) of a parallel run: nodes of other
   * units are reached through the link. @default every node is local
   */
  remote?: RemoteLink
  /** Peer ids of every node index (so remote peers can be addressed before they attach). */
  peerIds?: string[]
}

const NO_BYTES = new Uint8Array(0)

export function createSimNetwork (init: SimNetworkInit): SimNetwork {
  const { scheduler: sched, spec, regionOf, rnd } = init
  const obs = init.observer ?? {}
  const size = regionOf.length
  const members: Array<Member | undefined> = new Array(size).fill(undefined)
  const peerIds: string[] = init.peerIds === undefined ? new Array(size).fill('') : init.peerIds.slice()
  const byPeer = new Map<string, number>(init.peerIds?.map((p, i) => [p, i]))
  const remote = init.remote
  /** Live subscribers per topic, in node order (deterministic delivery order). */
  const subscribers = new Map<string, number[]>()
  let groupOf: Int32Array | undefined
  const uplinkFree = new Float64Array(size)
  const intra = sampler(spec.intraRegion, rnd)
  const inter = sampler(spec.interRegion, rnd)
  const msPerByte = 1000 / spec.uplinkBytesPerSec
  let inFlight = 0
  let maxTransit = 0
  const overlay = init.delivery === 'mesh' ? new MeshOverlay(rnd, init.meshDegree ?? 6) : undefined
  /** Per node, its messages in publish order until they land (finished ones are popped lazily). */
  const flights: Array<Array<{ at: number, done: boolean }>> = Array.from({ length: size }, () => [])
  const depart = (from: number): { at: number, done: boolean } => {
    const f = { at: sched.now, done: false }
    flights[from].push(f)
    return f
  }
  const stats: NetworkStats = {
    published: 0, copiesSent: 0, delivered: 0, duplicated: 0, reordered: 0, droppedLoss: 0, droppedPartition: 0, rejected: 0, duplicatesSuppressed: 0,
    requests: 0, requestFailures: 0, bytesSent: new Float64Array(size), payloadBytesSent: new Float64Array(size)
  }

  const connected = (a: number, b: number): boolean => groupOf === undefined || groupOf[a] === groupOf[b]
  const latency = (a: number, b: number): number => regionOf[a] === regionOf[b] ? intra() : inter()

  /** Time at which a copy of `bytes` sent now from `from` to `to` arrives (uplink queue + latency). */
  const arrival = (from: number, to: number, bytes: number): number => {
    const wire = bytes + spec.overheadBytesPerMessage
    const start = uplinkFree[from] > sched.now ? uplinkFree[from] : sched.now
    const done = start + wire * msPerByte
    uplinkFree[from] = done
    stats.bytesSent[from] += wire
    stats.payloadBytesSent[from] += bytes
    let at = done + latency(from, to)
    if (spec.reorder > 0 && rnd() < spec.reorder) {
      stats.reordered++
      at += rnd() * spec.reorderDelayMs
    }
    if (at - sched.now > maxTransit) maxTransit = at - sched.now
    return at
  }

  const subscribe = (topic: string, index: number): void => {
    overlay?.invalidate()
    const list = subscribers.get(topic) ?? []
    if (!list.includes(index)) {
      list.push(index)
      list.sort((a, b) => a - b)
    }
    subscribers.set(topic, list)
  }

  const unsubscribe = (topic: string, index: number): void => {
    overlay?.invalidate()
    const list = subscribers.get(topic)
    if (list === undefined) return
    const at = list.indexOf(index)
    if (at >= 0) list.splice(at, 1)
  }

  const deliver = (to: number, topic: string, data: Uint8Array, from: number, tag: unknown): void => {
    const h = members[to]?.topics.get(topic)
    if (h === undefined) return
    stats.delivered++
    const verdict = h(data, peerIds[from])
    if (verdict === 'reject') stats.rejected++
    obs.delivered?.(tag, from, to, verdict)
  }

  /** One message relayed over the mesh: which nodes have seen it, and copies in flight. */
  interface Relayed { topic: string, data: Uint8Array, origin: number, tag: unknown, seen: Uint8Array, pending: number, flight: { at: number, done: boolean } }

  /** Node `at` sends its mesh peers (except `except`) a copy of `m`. */
  const forward = (m: Relayed, at: number, except: number): void => {
    const list = subscribers.get(m.topic) as number[]
    for (const to of (overlay as MeshOverlay).peers(m.topic, at, list, connected)) {
      if (to === except || to === m.origin) continue
      if (!connected(at, to)) {
        stats.droppedPartition++
        continue
      }
      stats.copiesSent++
      const t = arrival(at, to, m.data.byteLength)
      if (spec.loss > 0 && rnd() < spec.loss) {
        stats.droppedLoss++
        continue
      }
      const owner = (members[to] as Member).owner
      m.pending++
      sched.at(t, () => { relay(m, to, at, owner) })
      if (spec.duplicate > 0 && rnd() < spec.duplicate) {
        stats.duplicated++
        const again = t + rnd() * spec.reorderDelayMs
        if (again - sched.now > maxTransit) maxTransit = again - sched.now
        m.pending++
        sched.at(again, () => { relay(m, to, at, owner) })
      }
    }
  }

  /**
   * A copy of `m` reaches `to` from `via`: the first is handled and, if accepted,
   * forwarded. When the last copy in flight lands, every subscriber that never got the
   * message is reported as a drop from its origin (a loss anywhere upstream, or a cut).
   */
  const relay = (m: Relayed, to: number, via: number, owner: EventOwner): void => {
    m.pending--
    if (sched.now - m.flight.at > maxTransit) maxTransit = sched.now - m.flight.at
    if (!owner.dead && m.seen[to] !== 1) {
      m.seen[to] = 1
      const h = members[to]?.topics.get(m.topic)
      if (h !== undefined) {
        stats.delivered++
        const verdict = h(m.data, peerIds[m.origin])
        if (verdict === 'reject') stats.rejected++
        obs.delivered?.(m.tag, m.origin, to, verdict)
        // gossipsub forwards only what its validator accepted.
        if (verdict === 'accept') forward(m, to, via)
      }
    } else if (!owner.dead) stats.duplicatesSuppressed++
    if (m.pending === 0) finish(m)
  }

  const finish = (m: Relayed): void => {
    m.flight.done = true
    for (const p of subscribers.get(m.topic) ?? []) {
      if (m.seen[p] !== 1) obs.dropped?.(m.origin, p, connected(m.origin, p) ? 'loss' : 'partition')
    }
  }

  const publish = (from: number, me: Member, topic: string, data: Uint8Array): void => {
    if (members[from] !== me) return
    stats.published++
    const tag = obs.published?.(from, topic, data)
    if (remote?.exports(topic) === true) remote.send({ k: 'pub', at: sched.now, from, seq: 0, topic, data })
    const list = subscribers.get(topic)
    if (list === undefined) return
    if (overlay !== undefined) {
      const m: Relayed = { topic, data, origin: from, tag, seen: new Uint8Array(size), pending: 0, flight: depart(from) }
      m.seen[from] = 1
      forward(m, from, -1)
      if (m.pending === 0) finish(m)
      return
    }
    const fan = fanouts.pop() ?? new Fanout()
    fan.init(topic, data, from, tag, depart(from))
    for (let k = 0; k < list.length; k++) {
      const to = list[k]
      if (to === from) continue
      if (!connected(from, to)) {
        stats.droppedPartition++
        obs.dropped?.(from, to, 'partition')
        continue
      }
      stats.copiesSent++
      const at = arrival(from, to, data.byteLength)
      if (spec.loss > 0 && rnd() < spec.loss) {
        stats.droppedLoss++
        obs.dropped?.(from, to, 'loss')
        continue
      }
      const owner = (members[to] as Member).owner
      fan.add(to, at, owner)
      if (spec.duplicate > 0 && rnd() < spec.duplicate) {
        stats.duplicated++
        const again = at + rnd() * spec.reorderDelayMs
        if (again - sched.now > maxTransit) maxTransit = again - sched.now
        fan.add(to, again, owner)
      }
    }
    fan.start()
  }

  /**
   * The copies of one message, delivered in arrival order by one task that reschedules
   * itself: one heap entry per message in flight rather than one per copy. Recycled
   * through `fanouts` once its last copy is delivered, with typed arrays sized for the
   * fleet (a copy, and maybe a duplicate, per node), so a publish allocates nothing.
   */
  class Fanout implements Task {
    at = 0
    seq = 0
    owner = ALWAYS
    cancelled = false
    topic = ''
    data: Uint8Array = NO_BYTES
    from = 0
    tag: unknown = undefined
    flight = { at: 0, done: true }
    private readonly to = new Int32Array(2 * size)
    private readonly times = new Float64Array(2 * size)
    private readonly owners: EventOwner[] = []
    /** Copies in arrival order (indexes into to/times/owners); equal times keep the order of sending. */
    private readonly order = new Int32Array(2 * size)
    private n = 0
    private next = 0

    init (topic: string, data: Uint8Array, from: number, tag: unknown, flight: { at: number, done: boolean }): void {
      this.topic = topic
      this.data = data
      this.from = from
      this.tag = tag
      this.flight = flight
      this.n = 0
      this.next = 0
    }

    add (to: number, at: number, owner: EventOwner): void {
      const k = this.n++
      this.to[k] = to
      this.times[k] = at
      this.owners[k] = owner
      // Insert after every copy arriving at or before `at` (upper bound).
      let lo = 0
      let hi = k
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (this.times[this.order[mid]] <= at) lo = mid + 1
        else hi = mid
      }
      this.order.copyWithin(lo + 1, lo, k)
      this.order[lo] = k
    }

    start (): void {
      if (this.n === 0) {
        this.flight.done = true
        this.recycle()
        return
      }
      this.at = this.times[this.order[0]]
      sched.push(this)
    }

    run (): void {
      const k = this.order[this.next++]
      // A copy in flight to a node that crashed (or restarted) dies with the connection.
      if (!this.owners[k].dead) deliver(this.to[k], this.topic, this.data, this.from, this.tag)
      if (this.next < this.n) {
        this.at = this.times[this.order[this.next]]
        sched.push(this)
      } else {
        this.flight.done = true
        this.recycle()
      }
    }

    private recycle (): void {
      this.data = NO_BYTES
      this.tag = undefined
      this.owners.length = 0
      fanouts.push(this)
    }
  }
  const fanouts: Fanout[] = []

  /** One leg of a request or answer: the arrival time, or undefined when it is lost or cut. */
  const leg = (from: number, to: number, bytes: number): number | undefined => {
    if (!connected(from, to) || members[to] === undefined) return undefined
    const at = arrival(from, to, bytes)
    if (spec.loss > 0 && rnd() < spec.loss) return undefined
    return at
  }

  const request = async (from: number, me: Member, peerId: string, protocol: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> => {
    stats.requests++
    if (members[from] !== me) throw new Error(`sim: ${peerIds[from]} is not running`)
    const to = byPeer.get(peerId)
    inFlight++
    return await new Promise<Uint8Array>((resolve, reject) => {
      let done = false
      const settle = (err: Error | undefined, answer?: Uint8Array): void => {
        if (done) return
        done = true
        inFlight--
        cancelTimeout()
        if (err !== undefined) {
          stats.requestFailures++
          reject(err)
        } else resolve(answer as Uint8Array)
        // Let the continuation run at this simulated instant, before later events.
        sched.requestYield()
      }
      let call = -1
      const cancelTimeout = sched.after(timeoutMs, () => {
        if (call >= 0) remoteSide?.forget(call)
        settle(new Error(`sim: ${protocol} request to ${peerId} timed out after ${timeoutMs} ms`))
      }, me.owner)
      if (to !== undefined && remoteSide !== undefined && !(remote as RemoteLink).isLocal(to)) {
        call = remoteSide.call(from, me.owner, to, protocol, data, settle)
        return
      }
      const at = to === undefined ? undefined : leg(from, to, data.byteLength)
      if (to === undefined || at === undefined) return
      const target = members[to] as Member
      sched.at(at, () => {
        const handler = target.protocols.get(protocol)
        const answer = (err: Error | undefined, bytes: Uint8Array): void => {
          if (members[to] !== target) return
          const back = leg(to, from, bytes.byteLength)
          if (back !== undefined) sched.at(back, () => { settle(err, bytes) }, me.owner)
        }
        if (handler === undefined) {
          answer(new Error(`sim: ${peerId} does not handle ${protocol}`), new Uint8Array(0))
          return
        }
        serve(sched, handler, data, peerIds[from], answer)
      }, target.owner)
    })
  }

  const remoteSide = remote === undefined
    ? undefined
    : createRemoteSide({
      sched,
      spec,
      rnd,
      stats,
      obs,
      link: remote,
      peerIds,
      member: index => members[index],
      subscribers: topic => subscribers.get(topic),
      connected,
      latency,
      transit: ms => { if (ms > maxTransit) maxTransit = ms },
      fanout: (topic, data, from, sentAt) => {
        const fan = fanouts.pop() ?? new Fanout()
        fan.init(topic, data, from, undefined, { at: sentAt, done: false })
        return fan
      }
    })

  return {
    stats,
    receive: env => { (remoteSide as NonNullable<typeof remoteSide>).receive(env) },
    get requestsInFlight () { return inFlight },
    get maxTransitMs () { return maxTransit },
    oldestInFlight (index) {
      const q = flights[index]
      while (q.length > 0 && q[0].done) q.shift()
      return q.length === 0 ? Infinity : q[0].at
    },
    connected,
    partition (groups) {
      if (groups.length !== size) throw new RangeError(`partition: expected ${size} group ids, got ${groups.length}`)
      groupOf = groups
      overlay?.invalidate()
    },
    heal () {
      groupOf = undefined
      overlay?.invalidate(true)
    },
    detach (index) {
      const m = members[index]
      if (m === undefined) return
      for (const topic of m.topics.keys()) unsubscribe(topic, index)
      members[index] = undefined
      remote?.note(index, false)
    },
    attach (index, peerId, owner) {
      if (members[index] !== undefined) throw new RangeError(`sim: node ${index} is already attached`)
      const me: Member = { owner, topics: new Map(), protocols: new Map() }
      members[index] = me
      peerIds[index] = peerId
      byPeer.set(peerId, index)
      remote?.note(index, true)
      return {
        peerId,
        publish (topic, data) { publish(index, me, topic, data) },
        subscribe (topic, handler) {
          if (members[index] !== me) return
          me.topics.set(topic, handler)
          subscribe(topic, index)
        },
        unsubscribe (topic) {
          if (!me.topics.delete(topic)) return
          if (members[index] === me) unsubscribe(topic, index)
        },
        request: async (to, protocol, data, timeoutMs) => await request(index, me, to, protocol, data, timeoutMs),
        handle (protocol, handler) { me.protocols.set(protocol, handler) },
        unhandle (protocol) { me.protocols.delete(protocol) },
        peers () {
          const out: string[] = []
          for (let j = 0; j < size; j++) {
            if (j === index || !connected(index, j)) continue
            if (members[j] !== undefined || (remote !== undefined && !remote.isLocal(j) && remote.attached(j))) out.push(peerIds[j])
          }
          return out
        }
      }
    }
  }
}
