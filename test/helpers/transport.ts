import type { Transport } from '../../gossip/transport.js'

/** A transport that does nothing unless told to: the parts a test cares about go in `parts`. */
export function stubTransport (peerId: string, parts: Partial<Transport> = {}): Transport {
  return {
    peerId,
    publish () {},
    subscribe () {},
    unsubscribe () {},
    async request () { throw new Error('stub transport: no peers') },
    handle () {},
    unhandle () {},
    peers: () => [],
    ...parts
  }
}
