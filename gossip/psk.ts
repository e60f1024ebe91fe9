import { readFile, writeFile } from 'node:fs/promises'
import { generateKey } from '@libp2p/pnet'

/**
 * Private-network keys: libp2p's swarm key format (a text file of three lines,
 * `/key/swarm/psk/1.0.0/`, `/base16/`, then 64 hex digits). Every node of a mesh must
 * use the same key; a node without it cannot even complete a connection.
 */
const HEADER = '/key/swarm/psk/1.0.0/'

/** A fresh random swarm key, as the bytes of its text form. */
export function generateSwarmKey (): Uint8Array {
  const key = new Uint8Array(95)
  generateKey(key)
  return key
}

/** Checks a swarm key's text form; throws with the reason when malformed. */
export function parseSwarmKey (bytes: Uint8Array): Uint8Array {
  const lines = new TextDecoder().decode(bytes).trim().split(/\r?\n/)
  if (lines.length !== 3 || lines[0] !== HEADER || lines[1] !== '/base16/' || !/^[0-9a-fA-F]{64}$/.test(lines[2])) {
    throw new Error('not a libp2p swarm key: expected "/key/swarm/psk/1.0.0/", "/base16/" and 64 hex digits on three lines; make one with `meshlimit psk`')
  }
  // libp2p's base16 decoder only takes lowercase digits: an uppercase key would pass here and fail at start.
  return new TextEncoder().encode(`${lines[0]}\n${lines[1]}\n${lines[2].toLowerCase()}\n`)
}

export async function readSwarmKey (file: string): Promise<Uint8Array> {
  return parseSwarmKey(await readFile(file))
}

/** Writes a fresh key to `file`, readable by its owner only. */
export async function writeSwarmKey (file: string): Promise<void> {
  await writeFile(file, generateSwarmKey(), { mode: 0o600, flag: 'wx' })
}
