import { generateKeyPair } from '@libp2p/crypto/keys'
import { describe, expect, it } from 'vitest'
import { createLibp2pTransport, type Libp2pTransport } from '../../gossip/libp2p.js'
import { generateSwarmKey } from '../../gossip/psk.js'
import { until } from '../helpers/wait.js'

describe('libp2p transport: bootstrap peers are kept connected', () => {
  it('reconnects after a block is lifted and after the bootstrap peer restarts on its address', async () => {
    const psk = generateSwarmKey()
    const key = await generateKeyPair('Ed25519')
    let seed: Libp2pTransport = await createLibp2pTransport({ psk, privateKey: key, topics: [] })
    const addr = seed.multiaddrs()[0]
    const node = await createLibp2pTransport({ psk, topics: [], bootstrap: [addr], redialIntervalMs: 200 })
    try {
      await until(() => node.peers().includes(seed.peerId), 'the first connection to the bootstrap peer')
      await node.block(seed.peerId)
      await until(() => !node.peers().includes(seed.peerId), 'the hang-up')
      // Blocked: the redial loop leaves it alone.
      await new Promise(resolve => setTimeout(resolve, 600))
      expect(node.peers()).not.toContain(seed.peerId)
      node.unblock(seed.peerId)
      await until(() => node.peers().includes(seed.peerId), 'the reconnection after unblock', 5000)

      // The bootstrap peer restarts (same identity, same address): dialled again.
      await seed.stop()
      await until(() => !node.peers().includes(seed.peerId), 'the disconnection of the stopped peer')
      seed = await createLibp2pTransport({ psk, privateKey: key, topics: [], listen: [addr.slice(0, addr.indexOf('/p2p/'))] })
      await until(() => node.peers().includes(seed.peerId), 'the reconnection to the restarted bootstrap peer', 5000)
    } finally {
      await node.stop()
      await seed.stop()
    }
  })
})
