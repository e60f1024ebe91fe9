import { generateKeyPairSync, sign } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  BUNDLE_FORMAT, DEFAULT_BUNDLE_LIMITS, canonicalJson, compareBundles, contentHash, encodeBundle, exportPrivateKey,
  generateOperatorKey, loadPrivateKey, loadPublicKey, openBundle, parseBundle, signBundle, trustedKeyMap, type SignedBundle
} from '../../src/policy/bundle.js'
import { ErrorCode, MeshlimitError } from '../../src/errors.js'
import type { PolicyDocument } from '../../src/policy/types.js'
import { documentArb } from './arbitraries.js'
import { expectError, thrown } from './helpers.js'

const KEY = generateOperatorKey()
const OTHER = generateOperatorKey()
const TRUSTED = trustedKeyMap([KEY.text])
const utf8 = new TextEncoder()

const DOC: PolicyDocument = {
  version: 3,
  policies: [
    { id: 'per-user', key: 'user', limits: [{ id: 'minute', limit: 100, window: '1m' }] },
    { id: 'per-ip', key: 'ip', match: { route: '/v1/*' }, limits: [{ limit: 10, windowMs: 1000 }] }
  ]
}

/** A signed, valid document with a version >= 1, from the shared document generator. */
const signedDocArb: fc.Arbitrary<PolicyDocument> = fc.tuple(documentArb, fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }))
  .map(([d, version]) => ({ ...(Array.isArray(d) ? { policies: d } : d as PolicyDocument), version }))

/** Rebuilds an object with its keys in a shuffled order, at every level. */
function shuffleKeys (v: unknown, seed: number): unknown {
  if (Array.isArray(v)) return v.map((x, i) => shuffleKeys(x, seed + i))
  if (typeof v !== 'object' || v === null) return v
  const entries = Object.entries(v)
  // A deterministic shuffle: sort by a hash of key and seed.
  const score = (k: string): number => {
    let h = seed | 0
    for (let i = 0; i < k.length; i++) h = Math.imul(h ^ k.charCodeAt(i), 0x9e3779b1)
    return h
  }
  entries.sort((a, b) => score(a[0]) - score(b[0]))
  // fromEntries makes own properties, even of "__proto__".
  return Object.fromEntries(entries.map(([k, x]) => [k, shuffleKeys(x, seed * 31 + 7)]))
}

const BUNDLE_CODES: string[] = [ErrorCode.BUNDLE_MALFORMED, ErrorCode.BUNDLE_TOO_LARGE, ErrorCode.BUNDLE_UNTRUSTED_KEY, ErrorCode.BUNDLE_BAD_SIGNATURE, ErrorCode.POLICY_INVALID]

/** openBundle must either accept or throw a MeshlimitError with a bundle code, never anything else. */
function openOrCode (bytes: Uint8Array): { ok: true, hash: string } | { ok: false, code: string } {
  try {
    const b = openBundle(bytes, TRUSTED)
    return { ok: true, hash: b.hash }
  } catch (err) {
    if (!(err instanceof MeshlimitError)) throw err
    expect(BUNDLE_CODES).toContain(err.code)
    expect(err.message).toContain('Fix:')
    return { ok: false, code: err.code }
  }
}

describe('canonical encoding', () => {
  it('sorts keys, drops whitespace, and writes numbers and strings as JSON.stringify does', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x'], c: { z: 0.1, y: -0, x: 1e21 } })).toBe('{"a":[true,null,"x"],"b":1,"c":{"x":1e+21,"y":0,"z":0.1}}')
    expect(canonicalJson({ s: 'line\nquote"tab\t\u0001é' })).toBe('{"s":"line\\nquote\\"tab\\t\\u0001é"}')
    // UTF-16 code unit order: a surrogate pair (0xD83D...) sorts before U+FFFF, unlike code point order.
    expect(canonicalJson({ '\uffff': 1, '\u{1F600}': 2, a: 3 })).toBe('{"a":3,"\u{1F600}":2,"\uffff":1}')
    expect(canonicalJson({ a: undefined, b: 2 })).toBe('{"b":2}')
  })

  it('reordered keys give the same encoding and the same hash', () => {
    fc.assert(fc.property(fc.jsonValue(), fc.integer(), (v, seed) => {
      const shuffled = shuffleKeys(v, seed)
      expect(canonicalJson(shuffled)).toBe(canonicalJson(v))
      expect(contentHash(shuffled)).toBe(contentHash(v))
    }))
  })

  it('is JSON that reads back as the same value, and is a fixed point', () => {
    fc.assert(fc.property(fc.jsonValue(), v => {
      const c = canonicalJson(v)
      const back = JSON.parse(c) as unknown
      // JSON has no -0: it reads back as 0, which is what JSON.stringify would give too.
      expect(back).toEqual(JSON.parse(JSON.stringify(v)))
      expect(canonicalJson(back)).toBe(c)
      expect(/\s/.test(c.replace(/"(?:[^"\\]|\\.)*"/g, '""'))).toBe(false)
    }))
  })

  it('equal encodings mean equal values, and different values give different encodings', () => {
    const normal = (v: unknown): unknown => JSON.parse(JSON.stringify(v))
    fc.assert(fc.property(fc.jsonValue(), fc.jsonValue(), (a, b) => {
      if (canonicalJson(a) === canonicalJson(b)) expect(normal(a)).toEqual(normal(b))
      else expect(normal(a)).not.toEqual(normal(b))
    }))
  })

  it('refuses values JSON cannot carry, and nesting past the limit, with BUNDLE_MALFORMED', () => {
    const bad: Array<[unknown, string]> = [
      [{ a: NaN }, 'content.a'],
      [{ a: Infinity }, 'content.a'],
      [{ a: [1, undefined] }, 'content.a[1]'],
      // eslint-disable-next-line no-sparse-arrays
      [{ a: [1, , 3] }, 'content.a[1]'],
      [{ a: () => 1 }, 'content.a'],
      [{ a: 10n }, 'content.a'],
      [{ a: new Date(0) }, 'content.a'],
      [{ a: new Map() }, 'content.a'],
      [{ a: Symbol('x') }, 'content.a']
    ]
    for (const [v, field] of bad) expectError(() => canonicalJson(v), ErrorCode.BUNDLE_MALFORMED, field)
    let deep: unknown = 1
    for (let i = 0; i < 40; i++) deep = [deep]
    expect(thrown(() => canonicalJson(deep))).toMatchObject({ code: ErrorCode.BUNDLE_MALFORMED })
    expect(canonicalJson(deep, 64)).toBe('['.repeat(40) + '1' + ']'.repeat(40))
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(thrown(() => canonicalJson(cyclic))).toMatchObject({ code: ErrorCode.BUNDLE_MALFORMED })
  })
})

describe('operator keys', () => {
  it('a private key written as PEM reads back as the same key, id and public text', () => {
    const k = loadPrivateKey(exportPrivateKey(KEY))
    expect([k.keyId, k.text]).toEqual([KEY.keyId, KEY.text])
    expect(KEY.keyId).toMatch(/^[0-9a-f]{16}$/)
    expect(KEY.text).toMatch(/^ed25519:[A-Za-z0-9+/]{43}=$/)
    expect(KEY.keyId).not.toBe(OTHER.keyId)
  })

  it('reads public keys as "ed25519:<base64>" and as SPKI PEM, to the same key id', () => {
    expect(loadPublicKey(KEY.text).keyId).toBe(KEY.keyId)
    const pem = KEY.key.export({ type: 'spki', format: 'pem' }) as string
    expect(loadPublicKey(pem).keyId).toBe(KEY.keyId)
    expect(loadPublicKey(`  ${KEY.text}\n`).keyId).toBe(KEY.keyId)
  })

  it('refuses malformed and non-ed25519 keys with KEY_INVALID', () => {
    for (const t of ['', 'ed25519:', 'ed25519:AAAA', 'ed25519:' + 'A'.repeat(44) + 'A', 'rsa:abc', '-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----']) {
      expect(thrown(() => loadPublicKey(t))).toMatchObject({ code: ErrorCode.KEY_INVALID })
    }
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
    expect(thrown(() => loadPublicKey(rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string))).toMatchObject({ code: ErrorCode.KEY_INVALID })
    expect(thrown(() => loadPrivateKey(rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string))).toMatchObject({ code: ErrorCode.KEY_INVALID })
    expect(thrown(() => loadPrivateKey('not a key'))).toMatchObject({ code: ErrorCode.KEY_INVALID })
    expect(thrown(() => trustedKeyMap(['ed25519:nope']))).toMatchObject({ code: ErrorCode.KEY_INVALID, field: 'trustedKeys[0]' })
  })
})

describe('signing and opening bundles', () => {
  it('round trip: version, hash of the canonical content, key id, validated set', () => {
    const bytes = encodeBundle(signBundle(DOC, KEY))
    const b = openBundle(bytes, TRUSTED)
    expect(b.version).toBe(3)
    expect(b.hash).toBe(contentHash(DOC))
    expect(b.keyId).toBe(KEY.keyId)
    expect(b.set.policies.map(p => p.id)).toEqual(['per-user', 'per-ip'])
    expect(b.set.version).toBe(3)
  })

  it('signBundle sets or replaces the version, and refuses a document without one', () => {
    expect(openBundle(encodeBundle(signBundle(DOC, KEY, 9)), TRUSTED).version).toBe(9)
    const { version: _, ...noVersion } = DOC
    expectError(() => signBundle(noVersion, KEY), ErrorCode.BUNDLE_MALFORMED, 'content.version')
    expectError(() => signBundle(DOC, KEY, 0), ErrorCode.BUNDLE_MALFORMED, 'content.version', 0)
    expectError(() => signBundle({ version: 1, policies: [{ id: 'x', limits: [] }] }, KEY), ErrorCode.POLICY_INVALID, 'policies[0].limits')
  })

  it('any valid document signs and opens to its own hash, and reformatting keeps it valid', () => {
    fc.assert(fc.property(signedDocArb, fc.integer(), fc.boolean(), (doc, seed, pretty) => {
      const signed = signBundle(doc, KEY)
      const h = openBundle(encodeBundle(signed), TRUSTED).hash
      expect(h).toBe(contentHash(doc))
      // Another serializer: keys reordered everywhere, indented.
      const reformatted = utf8.encode(JSON.stringify(shuffleKeys(signed, seed), null, pretty ? 2 : undefined))
      expect(openBundle(reformatted, TRUSTED).hash).toBe(h)
    }), { numRuns: 60 })
  })

  it('any changed value in the content breaks the signature', () => {
    fc.assert(fc.property(signedDocArb, fc.nat(), fc.jsonValue(), (doc, pick, value) => {
      const signed = signBundle(doc, KEY)
      // Change one leaf or add one field somewhere in the content.
      const paths: Array<Array<string | number>> = []
      const walk = (v: unknown, path: Array<string | number>): void => {
        paths.push(path)
        if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) walk(x, [...path, Array.isArray(v) ? Number(k) : k])
      }
      walk(signed.content, [])
      const path = paths[pick % paths.length]
      const content = JSON.parse(JSON.stringify(signed.content)) as Record<string, unknown>
      let target: unknown = content
      for (const k of path.slice(0, -1)) target = (target as Record<string | number, unknown>)[k]
      if (path.length === 0 || typeof target !== 'object' || target === null) {
        content.extra = value
      } else {
        (target as Record<string | number, unknown>)[path[path.length - 1]] = value
      }
      fc.pre(canonicalJson(content) !== canonicalJson(signed.content))
      const forged: SignedBundle = { ...signed, content: content as unknown as PolicyDocument }
      const r = openOrCode(encodeBundle(forged))
      expect(r.ok).toBe(false)
      // Content that still has a version reaches the signature check and fails it.
      const v = content.version
      if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 1) expect(r).toEqual({ ok: false, code: ErrorCode.BUNDLE_BAD_SIGNATURE })
    }), { numRuns: 150 })
  })

  it('any changed byte either breaks the bundle or leaves its content exactly as signed', () => {
    const bytes = encodeBundle(signBundle(DOC, KEY))
    const h = contentHash(DOC)
    for (let i = 0; i < bytes.length; i++) {
      for (const delta of [1, 0x20, 0x80]) {
        const m = bytes.slice()
        m[i] ^= delta
        const r = openOrCode(m)
        // Base64 can carry unused low bits in its last character: the signature bytes are the same.
        if (r.ok) expect(r.hash).toBe(h)
      }
    }
  })

  it('a bundle signed by an untrusted key is refused, and so is one relabelled with a trusted key id', () => {
    const byOther = signBundle(DOC, OTHER)
    expectError(() => openBundle(encodeBundle(byOther), TRUSTED), ErrorCode.BUNDLE_UNTRUSTED_KEY, 'bundle.keyId', OTHER.keyId)
    expectError(() => openBundle(encodeBundle({ ...byOther, keyId: KEY.keyId }), TRUSTED), ErrorCode.BUNDLE_BAD_SIGNATURE, 'bundle.signature')
    // Trusting both keys accepts both signers.
    expect(openBundle(encodeBundle(byOther), trustedKeyMap([KEY.text, OTHER.text])).keyId).toBe(OTHER.keyId)
  })

  it('an unsigned document, a wrong envelope, or content without a version is malformed', () => {
    const signed = signBundle(DOC, KEY)
    const enc = (v: unknown): Uint8Array => utf8.encode(JSON.stringify(v))
    expectError(() => openBundle(enc(DOC), TRUSTED), ErrorCode.BUNDLE_MALFORMED, 'bundle.version')
    expectError(() => openBundle(enc({ ...signed, format: 'other' }), TRUSTED), ErrorCode.BUNDLE_MALFORMED, 'bundle.format')
    expectError(() => openBundle(enc({ ...signed, keyId: 'ABC' }), TRUSTED), ErrorCode.BUNDLE_MALFORMED, 'bundle.keyId')
    expectError(() => openBundle(enc({ ...signed, signature: 'AAAA' }), TRUSTED), ErrorCode.BUNDLE_MALFORMED, 'bundle.signature')
    expectError(() => openBundle(enc({ ...signed, content: [] }), TRUSTED), ErrorCode.BUNDLE_MALFORMED, 'bundle.content')
    expectError(() => openBundle(enc({ ...signed, content: { policies: [] } }), TRUSTED), ErrorCode.BUNDLE_MALFORMED, 'content.version')
    expectError(() => openBundle(enc({ ...signed, content: { ...signed.content, version: 1.5 } }), TRUSTED), ErrorCode.BUNDLE_MALFORMED, 'content.version')
    expectError(() => openBundle(enc([signed]), TRUSTED), ErrorCode.BUNDLE_MALFORMED, 'bundle')
    expectError(() => openBundle(utf8.encode('{"format":'), TRUSTED), ErrorCode.BUNDLE_MALFORMED, 'bundle')
    expectError(() => openBundle(new Uint8Array([0x7b, 0xff, 0x7d]), TRUSTED), ErrorCode.BUNDLE_MALFORMED, 'bundle')
  })

  it('a signed but invalid document is refused with the policy error', () => {
    // Signing validates, so forge the invalid document's signature with the real key by hand.
    const bad = { version: 2, policies: [{ id: 'p', limits: [{ limit: -1, window: '1m' }] }] }
    const signature = sign(null, utf8.encode('meshlimit.policy-bundle/1\n' + canonicalJson(bad)), KEY.privateKey).toString('base64')
    const bytes = utf8.encode(JSON.stringify({ format: BUNDLE_FORMAT, keyId: KEY.keyId, signature, content: bad }))
    expect(parseBundle(bytes).version).toBe(2)
    expectError(() => openBundle(bytes, TRUSTED), ErrorCode.POLICY_INVALID, 'policies[0].limits[0].limit', -1)
  })

  it('an oversized bundle is refused by its length, before parsing', () => {
    const big = new Uint8Array(DEFAULT_BUNDLE_LIMITS.maxBundleBytes + 1).fill(0x20)
    expectError(() => openBundle(big, TRUSTED), ErrorCode.BUNDLE_TOO_LARGE, 'bundle')
    const small = encodeBundle(signBundle(DOC, KEY))
    expectError(() => openBundle(small, TRUSTED, { maxBundleBytes: small.length - 1, maxDepth: 32 }), ErrorCode.BUNDLE_TOO_LARGE, 'bundle')
    expect(openBundle(small, TRUSTED, { maxBundleBytes: small.length, maxDepth: 32 }).version).toBe(3)
  })

  it('deep nesting in the content is refused, not a stack overflow', () => {
    const signed = signBundle(DOC, KEY)
    for (const depth of [33, 10_000, 200_000]) {
      const text = JSON.stringify({ ...signed, content: { version: 1, policies: [] } }).replace('"policies":[]', '"policies":' + '['.repeat(depth) + ']'.repeat(depth))
      expect(openOrCode(utf8.encode(text))).toEqual({ ok: false, code: ErrorCode.BUNDLE_MALFORMED })
    }
  })
})

describe('bundle decoder fuzz', () => {
  const valid = encodeBundle(signBundle(DOC, KEY))

  it('arbitrary bytes: never throws anything but a bundle error', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), bytes => {
      expect(openOrCode(bytes).ok).toBe(false)
    }), { numRuns: 500 })
  })

  it('arbitrary JSON values and envelopes with arbitrary content: same', () => {
    const envelope = fc.record({
      format: fc.oneof(fc.constant(BUNDLE_FORMAT), fc.jsonValue()),
      keyId: fc.oneof(fc.constant(KEY.keyId), fc.jsonValue()),
      signature: fc.oneof(fc.constant(Buffer.alloc(64).toString('base64')), fc.jsonValue()),
      content: fc.oneof(fc.jsonValue(), fc.record({ version: fc.jsonValue(), policies: fc.jsonValue() }), fc.object())
    }, { requiredKeys: [] })
    fc.assert(fc.property(fc.oneof(fc.jsonValue(), envelope), v => {
      const text = JSON.stringify(v)
      if (text === undefined) return
      expect(openOrCode(utf8.encode(text)).ok).toBe(false)
    }), { numRuns: 500 })
  })

  it('mutated valid bundles (flipped, set, truncated, extended, inserted, deleted bytes): same, and never a different content', () => {
    const h = contentHash(DOC)
    const mutation = fc.oneof(
      fc.tuple(fc.constant('flip'), fc.nat(valid.length - 1), fc.integer({ min: 1, max: 255 })),
      fc.tuple(fc.constant('set'), fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })),
      fc.tuple(fc.constant('truncate'), fc.nat(valid.length - 1), fc.constant(0)),
      fc.tuple(fc.constant('insert'), fc.nat(valid.length), fc.integer({ min: 0, max: 255 })),
      fc.tuple(fc.constant('delete'), fc.nat(valid.length - 1), fc.constant(0)),
      fc.tuple(fc.constant('extend'), fc.constant(0), fc.integer({ min: 0, max: 255 }))
    )
    fc.assert(fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), ms => {
      let b = Array.from(valid)
      for (const [kind, at, v] of ms) {
        const i = Math.min(at, b.length)
        if (kind === 'flip' && i < b.length) b[i] ^= v
        else if (kind === 'set' && i < b.length) b[i] = v
        else if (kind === 'truncate') b = b.slice(0, i)
        else if (kind === 'insert') b.splice(i, 0, v)
        else if (kind === 'delete') b.splice(i, 1)
        else if (kind === 'extend') b.push(v)
      }
      const r = openOrCode(new Uint8Array(b))
      if (r.ok) expect(r.hash).toBe(h)
    }), { numRuns: 1000 })
  })
})

describe('bundle order', () => {
  it('is a total order by version, then hash', () => {
    const arb = fc.record({ version: fc.nat(5), hash: fc.constantFrom('00', '0a', 'ff') })
    fc.assert(fc.property(arb, arb, arb, (a, b, c) => {
      expect(compareBundles(a, b) + compareBundles(b, a)).toBe(0)
      expect(compareBundles(a, b) === 0).toBe(a.version === b.version && a.hash === b.hash)
      if (compareBundles(a, b) <= 0 && compareBundles(b, c) <= 0) expect(compareBundles(a, c)).toBeLessThanOrEqual(0)
      if (a.version < b.version) expect(compareBundles(a, b)).toBe(-1)
    }))
  })
})
