import type { RequestHandler } from '../../gossip/transport.js'
import type { Random } from '../../membership/random.js'
import type { NetworkSpec } from '../scenario.js'
import type { Envelope, RemoteLink } from './exchange.js'
import type { NetworkObserver, NetworkStats } from './network.js'
import type { EventOwner, Scheduler } from './scheduler.js'

/**
 * Runs a request handler and passes its answer, or its error (thrown or rejected), to
 * `answer`; an asynchronous handler makes the scheduler yield so its promise settles.
 * Shared by local requests (network.ts) and requests from another unit.
 */
export function serve (sched: Scheduler, handler: RequestHandler, data: Uint8Array, from: string, answer: (err: Error | undefined, bytes: Uint8Array) => void): void {
  const fail = (err: unknown): void => { answer(err instanceof Error ? err : new Error(String(err)), new Uint8Array(0)) }
  let result: Uint8Array | Promise<Uint8Array>
  try {
    result = handler(data, from)
  } catch (err) {
    fail(err)
    return
  }
  if (result instanceof Uint8Array) answer(undefined, result)
  else {
    result.then(bytes => { answer(undefined, bytes) }, fail)
    sched.requestYield()
  }
}

/** What the remote side of a unit's network reads and drives (owned by network.ts). */
export interface RemoteContext {
  sched: Scheduler
  spec: NetworkSpec
  rnd: Random
  stats: NetworkStats
  obs: NetworkObserver
  link: RemoteLink
  peerIds: string[]
  /** The attached incarnation of a local node. */
  member(index: number): { owner: EventOwner, protocols: Map<string, RequestHandler> } | undefined
  /** Local subscribers of a topic, in node order. */
  subscribers(topic: string): number[] | undefined
  connected(a: number, b: number): boolean
  latency(from: number, to: number): number
  /** Records a copy's time in transit (for maxTransitMs). */
  transit(ms: number): void
  /** A fan-out of one message to local nodes, delivered in arrival order. */
  fanout(topic: string, data: Uint8Array, from: number, sentAt: number): { add(to: number, at: number, owner: EventOwner): void, start(): void }
}

type Settle = (err: Error | undefined, answer?: Uint8Array) => void

/**
 * The part of a unit's network that talks to other units of a parallel run: requests
 * leave as envelopes and their answers come back as envelopes; envelopes handed over
 * at an exchange are fanned out (publishes), handled (requests) or settled (answers)
 * here, drawing latency, loss and reordering from this unit's stream. A copy from
 * another unit does not queue on its sender's uplink (its bytes still count there).
 */
export function createRemoteSide (ctx: RemoteContext): { call(from: number, owner: EventOwner, to: number, protocol: string, data: Uint8Array, settle: Settle): number, forget(id: number): void, receive(env: Envelope): void } {
  const { sched, spec, rnd, stats, obs, link, peerIds } = ctx
  /** Requests to nodes of other units waiting for their answer, by id. */
  const calls = new Map<number, { settle: Settle, owner: EventOwner }>()
  let nextCall = 0

  /** Arrival of a copy from another unit sent at `sentAt`. */
  const arrival = (from: number, to: number, bytes: number, sentAt: number): number => {
    const wire = bytes + spec.overheadBytesPerMessage
    stats.bytesSent[from] += wire
    stats.payloadBytesSent[from] += bytes
    let at = sentAt + ctx.latency(from, to)
    if (spec.reorder > 0 && rnd() < spec.reorder) {
      stats.reordered++
      at += rnd() * spec.reorderDelayMs
    }
    ctx.transit(at - sentAt)
    return at
  }
  const lost = (): boolean => spec.loss > 0 && rnd() < spec.loss

  const publish = (env: Extract<Envelope, { k: 'pub' }>): void => {
    const list = ctx.subscribers(env.topic)
    if (list === undefined) return
    const fan = ctx.fanout(env.topic, env.data, env.from, env.at)
    for (let k = 0; k < list.length; k++) {
      const to = list[k]
      if (!ctx.connected(env.from, to)) {
        stats.droppedPartition++
        obs.dropped?.(env.from, to, 'partition')
        continue
      }
      stats.copiesSent++
      const at = arrival(env.from, to, env.data.byteLength, env.at)
      if (lost()) {
        stats.droppedLoss++
        obs.dropped?.(env.from, to, 'loss')
        continue
      }
      const owner = (ctx.member(to) as { owner: EventOwner }).owner
      fan.add(to, at, owner)
      if (spec.duplicate > 0 && rnd() < spec.duplicate) {
        stats.duplicated++
        fan.add(to, at + rnd() * spec.reorderDelayMs, owner)
      }
    }
    fan.start()
  }

  const request = (env: Extract<Envelope, { k: 'req' }>): void => {
    const { from, to } = env
    const target = ctx.member(to)
    if (!ctx.connected(from, to) || target === undefined) return
    const at = arrival(from, to, env.data.byteLength, env.at)
    if (lost()) return
    sched.at(at, () => {
      const handler = target.protocols.get(env.protocol)
      const answer = (err: Error | undefined, bytes: Uint8Array): void => {
        if (ctx.member(to) !== target) return
        link.send({ k: 'res', at: sched.now, from: to, seq: 0, to: from, id: env.id, err: err?.message, data: bytes })
      }
      if (handler === undefined) {
        answer(new Error(`sim: ${peerIds[to]} does not handle ${env.protocol}`), new Uint8Array(0))
        return
      }
      serve(sched, handler, env.data, peerIds[from], answer)
    }, target.owner)
  }

  const answer = (env: Extract<Envelope, { k: 'res' }>): void => {
    const call = calls.get(env.id)
    if (call === undefined || !ctx.connected(env.from, env.to)) return
    const at = arrival(env.from, env.to, env.data.byteLength, env.at)
    if (lost()) return
    sched.at(at, () => {
      calls.delete(env.id)
      call.settle(env.err === undefined ? undefined : new Error(env.err), env.data)
    }, call.owner)
  }

  return {
    call (from, owner, to, protocol, data, settle) {
      const id = nextCall++
      calls.set(id, { settle, owner })
      link.send({ k: 'req', at: sched.now, from, seq: 0, to, id, protocol, data })
      return id
    },
    forget (id) { calls.delete(id) },
    receive (env) {
      if (env.k === 'pub') publish(env)
      else if (env.k === 'req') request(env)
      else answer(env)
    }
  }
}
