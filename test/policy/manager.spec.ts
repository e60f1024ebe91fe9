import { sign } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createLimiter, VirtualClock, type Limiter } from '../../src/index.js'
import { ErrorCode } from '../../src/errors.js'
import { BUNDLE_FORMAT, canonicalJson, contentHash, encodeBundle, generateOperatorKey, signBundle, SIGNING_PREFIX, type OperatorKey } from '../../src/policy/bundle.js'
import { createPolicyManager, type BundleInfo, type PolicyManager, type PolicySource } from '../../src/policy/manager.js'
import type { PolicyDocument } from '../../src/policy/types.js'
import { thrown } from './helpers.js'

const T0 = 1_800_000_000_000
const OPERATOR = generateOperatorKey()
const STRANGER = generateOperatorKey()
const utf8 = new TextEncoder()

/** A document with one per-user limit of `limit` per minute. */
function doc (version: number, limit: number, extra: Record<string, unknown> = {}): PolicyDocument {
  return { version, policies: [{ id: 'per-user', key: 'user', limits: [{ id: 'minute', limit, window: '1m' }], ...extra }] }
}

function bundle (version: number, limit: number, key: OperatorKey = OPERATOR): Uint8Array {
  return encodeBundle(signBundle(doc(version, limit), key))
}

interface Rig {
  clock: VirtualClock
  limiter: Limiter
  manager: PolicyManager
  installed: BundleInfo[]
  rejected: Array<[string, PolicySource]>
  events: string[]
}

function rig (initialBundle?: Uint8Array): Rig {
  const clock = new VirtualClock(T0)
  // The fallback: what runs until a signed bundle arrives.
  const limiter = createLimiter({ clock, policies: { policies: [{ id: 'fallback', limits: [{ limit: 1000, window: '1s' }] }] } })
  const installed: BundleInfo[] = []
  const rejected: Array<[string, PolicySource]> = []
  const events: string[] = []
  const manager = createPolicyManager({
    trustedKeys: [OPERATOR.text],
    limiter,
    clock,
    initialBundle,
    metrics: { installed: b => installed.push(b), rejected: (code, source) => rejected.push([code, source]) }
  })
  manager.on('update', (b, prev) => events.push(`update ${prev?.version ?? 0}->${b.version}`))
  manager.on('reject', (e, source, from) => events.push(`reject ${e.code} ${source} ${from ?? '-'}`))
  return { clock, limiter, manager, installed, rejected, events }
}

function uses (limiter: Limiter, user: string, n: number): void {
  for (let i = 0; i < n; i++) expect(limiter.check({ user }).allowed).toBe(true)
}

describe('policy manager: accepting bundles', () => {
  it('runs the limiter\'s own policies until a bundle arrives, then installs a signed, valid, newer one', () => {
    const r = rig()
    expect([r.manager.version, r.manager.hash, r.manager.current, r.manager.bundle]).toEqual([0, undefined, undefined, undefined])
    expect(r.limiter.policies.policies[0].id).toBe('fallback')
    const bytes = bundle(1, 5)
    const res = r.manager.offer(bytes, 'admin')
    expect(res.status).toBe('installed')
    expect(r.manager.current).toEqual({ version: 1, hash: contentHash(doc(1, 5)), keyId: OPERATOR.keyId, source: 'admin', from: undefined, installedAtMs: T0, policies: 1 })
    expect(r.manager.bundle).toBe(bytes)
    expect(r.limiter.policies.policies[0].id).toBe('per-user')
    expect(r.installed.map(b => b.version)).toEqual([1])
    expect(r.events).toEqual(['update 0->1'])
    expect(r.manager.stats.installed).toBe(1)
  })

  it('offering the running bundle again changes nothing', () => {
    const r = rig()
    r.manager.offer(bundle(1, 5), 'admin')
    uses(r.limiter, 'u', 2)
    const res = r.manager.offer(bundle(1, 5), 'gossip', 'peer-1')
    expect(res.status).toBe('current')
    expect(r.manager.stats.current).toBe(1)
    expect(r.events).toEqual(['update 0->1'])
    expect(r.limiter.check({ user: 'u' }).remaining).toBe(2)
  })

  it('usage survives a new version that keeps limit ids, and a new ceiling applies at once', () => {
    const r = rig()
    r.manager.offer(bundle(1, 5), 'admin')
    uses(r.limiter, 'u', 3)
    expect(r.manager.offer(bundle(2, 10), 'admin').status).toBe('installed')
    expect(r.limiter.check({ user: 'u' }).remaining).toBe(6)
    // Rollback: the earlier content under a newer version.
    expect(r.manager.offer(bundle(3, 5), 'admin').status).toBe('installed')
    expect(r.limiter.check({ user: 'u' }).remaining).toBe(0)
    expect(r.limiter.check({ user: 'u' }).allowed).toBe(false)
  })

  it('installs a valid initial bundle at creation; an invalid one leaves the fallback running, counted', () => {
    const ok = rig(bundle(4, 5))
    expect([ok.manager.version, ok.manager.current?.source]).toEqual([4, 'initial'])
    const bad = rig(bundle(4, 5, STRANGER))
    expect(bad.manager.version).toBe(0)
    expect(bad.limiter.policies.policies[0].id).toBe('fallback')
    expect(bad.manager.stats.rejected).toEqual({ [ErrorCode.BUNDLE_UNTRUSTED_KEY]: 1 })
    expect(bad.rejected).toEqual([[ErrorCode.BUNDLE_UNTRUSTED_KEY, 'initial']])
  })
})

describe('policy manager: bad bundles are rejected with a code and a metric, and nothing is lost', () => {
  const forged = (content: unknown, key: OperatorKey = OPERATOR): Uint8Array => {
    const signature = sign(null, utf8.encode(SIGNING_PREFIX + canonicalJson(content)), key.privateKey).toString('base64')
    return utf8.encode(JSON.stringify({ format: BUNDLE_FORMAT, keyId: key.keyId, signature, content }))
  }
  const tampered = (): Uint8Array => {
    const b = signBundle(doc(5, 5), OPERATOR)
    return encodeBundle({ ...b, content: doc(5, 5000) })
  }
  const cases: Array<[string, () => Uint8Array, string]> = [
    ['an invalid document, correctly signed', () => forged(doc(5, -1)), ErrorCode.POLICY_INVALID],
    ['an unsigned document', () => utf8.encode(JSON.stringify(doc(5, 5))), ErrorCode.BUNDLE_MALFORMED],
    ['a bundle signed by an unknown key', () => bundle(5, 5, STRANGER), ErrorCode.BUNDLE_UNTRUSTED_KEY],
    ['a bundle whose content was changed after signing', tampered, ErrorCode.BUNDLE_BAD_SIGNATURE],
    ['an older bundle', () => bundle(1, 5), ErrorCode.BUNDLE_STALE],
    ['an oversized bundle', () => new Uint8Array(2 << 20).fill(0x20), ErrorCode.BUNDLE_TOO_LARGE],
    ['garbage', () => new Uint8Array([1, 2, 3]), ErrorCode.BUNDLE_MALFORMED],
    ['a bundle without a version', () => utf8.encode(JSON.stringify({ ...signBundle(doc(5, 5), OPERATOR), content: { policies: [] } })), ErrorCode.BUNDLE_MALFORMED]
  ]
  for (const [what, make, code] of cases) {
    it(what, () => {
      const r = rig()
      r.manager.offer(bundle(2, 5), 'admin')
      uses(r.limiter, 'u', 3)
      const before = r.manager.current
      const res = r.manager.offer(make(), 'gossip', 'peer-9')
      expect(res.status).toBe('rejected')
      if (res.status !== 'rejected') return
      expect(res.error.code).toBe(code)
      expect(res.error.message).toContain('Fix:')
      expect(r.manager.current).toBe(before)
      expect(r.manager.stats.rejected).toEqual({ [code]: 1 })
      expect(r.manager.stats.lastRejection).toMatchObject({ code, source: 'gossip', from: 'peer-9', atMs: T0 })
      expect(r.rejected).toEqual([[code, 'gossip']])
      expect(r.events).toEqual(['update 0->2', `reject ${code} gossip peer-9`])
      // The last good bundle keeps running with its usage intact.
      expect(r.limiter.check({ user: 'u' }).remaining).toBe(1)
    })
  }

  it('the same version with a lower hash is stale; with a higher hash it wins', () => {
    const r = rig()
    const a = bundle(7, 5)
    const b = bundle(7, 6)
    const [low, high] = contentHash(doc(7, 5)) < contentHash(doc(7, 6)) ? [a, b] : [b, a]
    expect(r.manager.offer(high, 'admin').status).toBe('installed')
    const res = r.manager.offer(low, 'gossip')
    expect(res.status === 'rejected' && res.error.code).toBe(ErrorCode.BUNDLE_STALE)
    expect(res.status === 'rejected' && res.error.message).toMatch(/same version and a lower hash/)
    const r2 = rig()
    r2.manager.offer(low, 'admin')
    expect(r2.manager.offer(high, 'gossip').status).toBe('installed')
  })

  it('a bundle that would not be installed is not verified: an old forged one is just stale', () => {
    const r = rig()
    r.manager.offer(bundle(5, 5), 'admin')
    const forgedOld = encodeBundle({ ...signBundle(doc(2, 5), OPERATOR), signature: Buffer.alloc(64, 1).toString('base64') })
    const res = r.manager.offer(forgedOld, 'gossip')
    expect(res.status === 'rejected' && res.error.code).toBe(ErrorCode.BUNDLE_STALE)
    // The same bundle under a newer version is verified, and refused.
    const forgedNew = encodeBundle({ ...signBundle(doc(6, 5), OPERATOR), signature: Buffer.alloc(64, 1).toString('base64') })
    const res2 = r.manager.offer(forgedNew, 'gossip')
    expect(res2.status === 'rejected' && res2.error.code).toBe(ErrorCode.BUNDLE_BAD_SIGNATURE)
  })

  it('a closed limiter makes the install fail; the bundle is not recorded as running', () => {
    const r = rig()
    r.manager.offer(bundle(1, 5), 'admin')
    r.limiter.close()
    const res = r.manager.offer(bundle(2, 5), 'admin')
    expect(res.status === 'rejected' && res.error.code).toBe(ErrorCode.STATE_INVALID)
    expect(r.manager.version).toBe(1)
  })

  it('listeners can unsubscribe', () => {
    const r = rig()
    const seen: number[] = []
    const off = r.manager.on('update', b => seen.push(b.version))
    r.manager.offer(bundle(1, 5), 'admin')
    off()
    r.manager.offer(bundle(2, 5), 'admin')
    expect(seen).toEqual([1])
  })

  it('refuses bad options', () => {
    const limiter = createLimiter({ policies: { policies: [] }, clock: new VirtualClock(T0) })
    expect(thrown(() => createPolicyManager({ trustedKeys: [], limiter }))).toMatchObject({ code: ErrorCode.OPTION_INVALID, field: 'trustedKeys' })
    expect(thrown(() => createPolicyManager({ trustedKeys: ['ed25519:xyz'], limiter }))).toMatchObject({ code: ErrorCode.KEY_INVALID })
    expect(thrown(() => createPolicyManager({ trustedKeys: [OPERATOR.text], limiter: {} as unknown as Limiter }))).toMatchObject({ code: ErrorCode.OPTION_INVALID, field: 'limiter' })
    expect(thrown(() => createPolicyManager({ trustedKeys: [OPERATOR.text], limiter, maxBundleBytes: 10 }))).toMatchObject({ code: ErrorCode.OPTION_INVALID, field: 'maxBundleBytes' })
  })
})

describe('policy manager: concurrent pushes converge', () => {
  it('whatever order nodes receive bundles in, every node ends on the largest (version, hash)', () => {
    // Bundles with colliding versions: concurrent pushes of different content.
    const pool = Array.from({ length: 6 }, (_, i) => ({ version: 1 + (i % 3), limit: 10 + i }))
    const bytes = pool.map(p => bundle(p.version, p.limit))
    const best = pool.map((p, i) => ({ ...p, i, hash: contentHash(doc(p.version, p.limit)) }))
      .sort((a, b) => a.version - b.version || (a.hash < b.hash ? -1 : 1)).pop() as { hash: string }
    fc.assert(fc.property(fc.array(fc.array(fc.nat(pool.length - 1), { minLength: 1, maxLength: 12 }), { minLength: 2, maxLength: 5 }), orders => {
      const hashes = orders.map(order => {
        const r = rig()
        // Every node eventually sees every bundle (gossip plus re-announcement), in its own order.
        for (const i of [...order, ...pool.keys()]) r.manager.offer(bytes[i], 'gossip')
        return r.manager.hash
      })
      expect(new Set(hashes)).toEqual(new Set([best.hash]))
    }), { numRuns: 50 })
  })
})
