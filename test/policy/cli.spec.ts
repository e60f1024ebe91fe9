import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { commands } from '../../src/cli/policy.js'
import { createLimiter, VirtualClock } from '../../src/index.js'
import { ErrorCode } from '../../src/errors.js'
import { policyAdminRoutes } from '../../src/policy/admin.js'
import { contentHash, encodeBundle, exportPrivateKey, generateOperatorKey, openBundle, signBundle, trustedKeyMap } from '../../src/policy/bundle.js'
import { DENY_ALL_POLICIES, createPolicyManager, type PolicyManager } from '../../src/policy/manager.js'
import { startAdminServer, type TestAdminServer } from '../helpers/admin-server.js'

const OPERATOR = generateOperatorKey()
const TOKEN = 'cli-test-token'

interface Run { code: number, out: string[], err: string[], json: Record<string, unknown> }

async function cli (line: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const [name, ...args] = line
  const out: string[] = []
  const err: string[] = []
  const code = await commands[name].run(args, { out: l => out.push(l), err: l => err.push(l), env })
  let json: Record<string, unknown> = {}
  try { json = JSON.parse(out[out.length - 1] ?? '') as Record<string, unknown> } catch { /* usage output */ }
  return { code, out, err, json }
}

const DOC_YAML = `version: 1
policies:
  - id: per-user
    key: user
    limits: [ { id: minute, limit: 5, window: 1m } ]
`

let dir: string
let server: TestAdminServer | undefined
let keyFile: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshlimit-cli-'))
  keyFile = join(dir, 'op.key')
  await writeFile(keyFile, exportPrivateKey(OPERATOR))
})
afterEach(async () => {
  await server?.close()
  server = undefined
  await rm(dir, { recursive: true, force: true })
})

async function file (name: string, text: string): Promise<string> {
  const p = join(dir, name)
  await writeFile(p, text)
  return p
}

async function node (): Promise<{ manager: PolicyManager, url: string }> {
  const clock = new VirtualClock(1_800_000_000_000)
  const manager = createPolicyManager({ trustedKeys: [OPERATOR.text], limiter: createLimiter({ clock, policies: DENY_ALL_POLICIES }), clock })
  server = await startAdminServer(policyAdminRoutes(manager), TOKEN)
  return { manager, url: server.url }
}

describe('meshlimit keygen', () => {
  it('writes a private key (0600) and a public key line, and refuses to overwrite without --force', async () => {
    const prefix = join(dir, 'operator')
    const r = await cli(['keygen', '--out', prefix])
    expect(r.code).toBe(0)
    expect(r.json).toMatchObject({ ok: true, privateKeyFile: `${prefix}.key`, publicKeyFile: `${prefix}.pub` })
    expect(r.json.publicKey).toMatch(/^ed25519:/)
    expect((await stat(`${prefix}.key`)).mode & 0o777).toBe(0o600)
    expect((await readFile(`${prefix}.pub`, 'utf8')).trim()).toBe(r.json.publicKey)
    const again = await cli(['keygen', '--out', prefix])
    expect([again.code, again.json.code]).toEqual([1, ErrorCode.KEY_INVALID])
    expect((await readFile(`${prefix}.pub`, 'utf8')).trim()).toBe(r.json.publicKey)
    expect((await cli(['keygen', '--out', prefix, '--force'])).code).toBe(0)
  })

  it('without --out prints the private key, then the summary', async () => {
    const r = await cli(['keygen'])
    expect(r.code).toBe(0)
    expect(r.out[0]).toMatch(/^-----BEGIN PRIVATE KEY-----/)
    expect(r.json).toMatchObject({ ok: true, keyId: expect.stringMatching(/^[0-9a-f]{16}$/) })
  })
})

describe('meshlimit policy validate', () => {
  it('checks a document, an Envoy configuration and a bundle offline', async () => {
    const doc = await cli(['policy', 'validate', await file('p.yaml', DOC_YAML)])
    expect(doc).toMatchObject({ code: 0, json: { ok: true, format: 'meshlimit', version: 1, policies: 1, limits: 1 } })
    const envoy = await cli(['policy', 'validate', await file('rl.yaml', 'domain: d\ndescriptors:\n  - key: k\n    detailed_metric: true\n    rate_limit: { unit: second, requests_per_unit: 3 }\n')])
    expect(envoy).toMatchObject({ code: 0, json: { ok: true, format: 'envoy', policies: 1 } })
    expect(envoy.err.join('\n')).toMatch(/warning: .*detailed_metric/)
    const bundlePath = await file('b.json', new TextDecoder().decode(encodeBundle(signBundle({ version: 4, policies: [] }, OPERATOR))))
    const unchecked = await cli(['policy', 'validate', bundlePath])
    expect(unchecked).toMatchObject({ code: 0, json: { format: 'bundle', version: 4, verified: false, keyId: OPERATOR.keyId } })
    expect((await cli(['policy', 'validate', bundlePath, '--trusted-key', OPERATOR.text])).json).toMatchObject({ ok: true, verified: true })
    expect((await cli(['policy', 'validate', bundlePath], { MESHLIMIT_TRUSTED_KEYS: ` ${OPERATOR.text} ` })).json).toMatchObject({ ok: true, verified: true })
    const other = generateOperatorKey()
    expect((await cli(['policy', 'validate', bundlePath, '--trusted-key', other.text])).json).toMatchObject({ ok: false, code: ErrorCode.BUNDLE_UNTRUSTED_KEY })
  })

  it('reports the first problem with its code and field, and exit code 1', async () => {
    const r = await cli(['policy', 'validate', await file('bad.yaml', 'policies:\n  - id: p\n    limits: [ { limt: 5, window: 1m } ]\n')])
    expect(r.code).toBe(1)
    expect(r.json).toMatchObject({ ok: false, code: ErrorCode.POLICY_INVALID, field: 'policies[0].limits[0].limt' })
    expect(r.err[0]).toMatch(/did you mean "limit"\?/)
    expect((await cli(['policy', 'validate', join(dir, 'missing.yaml')])).json).toMatchObject({ ok: false, code: ErrorCode.SOURCE_UNREADABLE })
    expect((await cli(['policy', 'validate', await file('x.yaml', 'a: [')])).json).toMatchObject({ ok: false, code: ErrorCode.POLICY_PARSE })
  })
})

describe('meshlimit policy sign', () => {
  it('prints a bundle that verifies, or writes it with --out; --version overrides', async () => {
    const src = await file('p.yaml', DOC_YAML)
    const r = await cli(['policy', 'sign', src, '--key', keyFile])
    expect(r.code).toBe(0)
    const b = openBundle(new TextEncoder().encode(r.out[r.out.length - 1]), trustedKeyMap([OPERATOR.text]))
    expect([b.version, b.keyId]).toEqual([1, OPERATOR.keyId])
    const out = join(dir, 'signed.json')
    const w = await cli(['policy', 'sign', src, '--version', '7', '--out', out], { MESHLIMIT_OPERATOR_KEY: exportPrivateKey(OPERATOR) })
    expect(w.json).toMatchObject({ ok: true, version: 7, out })
    expect(openBundle(await readFile(out), trustedKeyMap([OPERATOR.text])).version).toBe(7)
    expect((await cli(['policy', 'sign', src], { MESHLIMIT_OPERATOR_KEY_FILE: keyFile })).code).toBe(0)
  })

  it('refuses without a key, without a version, or a bad key', async () => {
    const src = await file('p.yaml', DOC_YAML)
    expect((await cli(['policy', 'sign', src])).json).toMatchObject({ ok: false, code: ErrorCode.KEY_INVALID, field: 'key' })
    const noVersion = await file('nv.yaml', DOC_YAML.replace('version: 1\n', ''))
    expect((await cli(['policy', 'sign', noVersion, '--key', keyFile])).json).toMatchObject({ ok: false, code: ErrorCode.BUNDLE_MALFORMED, field: 'content.version' })
    expect((await cli(['policy', 'sign', src, '--key', await file('bad.key', 'nope')])).json).toMatchObject({ ok: false, code: ErrorCode.KEY_INVALID })
  })
})

describe('meshlimit policy push / show', () => {
  it('signs and pushes; without a version it takes the node\'s version + 1, so a rollback is a push of old content', async () => {
    const { manager, url } = await node()
    const v1 = await cli(['policy', 'push', await file('v1.yaml', DOC_YAML), '--url', url, '--token', TOKEN, '--key', keyFile])
    expect(v1).toMatchObject({ code: 0, json: { ok: true, status: 'installed', version: 1, previousVersion: 0 } })
    const v2 = await cli(['policy', 'push', await file('v2.yaml', DOC_YAML.replace('version: 1\n', '').replace('limit: 5', 'limit: 50'))], { MESHLIMIT_ADMIN_URL: url, MESHLIMIT_ADMIN_TOKEN: TOKEN, MESHLIMIT_OPERATOR_KEY_FILE: keyFile })
    expect(v2.json).toMatchObject({ ok: true, status: 'installed', version: 2, previousVersion: 1 })
    const rollback = await cli(['policy', 'push', await file('old.yaml', DOC_YAML.replace('version: 1\n', '')), '--url', url, '--token', TOKEN, '--key', keyFile])
    expect(rollback.json).toMatchObject({ ok: true, version: 3 })
    expect(manager.hash).toBe(contentHash({ ...{ policies: [{ id: 'per-user', key: 'user', limits: [{ id: 'minute', limit: 5, window: '1m' }] }] }, version: 3 }))
    const shown = await cli(['policy', 'show', '--url', url, '--token', TOKEN])
    expect(shown.json).toMatchObject({ ok: true, version: 3, source: 'admin', keyId: OPERATOR.keyId })
  })

  it('pushes an already signed bundle as is', async () => {
    const { manager, url } = await node()
    const bundlePath = await file('b.json', new TextDecoder().decode(encodeBundle(signBundle({ version: 9, policies: [] }, OPERATOR))))
    expect((await cli(['policy', 'push', bundlePath, '--url', url, '--token', TOKEN])).json).toMatchObject({ ok: true, version: 9 })
    expect(manager.version).toBe(9)
  })

  it('reports refusals with the node\'s code and HTTP status', async () => {
    const { url } = await node()
    const src = await file('p.yaml', DOC_YAML)
    const noToken = await cli(['policy', 'push', src, '--url', url, '--key', keyFile])
    expect(noToken).toMatchObject({ code: 1, json: { ok: false, status: 401 } })
    expect(noToken.err[0]).toMatch(/--token/)
    await cli(['policy', 'push', src, '--url', url, '--token', TOKEN, '--key', keyFile, '--version', '5'])
    const stale = await cli(['policy', 'push', src, '--url', url, '--token', TOKEN, '--key', keyFile])
    expect(stale.json).toMatchObject({ ok: false, status: 409, code: ErrorCode.BUNDLE_STALE })
    const rogue = generateOperatorKey()
    const rogueKey = await file('rogue.key', exportPrivateKey(rogue))
    expect((await cli(['policy', 'push', src, '--url', url, '--token', TOKEN, '--key', rogueKey, '--version', '6'])).json).toMatchObject({ ok: false, status: 403, code: ErrorCode.BUNDLE_UNTRUSTED_KEY })
    // Nothing listens on port 1 of loopback.
    expect((await cli(['policy', 'push', src, '--url', 'http://127.0.0.1:1', '--token', TOKEN, '--key', keyFile, '--version', '6'])).json).toMatchObject({ ok: false, code: ErrorCode.SOURCE_UNREADABLE })
  })
})

describe('meshlimit policy diff', () => {
  it('names what changes and what it does to counters', async () => {
    const a = await file('a.yaml', `version: 1
policies:
  - { id: keep, key: user, limits: [ { id: m, limit: 5, window: 1m }, { id: h, limit: 50, window: 1h } ] }
  - { id: gone, key: ip, limits: [ { limit: 5, window: 1m } ] }
`)
    const b = await file('b.yaml', `version: 2
policies:
  - { id: keep, key: user, shadow: true, limits: [ { id: m, limit: 9, window: 1m }, { id: h, limit: 50, window: 2h } ] }
  - { id: new, key: route, limits: [ { limit: 5, window: 1m } ] }
`)
    const r = await cli(['policy', 'diff', a, b])
    expect(r.code).toBe(0)
    expect(r.json).toMatchObject({
      ok: true,
      fromVersion: 1,
      toVersion: 2,
      added: ['new'],
      removed: ['gone'],
      changed: [{ id: 'keep', fields: ['shadow'], limits: [{ id: 'm', change: 'ceiling' }, { id: 'h', change: 'layout' }] }]
    })
    expect(r.err.join('\n')).toMatch(/limit keep\/h: layout .* \(usage re-bucketed into the new layout\)/)
  })
})

describe('usage errors', () => {
  it('exit 2 with the usage for unknown commands and options or missing arguments; --help exits 0', async () => {
    expect((await cli(['policy'])).code).toBe(2)
    expect((await cli(['policy', 'frobnicate'])).code).toBe(2)
    expect((await cli(['policy', 'validate'])).code).toBe(2)
    expect((await cli(['policy', 'validate', 'x', '--nope'])).code).toBe(2)
    expect((await cli(['policy', 'push', 'x'])).code).toBe(2)
    expect((await cli(['policy', 'sign', 'x', '--version', 'abc', '--key', 'k'])).code).toBe(1)
    const help = await cli(['policy', '--help'])
    expect(help.code).toBe(0)
    expect(help.out[0]).toMatch(/^Usage: meshlimit policy/)
    expect((await cli(['keygen', '--help'])).code).toBe(0)
    expect(commands.policy.summary.length).toBeGreaterThan(0)
  })
})
