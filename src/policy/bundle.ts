import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import { ErrorCode, MeshlimitError, invalid } from '../errors.js'
import type { PolicyDocument, PolicySet } from './types.js'
import { validatePolicies } from './validate.js'

/**
 * Signed policy bundles.
 *
 * A bundle is UTF-8 JSON: `{ format, keyId, signature, content }`, where `content` is
 * a policy document carrying its `version`. What is hashed and signed is the
 * canonical encoding of `content` (RFC 8785 JSON Canonicalization: keys sorted by
 * UTF-16 code units, no whitespace, ECMAScript number and string serialization), so
 * reordered keys or reformatted JSON keep the hash, while any changed value breaks
 * the signature. The signature is ed25519 over `SIGNING_PREFIX` + canonical bytes; the
 * prefix keeps an operator key from ever vouching for other data by accident.
 */
export const BUNDLE_FORMAT = 'meshlimit.policy-bundle/1'

/** Domain separation of signatures: bytes signed = this prefix (UTF-8) + canonical content. */
export const SIGNING_PREFIX = 'meshlimit.policy-bundle/1\n'

/** Bounds a bundle decoder enforces before and while parsing. */
export interface BundleLimits {
  /**
   * Largest bundle accepted, in bytes.
   * @default 1048576 (1 MiB)
   */
  maxBundleBytes: number
  /**
   * Deepest nesting of arrays and objects in the content.
   * @default 32
   */
  maxDepth: number
}

export const DEFAULT_BUNDLE_LIMITS: BundleLimits = { maxBundleBytes: 1 << 20, maxDepth: 32 }

/** A bundle as it travels (file, admin push, gossip), before any trust decision. */
export interface SignedBundle {
  format: typeof BUNDLE_FORMAT
  /** Id of the signing key: the first 16 hex digits of SHA-256 over its raw 32 bytes. */
  keyId: string
  /** ed25519 signature, base64 (64 bytes). */
  signature: string
  content: PolicyDocument
}

/** A bundle whose envelope parsed and whose content is canonical JSON (not yet trusted). */
export interface ParsedBundle {
  readonly keyId: string
  readonly signature: Uint8Array
  readonly content: Record<string, unknown>
  /** Canonical encoding of `content` (the hashed and signed bytes, without the prefix). */
  readonly canonical: string
  /** SHA-256 of the canonical content, lower-case hex. */
  readonly hash: string
  readonly version: number
  /** The bytes the bundle arrived as. */
  readonly bytes: Uint8Array
}

/** A bundle signed by a trusted key, with its content validated. */
export interface VerifiedBundle extends ParsedBundle {
  readonly set: PolicySet
}

/** A public key a node trusts to sign bundles. */
export interface TrustedKey {
  readonly keyId: string
  readonly key: KeyObject
  /** The key as text: "ed25519:" + base64 of its 32 raw bytes. */
  readonly text: string
}

/** An operator's signing key. */
export interface OperatorKey extends TrustedKey {
  readonly privateKey: KeyObject
}

const KEY_ID = /^[0-9a-f]{16}$/
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const ENVELOPE_FIELDS = ['content', 'format', 'keyId', 'signature']
const utf8 = new TextEncoder()

function malformed (field: string, value: unknown, problem: string, fix: string): MeshlimitError {
  return invalid(ErrorCode.BUNDLE_MALFORMED, field, value, problem, fix)
}

// --- canonical encoding ------------------------------------------------------------

/**
 * The canonical JSON encoding (RFC 8785) of a JSON value: object keys sorted by UTF-16
 * code units, no insignificant whitespace, numbers and strings as JSON.stringify writes
 * them. Object properties whose value is undefined are left out (as JSON.stringify
 * does). Throws MESHLIMIT_BUNDLE_MALFORMED on values JSON cannot represent (NaN,
 * Infinity, functions, class instances, undefined in arrays, cycles) or nesting deeper
 * than `maxDepth`.
 */
export function canonicalJson (value: unknown, maxDepth = DEFAULT_BUNDLE_LIMITS.maxDepth): string {
  return canon(value, 'content', 0, maxDepth)
}

function canon (v: unknown, path: string, depth: number, maxDepth: number): string {
  switch (typeof v) {
    case 'string': return JSON.stringify(v)
    case 'boolean': return v ? 'true' : 'false'
    case 'number':
      if (!Number.isFinite(v)) throw malformed(path, v, 'is not a finite number', 'use a finite number')
      return JSON.stringify(v)
    case 'object': {
      if (v === null) return 'null'
      if (depth >= maxDepth) throw malformed(path, '...', `nests deeper than ${maxDepth} levels`, 'flatten the document')
      if (Array.isArray(v)) {
        let out = '['
        for (let i = 0; i < v.length; i++) {
          // A hole or undefined has no JSON form that reads back as itself.
          if (v[i] === undefined) throw malformed(`${path}[${i}]`, undefined, 'is not a JSON value', 'remove the empty element')
          out += (i > 0 ? ',' : '') + canon(v[i], `${path}[${i}]`, depth + 1, maxDepth)
        }
        return out + ']'
      }
      const proto = Object.getPrototypeOf(v)
      if (proto !== Object.prototype && proto !== null) throw malformed(path, v, 'is not a plain object', 'use plain JSON objects')
      const obj = v as Record<string, unknown>
      // Default sort compares UTF-16 code units, which is RFC 8785's key order.
      const keys = Object.keys(obj).filter(k => obj[k] !== undefined).sort()
      let out = '{'
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i]
        out += (i > 0 ? ',' : '') + JSON.stringify(k) + ':' + canon(obj[k], `${path}.${k}`, depth + 1, maxDepth)
      }
      return out + '}'
    }
    default:
      throw malformed(path, String(v), `is a ${typeof v}, not a JSON value`, 'use strings, numbers, booleans, null, lists and objects only')
  }
}

/** SHA-256 (hex) of the canonical encoding of a document: the identity of its content. */
export function contentHash (doc: unknown, maxDepth = DEFAULT_BUNDLE_LIMITS.maxDepth): string {
  return sha256Hex(canonicalJson(doc, maxDepth))
}

function sha256Hex (text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex')
}

/** Orders bundles: by version, then by hash; the larger one wins everywhere. */
export function compareBundles (a: { version: number, hash: string }, b: { version: number, hash: string }): number {
  if (a.version !== b.version) return a.version < b.version ? -1 : 1
  return a.hash === b.hash ? 0 : a.hash < b.hash ? -1 : 1
}

// --- keys --------------------------------------------------------------------------

function rawPublicKey (key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' })
  return Buffer.from(jwk.x as string, 'base64url')
}

function trusted (key: KeyObject): TrustedKey {
  const raw = rawPublicKey(key)
  return { keyId: createHash('sha256').update(raw).digest('hex').slice(0, 16), key, text: 'ed25519:' + raw.toString('base64') }
}

/** Makes a new operator key pair. */
export function generateOperatorKey (): OperatorKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return { ...trusted(publicKey), privateKey }
}

/** The private key as PKCS#8 PEM text (what `meshlimit keygen` writes). */
export function exportPrivateKey (key: OperatorKey): string {
  return key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
}

/** Reads an ed25519 private key from PKCS#8 PEM text. */
export function loadPrivateKey (pem: string, source = 'operator key'): OperatorKey {
  let key: KeyObject
  try {
    key = createPrivateKey({ key: pem, format: 'pem' })
  } catch (err) {
    throw new MeshlimitError(ErrorCode.KEY_INVALID, `${source} is not a PEM private key (${err instanceof Error ? err.message : String(err)}). Fix: pass the .key file written by \`meshlimit keygen\``, 'privateKey')
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new MeshlimitError(ErrorCode.KEY_INVALID, `${source} is a ${String(key.asymmetricKeyType)} key, not ed25519. Fix: make an operator key with \`meshlimit keygen\``, 'privateKey')
  }
  return { ...trusted(createPublicKey(key)), privateKey: key }
}

/**
 * Reads a public key: "ed25519:<base64 of 32 bytes>" (what `meshlimit keygen` prints),
 * or SPKI PEM text.
 */
export function loadPublicKey (text: string, source = 'trusted key'): TrustedKey {
  const fail = (problem: string): never => {
    throw invalid(ErrorCode.KEY_INVALID, source, text, problem, 'pass the public key printed by `meshlimit keygen`: "ed25519:" followed by 44 base64 characters')
  }
  if (typeof text !== 'string') fail('must be a string')
  const t = text.trim()
  let key: KeyObject
  if (t.startsWith('ed25519:')) {
    const b64 = t.slice(8)
    const raw = BASE64.test(b64) ? Buffer.from(b64, 'base64') : undefined
    if (raw === undefined || raw.length !== 32) fail('is not 32 bytes of base64 after "ed25519:"')
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: (raw as Buffer).toString('base64url') }, format: 'jwk' })
  } else if (t.startsWith('-----BEGIN')) {
    try {
      key = createPublicKey({ key: t, format: 'pem' })
    } catch {
      return fail('is not a readable PEM public key')
    }
    if (key.asymmetricKeyType !== 'ed25519') fail(`is a ${String(key.asymmetricKeyType)} key, not ed25519`)
  } else {
    return fail('is neither "ed25519:<base64>" nor PEM')
  }
  return trusted(key)
}

// --- signing -----------------------------------------------------------------------

/**
 * Signs a policy document. The document must carry an integer `version` >= 1 (pass
 * `version` to set or replace it) and must validate; the result is ready for
 * encodeBundle().
 */
export function signBundle (doc: PolicyDocument, key: OperatorKey, version?: number): SignedBundle {
  const content = (version === undefined ? { ...doc } : { ...doc, version }) as PolicyDocument
  requireVersion(content.version)
  validatePolicies(content)
  const canonical = canonicalJson(content)
  const signature = sign(null, utf8.encode(SIGNING_PREFIX + canonical), key.privateKey)
  // Store the canonical form so the bytes on the wire are stable too.
  return { format: BUNDLE_FORMAT, keyId: key.keyId, signature: signature.toString('base64'), content: JSON.parse(canonical) as PolicyDocument }
}

function requireVersion (v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw invalid(ErrorCode.BUNDLE_MALFORMED, 'content.version', v, 'must be an integer >= 1 in a bundle', 'set version: a number larger than the running bundle\'s (e.g. `meshlimit policy sign --version N`)')
  }
  return v
}

/** Encodes a bundle as compact UTF-8 JSON (pass `indent` for a file people read). */
export function encodeBundle (b: SignedBundle, indent?: number): Uint8Array {
  return utf8.encode(JSON.stringify({ format: b.format, keyId: b.keyId, signature: b.signature, content: b.content }, null, indent))
}

// --- decoding ----------------------------------------------------------------------

/**
 * Parses a bundle's envelope and canonicalises its content, within `limits`. Checks
 * nothing about trust: see openBundle(). Throws MeshlimitError with code
 * MESHLIMIT_BUNDLE_TOO_LARGE or MESHLIMIT_BUNDLE_MALFORMED, never anything else.
 */
export function parseBundle (bytes: Uint8Array, limits: BundleLimits = DEFAULT_BUNDLE_LIMITS): ParsedBundle {
  if (!(bytes instanceof Uint8Array)) throw malformed('bundle', bytes, 'must be bytes', 'send the bundle file as is')
  if (bytes.byteLength > limits.maxBundleBytes) {
    throw invalid(ErrorCode.BUNDLE_TOO_LARGE, 'bundle', `${bytes.byteLength} bytes`, `is larger than ${limits.maxBundleBytes} bytes`, 'split the policies or raise maxBundleBytes on every node')
  }
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw malformed('bundle', `${bytes.byteLength} bytes`, 'is not UTF-8 text', 'send the JSON written by `meshlimit policy sign`')
  }
  let env: unknown
  try {
    env = JSON.parse(text)
  } catch (err) {
    throw malformed('bundle', text, `is not JSON (${err instanceof Error ? err.message : String(err)})`, 'send the JSON written by `meshlimit policy sign`')
  }
  if (typeof env !== 'object' || env === null || Array.isArray(env)) throw malformed('bundle', env, 'must be a JSON object', 'send the JSON written by `meshlimit policy sign`')
  const e = env as Record<string, unknown>
  for (const k of Object.keys(e)) {
    if (!ENVELOPE_FIELDS.includes(k)) throw malformed(`bundle.${k}`, e[k], 'is not a bundle field', `a bundle has exactly ${ENVELOPE_FIELDS.join(', ')}`)
  }
  if (e.format !== BUNDLE_FORMAT) throw malformed('bundle.format', e.format, `must be "${BUNDLE_FORMAT}"`, 'sign the document with this version of `meshlimit policy sign`')
  if (typeof e.keyId !== 'string' || !KEY_ID.test(e.keyId)) throw malformed('bundle.keyId', e.keyId, 'must be 16 lower-case hex digits', 'sign the document with `meshlimit policy sign`')
  const sig = typeof e.signature === 'string' && BASE64.test(e.signature) ? Buffer.from(e.signature, 'base64') : undefined
  if (sig === undefined || sig.length !== 64) throw malformed('bundle.signature', e.signature, 'must be 64 bytes of base64 (an ed25519 signature)', 'sign the document with `meshlimit policy sign`')
  const content = e.content
  if (typeof content !== 'object' || content === null || Array.isArray(content)) {
    throw malformed('bundle.content', content, 'must be a policy document object', 'sign a document such as { version: 1, policies: [...] }')
  }
  const canonical = canonicalJson(content, limits.maxDepth)
  const version = requireVersion((content as Record<string, unknown>).version)
  return { keyId: e.keyId, signature: new Uint8Array(sig), content: content as Record<string, unknown>, canonical, hash: sha256Hex(canonical), version, bytes }
}

/** Checks the signature of a parsed bundle against the trusted keys (by key id). */
export function verifyBundle (b: ParsedBundle, keys: ReadonlyMap<string, TrustedKey>): void {
  const k = keys.get(b.keyId)
  if (k === undefined) {
    throw invalid(ErrorCode.BUNDLE_UNTRUSTED_KEY, 'bundle.keyId', b.keyId, 'is not one of the trusted operator keys', 'sign with an operator key whose public key is in trustedKeys, or add its public key to trustedKeys on every node')
  }
  const ok = verify(null, utf8.encode(SIGNING_PREFIX + b.canonical), k.key, b.signature)
  if (!ok) {
    throw invalid(ErrorCode.BUNDLE_BAD_SIGNATURE, 'bundle.signature', Buffer.from(b.signature).toString('base64'), `does not match the content for key ${b.keyId}: the content was changed after signing, or the signature was forged`, 're-sign the document with `meshlimit policy sign`')
  }
}

/**
 * Parses, verifies and validates a bundle: the whole acceptance check except the
 * comparison with the running version. Throws a MeshlimitError whose code says why.
 */
export function openBundle (bytes: Uint8Array, keys: ReadonlyMap<string, TrustedKey>, limits: BundleLimits = DEFAULT_BUNDLE_LIMITS): VerifiedBundle {
  const b = parseBundle(bytes, limits)
  verifyBundle(b, keys)
  return { ...b, set: validatePolicies(b.content) }
}

/** A key-id map of trusted keys, from key texts or loaded keys. */
export function trustedKeyMap (keys: ReadonlyArray<string | TrustedKey>): Map<string, TrustedKey> {
  const map = new Map<string, TrustedKey>()
  keys.forEach((k, i) => {
    const t = typeof k === 'string' ? loadPublicKey(k, `trustedKeys[${i}]`) : k
    map.set(t.keyId, t)
  })
  return map
}

/** Whether bytes look like a bundle (a JSON object naming the bundle format), cheaply. */
export function looksLikeBundle (text: string): boolean {
  return text.trimStart().startsWith('{') && text.includes(BUNDLE_FORMAT)
}
