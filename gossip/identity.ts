import { readFile, writeFile } from 'node:fs/promises'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'

/**
 * A node's libp2p identity kept in a file, so its peer id survives restarts: peers
 * then see one replica with a growing incarnation instead of a new replica per start
 * (each costs a slot in every peer's replica table until it is forgotten).
 *
 * The file holds the key in libp2p's protobuf encoding, readable by its owner only.
 * A missing file is created with a fresh Ed25519 key; an unreadable one is an error,
 * never silently replaced (that would change the node's peer id).
 */
export async function loadOrCreateIdentity (file: string): Promise<{ privateKey: PrivateKey, created: boolean }> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read identity file ${file}: ${(err as Error).message}`)
    const privateKey = await generateKeyPair('Ed25519')
    try {
      await writeFile(file, privateKeyToProtobuf(privateKey), { mode: 0o600, flag: 'wx' })
    } catch (e) {
      // Another process created it first: use theirs.
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return await loadOrCreateIdentity(file)
      throw new Error(`cannot write identity file ${file}: ${(e as Error).message}`)
    }
    return { privateKey, created: true }
  }
  try {
    return { privateKey: privateKeyFromProtobuf(bytes), created: false }
  } catch (err) {
    throw new Error(`identity file ${file} does not hold a libp2p private key (${(err as Error).message}); move it away to make a new identity`)
  }
}
