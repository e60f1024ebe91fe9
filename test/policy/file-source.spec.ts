import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createLimiter, VirtualClock } from '../../src/index.js'
import { ErrorCode } from '../../src/errors.js'
import { contentHash, encodeBundle, generateOperatorKey, signBundle } from '../../src/policy/bundle.js'
import { watchPolicyFile, type FileSourceResult, type PolicyFileSource } from '../../src/policy/file-source.js'
import { DENY_ALL_POLICIES, createPolicyManager, type PolicyManager } from '../../src/policy/manager.js'
import type { PolicyDocument } from '../../src/policy/types.js'

const OPERATOR = generateOperatorKey()

function doc (version: number | undefined, limit: number): PolicyDocument {
  const d: PolicyDocument = { policies: [{ id: 'per-user', key: 'user', limits: [{ id: 'minute', limit, window: '1m' }] }] }
  return version === undefined ? d : { version, ...d }
}

function bundleText (version: number, limit: number): string {
  return new TextDecoder().decode(encodeBundle(signBundle(doc(version, limit), OPERATOR), 2))
}

/** Polls `cond` every 10 ms, failing with `what` after `ms` (real time: file events are real). */
async function waitFor (cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const start = Date.now()
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

let dir: string
let sources: PolicyFileSource[] = []
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'meshlimit-policy-')) })
afterEach(async () => {
  for (const s of sources) s.close()
  sources = []
  await rm(dir, { recursive: true, force: true })
})

function manager (): PolicyManager {
  return createPolicyManager({ trustedKeys: [OPERATOR.text], limiter: createLimiter({ policies: DENY_ALL_POLICIES }) })
}

function source (path: string, m: PolicyManager, extra: Partial<Parameters<typeof watchPolicyFile>[0]> = {}): { src: PolicyFileSource, results: FileSourceResult[] } {
  const results: FileSourceResult[] = []
  const src = watchPolicyFile({ path, manager: m, debounceMs: 20, onResult: r => results.push(r), ...extra })
  sources.push(src)
  return { src, results }
}

describe('policy file source', () => {
  it('installs a signed bundle file at start and on every change, including atomic replaces', async () => {
    const path = join(dir, 'policies.json')
    await writeFile(path, bundleText(1, 5))
    const m = manager()
    const { src } = source(path, m)
    expect((await src.ready).status).toBe('installed')
    expect(m.current).toMatchObject({ version: 1, source: 'file' })
    await writeFile(path, bundleText(2, 6))
    await waitFor(() => m.version === 2, 'version 2 after an in-place write')
    // Editors and config maps write a temporary file and rename it over the old one.
    await writeFile(join(dir, '.tmp-policies'), bundleText(3, 7))
    await rename(join(dir, '.tmp-policies'), path)
    await waitFor(() => m.version === 3, 'version 3 after a rename')
    expect(m.hash).toBe(contentHash(doc(3, 7)))
  })

  it('a bad edit is reported and the last good bundle stays; the next good edit is picked up', async () => {
    const path = join(dir, 'policies.json')
    await writeFile(path, bundleText(1, 5))
    const m = manager()
    const { src, results } = source(path, m)
    await src.ready
    await writeFile(path, bundleText(2, 5).replace('"limit": 5', '"limit": 50'))
    await waitFor(() => results.some(r => r.status === 'rejected'), 'the tampered bundle to be rejected')
    expect(m.version).toBe(1)
    expect(m.stats.rejected).toEqual({ [ErrorCode.BUNDLE_BAD_SIGNATURE]: 1 })
    await writeFile(path, '{ not json')
    await waitFor(() => results.some(r => r.status === 'error'), 'the broken file to be reported')
    expect(m.version).toBe(1)
    await writeFile(path, bundleText(2, 9))
    await waitFor(() => m.version === 2, 'the fixed file')
  })

  it('with the operator key, signs plain documents: the next version when the content changed, nothing when it did not', async () => {
    const path = join(dir, 'policies.yaml')
    await writeFile(path, 'policies:\n  - { id: per-user, key: user, limits: [ { id: minute, limit: 5, window: 1m } ] }\n')
    const m = manager()
    const { src, results } = source(path, m, { signingKey: OPERATOR })
    expect((await src.ready).status).toBe('installed')
    expect(m.version).toBe(1)
    // Same content, reformatted: no new version.
    await writeFile(path, 'policies:\n- id: per-user\n  key: user\n  limits:\n  - { limit: 5, window: 1m, id: minute }\n')
    await waitFor(() => results.some(r => r.status === 'unchanged'), 'the reformatted file to be read')
    expect(m.version).toBe(1)
    await writeFile(path, 'policies:\n  - { id: per-user, key: user, limits: [ { id: minute, limit: 7, window: 1m } ] }\n')
    await waitFor(() => m.version === 2, 'version 2 signed from the edited document')
    // An explicit version is used as written.
    await writeFile(path, 'version: 10\npolicies:\n  - { id: per-user, key: user, limits: [ { id: minute, limit: 7, window: 1m } ] }\n')
    await waitFor(() => m.version === 10, 'the explicit version 10')
  })

  it('reads an Envoy configuration as a document to sign', async () => {
    const path = join(dir, 'ratelimit.yaml')
    await writeFile(path, 'domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: { unit: second, requests_per_unit: 10 }\n')
    const m = manager()
    const { src } = source(path, m, { signingKey: OPERATOR })
    expect((await src.ready).status).toBe('installed')
    expect(m.current?.policies).toBe(1)
  })

  it('without the key, a plain document is refused: it must be signed', async () => {
    const path = join(dir, 'policies.yaml')
    await writeFile(path, 'version: 1\npolicies: []\n')
    const m = manager()
    const r = await source(path, m).src.ready
    expect(r.status === 'error' && r.error.code).toBe(ErrorCode.BUNDLE_MALFORMED)
    expect(m.version).toBe(0)
  })

  it('a missing file is reported and picked up once it appears; an oversized one is refused', async () => {
    const path = join(dir, 'later.json')
    const m = manager()
    const { src } = source(path, m)
    const r = await src.ready
    expect(r.status === 'error' && r.error.code).toBe(ErrorCode.SOURCE_UNREADABLE)
    await writeFile(path, bundleText(4, 5))
    await waitFor(() => m.version === 4, 'the file created after start')
    const big = join(dir, 'big.json')
    await writeFile(big, ' '.repeat(2048))
    const r2 = await source(big, m, { maxFileBytes: 1024 }).src.ready
    expect(r2.status === 'error' && r2.error.code).toBe(ErrorCode.BUNDLE_TOO_LARGE)
  })

  it('polls on the clock when asked (for mounts without change events)', async () => {
    const path = join(dir, 'polled.json')
    await writeFile(path, bundleText(1, 5))
    const clock = new VirtualClock(0)
    const m = manager()
    const { src, results } = source(path, m, { clock, pollIntervalMs: 1000, debounceMs: 1_000_000 })
    await src.ready
    await writeFile(path, bundleText(2, 5))
    // Change events only schedule a debounced read far in virtual time; the poll reads it.
    clock.advance(1000)
    await waitFor(() => m.version === 2, 'the polled read')
    expect(results.filter(r => r.status === 'installed')).toHaveLength(2)
  })
})
