import type { Transport } from '../gossip/transport.js'

/** A transport with no peers, for benchmarks that feed the limiter directly. */
export function stubTransport (peerId: string): Transport {
  return {
    peerId,
    publish () {},
    subscribe () {},
    unsubscribe () {},
    async request () { throw new Error('no peers') },
    handle () {},
    unhandle () {},
    peers: () => []
  }
}
