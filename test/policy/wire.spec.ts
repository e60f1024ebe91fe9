import { encode } from '@msgpack/msgpack'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodePolicyMessage, decodePullRequest, encodeAnnouncement, encodeBundleMessage, encodePullAnswer, encodePullRequest } from '../../src/policy/wire.js'

const hashArb = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(b => Buffer.from(b).toString('hex'))

describe('policy wire format', () => {
  it('round trips every message kind', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), hashArb, (bytes, version, hash) => {
      expect(decodePolicyMessage(encodeBundleMessage(bytes), 1024)).toEqual({ kind: 'bundle', bytes })
      expect(decodePolicyMessage(encodeAnnouncement(version, hash), 1024)).toEqual({ kind: 'announce', version, hash })
      expect(decodePolicyMessage(encodePullAnswer(undefined), 1024)).toEqual({ kind: 'none' })
      expect(decodePolicyMessage(encodePullAnswer('not-newer'), 1024)).toEqual({ kind: 'not-newer' })
      expect(decodePullRequest(encodePullRequest(version, hash))).toEqual({ version, hash })
      expect(decodePullRequest(encodePullRequest(0, undefined))).toEqual({ version: 0, hash: undefined })
    }))
  })

  it('arbitrary bytes and wrong shapes decode to undefined, never throw', () => {
    const shapes = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.anything().map(v => { try { return encode(v) } catch { return new Uint8Array(0) } }),
      fc.tuple(fc.integer({ min: -1, max: 6 }), fc.anything(), fc.anything()).map(t => encode(t))
    )
    fc.assert(fc.property(shapes, bytes => {
      const m = decodePolicyMessage(bytes, 1024)
      if (m !== undefined) expect(['bundle', 'announce', 'none', 'not-newer']).toContain(m.kind)
      const r = decodePullRequest(bytes)
      if (r !== undefined) expect(Number.isSafeInteger(r.version) && r.version >= 0).toBe(true)
    }), { numRuns: 2000 })
  })

  it('refuses oversized messages and bad versions or hashes', () => {
    expect(decodePolicyMessage(encodeBundleMessage(new Uint8Array(2000)), 1024)).toBeUndefined()
    expect(decodePolicyMessage(encode([2, 0, new Uint8Array(32)]), 1024)).toBeUndefined()
    expect(decodePolicyMessage(encode([2, 1.5, new Uint8Array(32)]), 1024)).toBeUndefined()
    expect(decodePolicyMessage(encode([2, 1, new Uint8Array(31)]), 1024)).toBeUndefined()
    expect(decodePolicyMessage(encode([1, new Uint8Array(0)]), 1024)).toBeUndefined()
    expect(decodePullRequest(encode([1, -1, new Uint8Array(0)]))).toBeUndefined()
    expect(decodePullRequest(encode([1, 1, new Uint8Array(5)]))).toBeUndefined()
  })
})
