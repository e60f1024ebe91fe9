import { createHash } from 'node:crypto'
import { watch, type FSWatcher } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { basename, dirname, resolve } from 'node:path'
import { systemClock, type Clock } from '../../membership/clock.js'
import { ErrorCode, MeshlimitError, invalid } from '../errors.js'
import { DEFAULT_BUNDLE_LIMITS, contentHash, encodeBundle, parseBundle, signBundle, type OperatorKey } from './bundle.js'
import { readPolicyText } from './load.js'
import type { OfferResult, PolicyManager } from './manager.js'
import type { PolicyDocument } from './types.js'

export interface PolicyFileSourceInit {
  /**
   * The file to watch: a signed bundle (from `meshlimit policy sign`), or, with
   * `signingKey`, a policy document or an envoyproxy/ratelimit configuration.
   */
  path: string
  manager: PolicyManager
  /**
   * Operator key that signs plain documents read from the file. Without it the file
   * must hold a signed bundle. A document without a version is signed as the running
   * version + 1 when its content differs from the running bundle's.
   * @default none
   */
  signingKey?: OperatorKey
  /**
   * Quiet time after the last change event before the file is read, in ms (editors
   * write a file in several steps).
   * @default 200
   */
  debounceMs?: number
  /**
   * Also re-read the file this often, in ms, for filesystems where change events are
   * unreliable (network mounts); 0 turns polling off.
   * @default 0
   */
  pollIntervalMs?: number
  /**
   * Largest file read, in bytes.
   * @default 4194304
   */
  maxFileBytes?: number
  /**
   * Timer source of the debounce and the polling.
   * @default systemClock
   */
  clock?: Clock
  /** Called with the outcome of every read (for logs). @default none */
  onResult?: (result: FileSourceResult) => void
}

export type FileSourceResult =
  | OfferResult
  /** The file's bytes did not change since the last read, or its content is what already runs. */
  | { readonly status: 'unchanged' }
  /** The file could not be read, parsed or signed; the running bundle stays. */
  | { readonly status: 'error', readonly error: MeshlimitError }

export interface PolicyFileSource {
  /** The outcome of the first read. */
  readonly ready: Promise<FileSourceResult>
  /** Reads the file now (even if unchanged) and offers it. */
  reload(): Promise<FileSourceResult>
  /** Stops watching. */
  close(): void
}

/** Content of a document without its version: what a file edit changes. */
function bodyHash (doc: unknown): string {
  const { version: _, ...rest } = doc as Record<string, unknown>
  return contentHash(rest)
}

class PolicyFileSourceImpl implements PolicyFileSource {
  readonly ready: Promise<FileSourceResult>
  private readonly path: string
  private readonly manager: PolicyManager
  private readonly key: OperatorKey | undefined
  private readonly debounceMs: number
  private readonly maxFileBytes: number
  private readonly clock: Clock
  private readonly onResult: ((r: FileSourceResult) => void) | undefined
  private watcher: FSWatcher | undefined
  private cancelDebounce: (() => void) | undefined
  private cancelPoll: (() => void) | undefined
  private lastBytes: string | undefined
  private closed = false
  /** Reads run one at a time; a change during a read triggers one more read. */
  private reading: Promise<FileSourceResult> | undefined
  private again = false

  constructor (init: PolicyFileSourceInit) {
    if (typeof init.path !== 'string' || init.path === '') throw invalid(ErrorCode.OPTION_INVALID, 'path', init.path, 'must be a file path', 'pass the path of the policy file')
    if (typeof init.manager?.offer !== 'function') throw invalid(ErrorCode.OPTION_INVALID, 'manager', init.manager, 'is required', 'pass the node\'s policy manager')
    this.path = resolve(init.path)
    this.manager = init.manager
    this.key = init.signingKey
    this.debounceMs = init.debounceMs ?? 200
    this.maxFileBytes = init.maxFileBytes ?? 4 << 20
    this.clock = init.clock ?? systemClock
    this.onResult = init.onResult
    // Watch the directory: editors and config maps replace the file by renaming over it.
    try {
      this.watcher = watch(dirname(this.path), { persistent: false }, (_event, name) => {
        const n = name === null ? null : String(name)
        if (n === null || n === basename(this.path) || n.startsWith('..')) this.changed()
      })
      this.watcher.on('error', () => { /* the directory went away; polling (if on) still reads */ })
    } catch (err) {
      throw new MeshlimitError(ErrorCode.SOURCE_UNREADABLE, `cannot watch ${dirname(this.path)}: ${err instanceof Error ? err.message : String(err)}. Fix: create the directory, or check its permissions`, 'path', init.path)
    }
    const poll = init.pollIntervalMs ?? 0
    if (poll > 0) {
      const tick = (): void => {
        if (this.closed) return
        void this.read(false)
        this.cancelPoll = this.clock.setTimer(poll, tick)
      }
      this.cancelPoll = this.clock.setTimer(poll, tick)
    }
    this.ready = this.read(true)
  }

  async reload (): Promise<FileSourceResult> {
    return await this.read(true)
  }

  close (): void {
    this.closed = true
    this.watcher?.close()
    this.cancelDebounce?.()
    this.cancelPoll?.()
  }

  private changed (): void {
    if (this.closed) return
    this.cancelDebounce?.()
    this.cancelDebounce = this.clock.setTimer(this.debounceMs, () => { void this.read(false) })
  }

  private async read (force: boolean): Promise<FileSourceResult> {
    if (this.reading !== undefined) {
      this.again = true
      return await this.reading
    }
    this.reading = this.readOnce(force)
    try {
      const r = await this.reading
      if (!this.closed) this.onResult?.(r)
      return r
    } finally {
      this.reading = undefined
      if (this.again && !this.closed) {
        this.again = false
        void this.read(false)
      }
    }
  }

  private async readOnce (force: boolean): Promise<FileSourceResult> {
    let bytes: Buffer
    try {
      const s = await stat(this.path)
      if (s.size > this.maxFileBytes) {
        return { status: 'error', error: invalid(ErrorCode.BUNDLE_TOO_LARGE, 'path', this.path, `is ${s.size} bytes, more than ${this.maxFileBytes}`, 'split the policies or raise maxFileBytes') }
      }
      bytes = await readFile(this.path)
    } catch (err) {
      return { status: 'error', error: new MeshlimitError(ErrorCode.SOURCE_UNREADABLE, `cannot read ${this.path}: ${err instanceof Error ? err.message : String(err)}. Fix: check that the file exists and is readable`, 'path', this.path) }
    }
    const fingerprint = createHash('sha256').update(bytes).digest('hex')
    if (!force && fingerprint === this.lastBytes) return { status: 'unchanged' }
    this.lastBytes = fingerprint
    try {
      const loaded = readPolicyText(bytes.toString('utf8'), this.path)
      if (loaded.kind === 'bundle') return this.manager.offer(loaded.bytes, 'file')
      if (this.key === undefined) {
        throw new MeshlimitError(ErrorCode.BUNDLE_MALFORMED, `${this.path} holds a policy document, not a signed bundle. Fix: sign it with \`meshlimit policy sign\`, or give the file source the operator key (signingKey)`, 'path', this.path)
      }
      return this.signAndOffer(loaded.document)
    } catch (err) {
      if (err instanceof MeshlimitError) return { status: 'error', error: err }
      throw err
    }
  }

  private signAndOffer (doc: PolicyDocument): FileSourceResult {
    let version = doc.version
    if (version === undefined || version === 0) {
      const running = this.manager.bundle
      const same = running !== undefined && bodyHash(parseBundle(running, { ...DEFAULT_BUNDLE_LIMITS, maxBundleBytes: Infinity }).content) === bodyHash(doc)
      if (same) return { status: 'unchanged' }
      version = this.manager.version + 1
    }
    return this.manager.offer(encodeBundle(signBundle(doc, this.key as OperatorKey, version)), 'file')
  }
}

/**
 * Watches a policy file and offers it to the manager whenever it changes (debounced),
 * and once at start. Bad content is reported (onResult, the manager's rejection
 * counters) and the running bundle stays; a later good edit is picked up.
 */
export function watchPolicyFile (init: PolicyFileSourceInit): PolicyFileSource {
  if (typeof init !== 'object' || init === null) throw invalid(ErrorCode.OPTION_INVALID, 'init', init, 'must be an object', 'pass { path, manager }')
  return new PolicyFileSourceImpl(init)
}
