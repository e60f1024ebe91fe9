import fc from 'fast-check'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { preSharedKey } from '@libp2p/pnet'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateSwarmKey, parseSwarmKey, readSwarmKey, writeSwarmKey } from '../../gossip/psk.js'

const HEADER = '/key/swarm/psk/1.0.0/'
const FORMAT = /expected "\/key\/swarm\/psk\/1\.0\.0\/", "\/base16\/" and 64 hex digits on three lines/
const text = (b: Uint8Array): string => new TextDecoder().decode(b)
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** What libp2p's own private-network protector makes of a key (it throws on one it cannot use). */
function libp2pPsk (key: Uint8Array): Uint8Array {
  const noop = Object.assign(() => {}, { enabled: false, error: () => {}, trace: () => {} })
  const logger = { forComponent: () => noop }
  const protector = preSharedKey({ psk: key })({ logger } as unknown as Parameters<ReturnType<typeof preSharedKey>>[0])
  return Reflect.get(protector, 'psk') as Uint8Array
}

describe('swarm keys', () => {
  it('generates keys in the three-line format that parse and that libp2p accepts', () => {
    const a = generateSwarmKey()
    const b = generateSwarmKey()
    expect(text(a)).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
    expect(hex(a)).not.toBe(hex(b))
    const parsed = parseSwarmKey(a)
    expect(text(parsed)).toBe(text(a) + '\n')
    expect(hex(libp2pPsk(parsed))).toBe(text(a).split('\n')[2])
  })

  it('accepts any 32-byte key whatever the line endings, hex case and surrounding blanks, and normalises it for libp2p (property)', () => {
    fc.assert(fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.constantFrom('\n', '\r\n'),
      fc.boolean(),
      fc.constantFrom('', ' ', '\n', '\n\n', '\t \r\n'),
      (key, eol, upper, blank) => {
        const digits = upper ? hex(key).toUpperCase() : hex(key)
        const parsed = parseSwarmKey(bytes(blank + HEADER + eol + '/base16/' + eol + digits + blank))
        expect(text(parsed)).toBe(`${HEADER}\n/base16/\n${hex(key)}\n`)
        // The normalised key must be one libp2p can decode to the same 32 bytes.
        expect(hex(libp2pPsk(parsed))).toBe(hex(key))
      }), { numRuns: 100 })
  })

  it('refuses malformed keys with a message naming the expected format', () => {
    const digits = 'ab'.repeat(32)
    const bad = [
      '',
      HEADER,
      `${HEADER}\n/base16/`,
      `/key/swarm/psk/2.0.0/\n/base16/\n${digits}`,
      `${HEADER}\n/base64/\n${digits}`,
      `${HEADER}\n/base16/\n${digits.slice(1)}`,
      `${HEADER}\n/base16/\n${digits}a`,
      `${HEADER}\n/base16/\n${digits.slice(2)}zz`,
      `${HEADER}\n/base16/\n${digits.slice(0, 32)} ${digits.slice(33)}`,
      `${HEADER}\n/base16/\n${digits}\nextra`,
      `/base16/\n${HEADER}\n${digits}`,
      `${HEADER}\n\n/base16/\n${digits}`,
      `${HEADER}/base16/${digits}`
    ]
    for (const k of bad) expect(() => parseSwarmKey(bytes(k)), JSON.stringify(k)).toThrow(FORMAT)
    expect(() => parseSwarmKey(bytes('nope'))).toThrow(/make one with `meshlimit psk`/)
  })

  it('either accepts arbitrary text as a canonical key or refuses it with the format message (property)', () => {
    fc.assert(fc.property(fc.oneof(fc.string(), fc.uint8Array({ maxLength: 120 }).map(b => text(b))), s => {
      let out: Uint8Array
      try {
        out = parseSwarmKey(bytes(s))
      } catch (err) {
        expect((err as Error).message).toMatch(FORMAT)
        return
      }
      expect(text(out)).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
    }), { numRuns: 300 })
  })
})

describe('swarm key files', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'meshlimit-psk-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('writes a fresh key readable by its owner only, which reads back', async () => {
    const file = join(dir, 'swarm.key')
    await writeSwarmKey(file)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    const raw = await readFile(file)
    expect(text(raw)).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
    expect(text(await readSwarmKey(file))).toBe(text(raw) + '\n')
  })

  it('refuses to overwrite an existing file, leaving it as it was', async () => {
    const file = join(dir, 'existing.key')
    await writeSwarmKey(file)
    const before = await readFile(file)
    await expect(writeSwarmKey(file)).rejects.toMatchObject({ code: 'EEXIST' })
    expect(hex(await readFile(file))).toBe(hex(before))

    const other = join(dir, 'notes.txt')
    await writeFile(other, 'keep me')
    await expect(writeSwarmKey(other)).rejects.toMatchObject({ code: 'EEXIST' })
    expect(await readFile(other, 'utf8')).toBe('keep me')
  })

  it('reading a malformed key file fails with the format message', async () => {
    const file = join(dir, 'bad.key')
    await writeFile(file, `${HEADER}\n/base16/\nnot-hex\n`)
    await expect(readSwarmKey(file)).rejects.toThrow(FORMAT)
  })
})
