/**
 * The window exchange of the parallel runner (chaos/sim/parallel.ts). Every region is a
 * unit with its own scheduler and network; what one unit sends another (a publish on a
 * mesh-wide topic, a request or its answer) leaves as an envelope stamped with its send
 * time. Units advance in lockstep windows of the lookahead L (the floor of the
 * inter-region latency): nothing sent in a window can arrive before the window ends, so
 * envelopes are handed over between windows, in one order that does not depend on which
 * thread ran which unit.
 */

interface Leg {
  /** Simulated send time. */
  at: number
  /** Sending node index. */
  from: number
  /** Order of sending within the sender's unit (set by the unit's outbox). */
  seq: number
}

/** A publish on a topic other units subscribe to: each receiving unit fans it out to its nodes. */
export interface PubEnvelope extends Leg { k: 'pub', topic: string, data: Uint8Array }
/** A request to node `to` of another unit; `id` names it in the sender's unit. */
export interface ReqEnvelope extends Leg { k: 'req', to: number, id: number, protocol: string, data: Uint8Array }
/** The answer (or error message) to request `id`, back to node `to`. */
export interface ResEnvelope extends Leg { k: 'res', to: number, id: number, err: string | undefined, data: Uint8Array }
export type Envelope = PubEnvelope | ReqEnvelope | ResEnvelope

/** What a unit's network needs to know about the rest of the fleet. */
export interface RemoteLink {
  /** Whether node `index` belongs to this unit. */
  isLocal(index: number): boolean
  /** Whether a node of another unit is attached to the network, as of the last exchange. */
  attached(index: number): boolean
  /** Whether other units may subscribe to `topic` (publishes on it leave the unit). */
  exports(topic: string): boolean
  /** Sends an envelope to the next exchange (its seq is set here). */
  send(env: Envelope): void
  /** A node of this unit attached (true) or detached from the network. */
  note(index: number, attached: boolean): void
}

/** The exchange order: send time, sending node, then order of sending (a total order: a node lives in one unit). */
export function compareEnvelopes (a: Envelope, b: Envelope): number {
  return a.at - b.at || a.from - b.from || a.seq - b.seq
}

/**
 * Routes one window's envelopes: a publish goes to every unit but the sender's, a
 * request or answer to the unit of its target. Returns each unit's inbox in exchange
 * order, whatever order the outboxes came in.
 */
export function routeWindow (outboxes: Envelope[][], unitOf: ArrayLike<number>, units: number): Envelope[][] {
  const inboxes: Envelope[][] = Array.from({ length: units }, () => [])
  for (const box of outboxes) {
    for (const env of box) {
      if (env.k === 'pub') {
        const own = unitOf[env.from]
        for (let u = 0; u < units; u++) if (u !== own) inboxes[u].push(env)
      } else inboxes[unitOf[env.to]].push(env)
    }
  }
  for (const box of inboxes) box.sort(compareEnvelopes)
  return inboxes
}

/**
 * Node state changes of one window, flat: (node index, kind, value) triples. ATTACHED:
 * on the network (peers() lists it); SERVING: start-up done (fault selectors pick among
 * serving nodes).
 */
export const ATTACHED = 0
export const SERVING = 1

/** The fleet as every unit saw it at the last exchange, updated from the notes of each window. */
export class FleetView {
  readonly attached: Uint8Array
  readonly serving: Uint8Array

  constructor (size: number) {
    this.attached = new Uint8Array(size)
    this.serving = new Uint8Array(size)
  }

  apply (notes: ArrayLike<number>): void {
    for (let j = 0; j + 2 < notes.length; j += 3) {
      const target = notes[j + 1] === ATTACHED ? this.attached : this.serving
      target[notes[j]] = notes[j + 2]
    }
  }

  /** Serving nodes in index order. */
  alive (): number[] {
    const out: number[] = []
    for (let i = 0; i < this.serving.length; i++) if (this.serving[i] === 1) out.push(i)
    return out
  }
}
