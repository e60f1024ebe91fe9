/**
 * The network seam. The limiter core publishes bytes to a topic and receives bytes
 * from a topic, nothing more; libp2p gossipsub implements it in production, the
 * loopback network in tests and the simulator with virtual time.
 */

/** What a receiver made of a message; `reject` feeds the sender's peer score. */
export type Verdict = 'accept' | 'reject' | 'ignore'

/** Receives one message: its bytes and the authenticated peer id of its sender. */
export type MessageHandler = (data: Uint8Array, from: string) => Verdict

export interface Transport {
  /** This node's peer id: the authenticated sender of what it publishes. */
  readonly peerId: string
  /** Sends `data` to every other subscriber of `topic` (best effort). */
  publish(topic: string, data: Uint8Array): void
  /** Delivers `topic`'s messages from other peers to `handler` (one handler per topic). */
  subscribe(topic: string, handler: MessageHandler): void
  unsubscribe(topic: string): void
}
