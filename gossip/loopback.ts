import type { Clock } from '../membership/clock.js'
import type { MessageHandler, RequestHandler, Transport, Verdict } from './transport.js'

export interface LoopbackInit {
  /** Clock used to delay deliveries; required when latencyMs > 0. */
  clock?: Clock
  /**
   * Delay of every delivery and of each leg of a request, in ms; 0 delivers
   * published messages synchronously inside publish().
   * @default 0
   */
  latencyMs?: number
  /**
   * Decides per delivery whether it is dropped (tests of loss and partitions); also
   * consulted for requests, with the protocol as topic.
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
  requests: number
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

interface Member {
  topics: Map<string, MessageHandler>
  protocols: Map<string, RequestHandler>
}

/** An in-process network: every published message reaches every other subscriber. */
export function createLoopbackNetwork (init: LoopbackInit = {}): LoopbackNetwork {
  const latencyMs = init.latencyMs ?? 0
  if (latencyMs > 0 && init.clock === undefined) throw new RangeError('createLoopbackNetwork: latencyMs needs a clock')
  const members = new Map<string, Member>()
  const stats: LoopbackStats = { published: 0, delivered: 0, dropped: 0, bytes: 0, requests: 0, rejectedFrom: new Map() }

  const later = (fn: () => void): void => {
    if (latencyMs > 0) (init.clock as Clock).setTimer(latencyMs, fn)
    else queueMicrotask(fn)
  }

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
      const me: Member = { topics: new Map(), protocols: new Map() }
      members.set(peerId, me)
      const connected = (): boolean => members.get(peerId) === me
      return {
        peerId,
        publish (topic, data) {
          if (!connected()) return
          stats.published++
          stats.bytes += data.byteLength
          for (const [to, them] of members) {
            if (to === peerId || !them.topics.has(topic)) continue
            if (init.drop?.(topic, peerId, to, data) === true) {
              stats.dropped++
              continue
            }
            if (latencyMs > 0) {
              // Look the handler up again: the receiver may have left meanwhile.
              later(() => {
                const h = members.get(to)?.topics.get(topic)
                if (h !== undefined) deliver(h, data, peerId)
              })
            } else deliver(them.topics.get(topic) as MessageHandler, data, peerId)
          }
        },
        subscribe (topic, handler) {
          me.topics.set(topic, handler)
        },
        unsubscribe (topic) {
          me.topics.delete(topic)
        },
        async request (to, protocol, data, timeoutMs) {
          stats.requests++
          const them = members.get(to)
          const handler = them?.protocols.get(protocol)
          if (!connected() || handler === undefined || init.drop?.(protocol, peerId, to, data) === true) {
            throw new Error(`loopback: ${to} does not answer ${protocol}`)
          }
          return await new Promise<Uint8Array>((resolve, reject) => {
            let done = false
            const cancel = init.clock?.setTimer(timeoutMs, () => {
              if (done) return
              done = true
              reject(new Error(`loopback: ${protocol} request to ${to} timed out after ${timeoutMs} ms`))
            })
            later(() => {
              Promise.resolve().then(async () => await handler(data, peerId)).then(answer => {
                later(() => {
                  if (done) return
                  done = true
                  cancel?.()
                  resolve(answer)
                })
              }, (err: unknown) => {
                if (done) return
                done = true
                cancel?.()
                reject(err instanceof Error ? err : new Error(String(err)))
              })
            })
          })
        },
        handle (protocol, handler) {
          me.protocols.set(protocol, handler)
        },
        unhandle (protocol) {
          me.protocols.delete(protocol)
        },
        peers () {
          return [...members.keys()].filter(p => p !== peerId)
        }
      }
    }
  }
}
