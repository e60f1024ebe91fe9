/**
 * The network seam. The core publishes bytes to a topic, receives bytes from a topic,
 * and asks one peer a question (anti-entropy, policy pulls); nothing more. libp2p
 * (gossipsub plus a request/response protocol) implements it in production, the
 * loopback network in tests, and the chaos simulator with virtual time.
 */

/** What a receiver made of a message; `reject` feeds the sender's peer score. */
export type Verdict = 'accept' | 'reject' | 'ignore'

/** Receives one message: its bytes and the authenticated peer id of its sender. */
export type MessageHandler = (data: Uint8Array, from: string) => Verdict

/** Answers one request from peer `from`; throwing sends the requester an error. */
export type RequestHandler = (data: Uint8Array, from: string) => Uint8Array | Promise<Uint8Array>

export interface Transport {
  /** This node's peer id: the authenticated sender of what it publishes. */
  readonly peerId: string
  /** Sends `data` to every other subscriber of `topic` (best effort). */
  publish(topic: string, data: Uint8Array): void
  /** Delivers `topic`'s messages from other peers to `handler` (one handler per topic). */
  subscribe(topic: string, handler: MessageHandler): void
  unsubscribe(topic: string): void
  /**
   * Sends `data` to `peerId` on `protocol` and resolves with its answer; rejects on
   * timeout, when the peer is unreachable, or when its handler failed.
   */
  request(peerId: string, protocol: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array>
  /** Serves `protocol` (one handler per protocol). */
  handle(protocol: string, handler: RequestHandler): void
  unhandle(protocol: string): void
  /** Peers this node can currently reach directly. */
  peers(): string[]
}
