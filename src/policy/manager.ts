import { systemClock, type Clock } from '../../membership/clock.js'
import { ErrorCode, MeshlimitError, invalid } from '../errors.js'
import { DEFAULT_BUNDLE_LIMITS, compareBundles, parseBundle, trustedKeyMap, verifyBundle, type BundleLimits, type TrustedKey, type VerifiedBundle } from './bundle.js'
import type { PolicyDocument, PolicySet } from './types.js'
import { validatePolicies } from './validate.js'

/**
 * A fallback that admits nothing: create the limiter with it to fail closed until the
 * node has a signed bundle (every request is denied with retryAfterMs Infinity).
 */
export const DENY_ALL_POLICIES: PolicyDocument = Object.freeze({
  policies: Object.freeze([Object.freeze({ id: 'no-bundle-yet', limits: Object.freeze([Object.freeze({ id: 'deny', algorithm: 'fixed-window', limit: 0, window: '1s' })]) })])
}) as unknown as PolicyDocument

/** Where a bundle came from (a metrics label). */
export type PolicySource = 'admin' | 'gossip' | 'pull' | 'file' | 'initial' | 'api'

/** What the manager installs accepted policies into: a Limiter. */
export interface PolicyTarget {
  setPolicies(policies: PolicySet): void
}

/** The running bundle, as reported to operators and membership heartbeats. */
export interface BundleInfo {
  readonly version: number
  /** SHA-256 of the canonical content, hex. */
  readonly hash: string
  readonly keyId: string
  readonly source: PolicySource
  /** Peer the bundle came from (gossip and pulls). */
  readonly from: string | undefined
  readonly installedAtMs: number
  readonly policies: number
}

export type OfferResult =
  | { readonly status: 'installed', readonly bundle: BundleInfo, readonly previous: BundleInfo | undefined }
  /** The same version and hash already runs: nothing to do. */
  | { readonly status: 'current', readonly bundle: BundleInfo }
  | { readonly status: 'rejected', readonly error: MeshlimitError }

/** Hooks for a metrics system; called off the request path, once per offered bundle. */
export interface PolicyMetrics {
  installed?(bundle: BundleInfo): void
  rejected?(code: string, source: PolicySource): void
}

export interface PolicyManagerStats {
  installed: number
  /** Offers of the bundle already running (re-announcements, repeated pushes). */
  current: number
  /** Rejections by error code. */
  rejected: Record<string, number>
  lastRejection: { code: string, message: string, source: PolicySource, from: string | undefined, atMs: number } | undefined
}

export interface PolicyManagerInit {
  /** Operator public keys whose signatures are accepted: "ed25519:<base64>" (from `meshlimit keygen`) or PEM. */
  trustedKeys: ReadonlyArray<string | TrustedKey>
  /** Where accepted policies are installed, normally the Limiter. Until the first bundle, its own policies (the fallback) stay in force. */
  limiter: PolicyTarget
  /**
   * Time source for timestamps.
   * @default systemClock
   */
  clock?: Clock
  /**
   * Largest bundle accepted, in bytes.
   * @default 1048576
   */
  maxBundleBytes?: number
  /**
   * A signed bundle installed at creation, e.g. the last good bundle saved to disk. If it
   * is rejected, the limiter's own policies stay in force and the rejection is counted.
   * @default none
   */
  initialBundle?: Uint8Array
  /** Metrics hooks. @default none */
  metrics?: PolicyMetrics
}

type UpdateListener = (bundle: BundleInfo, previous: BundleInfo | undefined) => void
type RejectListener = (error: MeshlimitError, source: PolicySource, from: string | undefined) => void

/** The current signed bundle of a node and the rules for replacing it. */
export interface PolicyManager {
  /** Version of the running bundle; 0 while the limiter's own (fallback) policies run. */
  readonly version: number
  /** Hash of the running bundle; undefined while the fallback runs. */
  readonly hash: string | undefined
  readonly current: BundleInfo | undefined
  /** The running bundle as received (served to peers that pull). */
  readonly bundle: Uint8Array | undefined
  readonly stats: PolicyManagerStats
  /**
   * Checks a bundle and installs it when it is signed by a trusted key, valid, and newer
   * than the running one (by version, then hash). Never throws: a bad bundle is
   * reported in the result, counted, and the running bundle stays.
   */
  offer(bytes: Uint8Array, source: PolicySource, from?: string): OfferResult
  /** Whether (version, hash) would replace the running bundle. */
  isNewer(version: number, hash: string): boolean
  /** Listens for installs ('update') or rejections ('reject'); returns the unsubscribe function. */
  on(event: 'update', listener: UpdateListener): () => void
  on(event: 'reject', listener: RejectListener): () => void
}

class PolicyManagerImpl implements PolicyManager {
  current: BundleInfo | undefined
  bundle: Uint8Array | undefined
  readonly stats: PolicyManagerStats = { installed: 0, current: 0, rejected: {}, lastRejection: undefined }
  private readonly keys: ReadonlyMap<string, TrustedKey>
  private readonly limiter: PolicyTarget
  private readonly clock: Clock
  private readonly limits: BundleLimits
  private readonly metrics: PolicyMetrics | undefined
  private readonly updates = new Set<UpdateListener>()
  private readonly rejects = new Set<RejectListener>()

  constructor (init: PolicyManagerInit) {
    if (!Array.isArray(init.trustedKeys) || init.trustedKeys.length === 0) {
      throw invalid(ErrorCode.OPTION_INVALID, 'trustedKeys', init.trustedKeys, 'must list at least one operator public key', 'pass the public key printed by `meshlimit keygen`, e.g. ["ed25519:..."]')
    }
    if (typeof init.limiter?.setPolicies !== 'function') {
      throw invalid(ErrorCode.OPTION_INVALID, 'limiter', init.limiter, 'must have setPolicies()', 'pass the Limiter the policies are for')
    }
    const max = init.maxBundleBytes ?? DEFAULT_BUNDLE_LIMITS.maxBundleBytes
    if (!Number.isSafeInteger(max) || max < 1024) throw invalid(ErrorCode.OPTION_INVALID, 'maxBundleBytes', max, 'must be an integer >= 1024', 'leave it out for 1 MiB')
    this.keys = trustedKeyMap(init.trustedKeys)
    this.limiter = init.limiter
    this.clock = init.clock ?? systemClock
    this.limits = { ...DEFAULT_BUNDLE_LIMITS, maxBundleBytes: max }
    this.metrics = init.metrics
    if (init.initialBundle !== undefined) this.offer(init.initialBundle, 'initial')
  }

  get version (): number {
    return this.current?.version ?? 0
  }

  get hash (): string | undefined {
    return this.current?.hash
  }

  isNewer (version: number, hash: string): boolean {
    return this.current === undefined || compareBundles({ version, hash }, this.current) > 0
  }

  offer (bytes: Uint8Array, source: PolicySource, from?: string): OfferResult {
    let b: VerifiedBundle
    try {
      // Order by cost: a bundle that would not be installed is never verified or validated.
      const parsed = parseBundle(bytes, this.limits)
      const cur = this.current
      if (cur !== undefined && cur.version === parsed.version && cur.hash === parsed.hash) {
        this.stats.current++
        return { status: 'current', bundle: cur }
      }
      if (!this.isNewer(parsed.version, parsed.hash)) {
        const c = cur as BundleInfo
        const same = parsed.version === c.version ? ' with the same version and a lower hash (two different bundles were signed as one version; the larger hash wins everywhere)' : ''
        throw invalid(ErrorCode.BUNDLE_STALE, 'content.version', parsed.version, `is not newer than the running version ${c.version} (hash ${c.hash.slice(0, 12)})${same}`,
          `sign with a version above ${c.version}; to roll back, push the earlier content under a newer version`)
      }
      verifyBundle(parsed, this.keys)
      b = { ...parsed, set: validatePolicies(parsed.content) }
      // The limiter validates nothing new here; it throws only when closed.
      this.limiter.setPolicies(b.set)
    } catch (err) {
      const error = err instanceof MeshlimitError ? err : new MeshlimitError(ErrorCode.STATE_INVALID, `installing the bundle failed: ${String(err)}. Fix: check the limiter`, 'limiter')
      this.reject(error, source, from)
      return { status: 'rejected', error }
    }
    const previous = this.current
    const info: BundleInfo = {
      version: b.version,
      hash: b.hash,
      keyId: b.keyId,
      source,
      from,
      installedAtMs: this.clock.now(),
      policies: b.set.policies.length
    }
    this.current = info
    this.bundle = b.bytes
    this.stats.installed++
    this.metrics?.installed?.(info)
    for (const l of this.updates) l(info, previous)
    return { status: 'installed', bundle: info, previous }
  }

  private reject (error: MeshlimitError, source: PolicySource, from: string | undefined): void {
    this.stats.rejected[error.code] = (this.stats.rejected[error.code] ?? 0) + 1
    this.stats.lastRejection = { code: error.code, message: error.message, source, from, atMs: this.clock.now() }
    this.metrics?.rejected?.(error.code, source)
    for (const l of this.rejects) l(error, source, from)
  }

  on (event: 'update' | 'reject', listener: UpdateListener | RejectListener): () => void {
    const set = (event === 'update' ? this.updates : this.rejects) as Set<typeof listener>
    set.add(listener)
    return () => { set.delete(listener) }
  }
}

/**
 * Creates the policy manager of a node: it holds the running signed bundle and accepts
 * a new one only when it is signed by a trusted operator key, valid, and newer (by
 * version, then hash, so concurrent pushes converge everywhere on the same bundle).
 * Anything else is rejected with a coded error and a metric, and the last good bundle
 * keeps running.
 */
export function createPolicyManager (init: PolicyManagerInit): PolicyManager {
  if (typeof init !== 'object' || init === null) throw invalid(ErrorCode.OPTION_INVALID, 'init', init, 'must be an object', 'pass { trustedKeys, limiter }')
  return new PolicyManagerImpl(init)
}
