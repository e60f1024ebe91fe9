import type { Clock } from '../membership/clock.js'
import type { MessageHandler, Transport, Verdict } from './transport.js'

export interface LoopbackInit {
  /** Clock used to delay deliveries; required when latencyMs > 0. */
  clock?: Clock
  /**
   * Delay of every delivery, in ms; 0 delivers synchronously inside publish().
   * @default 0
   */
  latencyMs?: number
  /**
   * Decides per delivery whether it is dropped (tests of loss and partitions).
   * @default deliver everything
   */
  drop?: (topic: string, from: string, to: string, data: Uint8Array) => boolean
}

/** What the loopback network saw, for assertions. */
export interface LoopbackStats {
  published: number
  delivered: number
  dropped: number
  bytes: number
  /** Verdicts by sender peer id. */
  rejectedFrom: Map<string, number>
}

export interface LoopbackNetwork {
  /** A transport for a new member of the network. */
  connect(peerId: string): Transport
  /** Removes a member: it neither sends nor receives any more. */
  disconnect(peerId: string): void
  readonly stats: LoopbackStats
}

/** An in-process network: every published message reaches every other subscriber. */
export function createLoopbackNetwork (init: LoopbackInit = {}): LoopbackNetwork {
  const latencyMs = init.latencyMs ?? 0
  if (latencyMs > 0 && init.clock === undefined) throw new RangeError('createLoopbackNetwork: latencyMs needs a clock')
  const members = new Map<string, Map<string, MessageHandler>>()
  const stats: LoopbackStats = { published: 0, delivered: 0, dropped: 0, bytes: 0, rejectedFrom: new Map() }

  const deliver = (handler: MessageHandler, data: Uint8Array, from: string): void => {
    stats.delivered++
    const verdict: Verdict = handler(data, from)
    if (verdict === 'reject') stats.rejectedFrom.set(from, (stats.rejectedFrom.get(from) ?? 0) + 1)
  }

  return {
    stats,
    disconnect (peerId) {
      members.delete(peerId)
    },
    connect (peerId) {
      if (members.has(peerId)) throw new RangeError(`loopback: ${peerId} is already connected`)
      const topics = new Map<string, MessageHandler>()
      members.set(peerId, topics)
      return {
        peerId,
        publish (topic, data) {
          if (members.get(peerId) !== topics) return
          stats.published++
          stats.bytes += data.byteLength
          for (const [to, theirs] of members) {
            if (to === peerId) continue
            const handler = theirs.get(topic)
            if (handler === undefined) continue
            if (init.drop?.(topic, peerId, to, data) === true) {
              stats.dropped++
              continue
            }
            if (latencyMs > 0) {
              (init.clock as Clock).setTimer(latencyMs, () => {
                // Look the handler up again: the receiver may have left meanwhile.
                const h = members.get(to)?.get(topic)
                if (h !== undefined) deliver(h, data, peerId)
              })
            } else deliver(handler, data, peerId)
          }
        },
        subscribe (topic, handler) {
          topics.set(topic, handler)
        },
        unsubscribe (topic) {
          topics.delete(topic)
        }
      }
    }
  }
}
