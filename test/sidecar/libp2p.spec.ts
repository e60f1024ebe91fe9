import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadOrCreateIdentity } from '../../gossip/identity.js'
import { generateSwarmKey } from '../../gossip/psk.js'
import { encodeBundle, generateOperatorKey, signBundle } from '../../src/policy/bundle.js'
import type { PolicyDocument } from '../../src/policy/types.js'
import { libp2pTransport, type Sidecar } from '../../src/sidecar/index.js'
import { TOKEN, check, sidecar, until } from './helpers.js'

const FALLBACK = `
policies:
  - id: per-user
    key: user
    limits: [ { limit: 30, window: 1h, algorithm: fixed-window } ]
`

const OPERATOR = generateOperatorKey()
const psk = generateSwarmKey()
const dir = mkdtempSync(join(tmpdir(), 'meshlimit-sidecar-'))
let nodes: Sidecar[] = []

beforeAll(async () => {
  // The first node listens; the others bootstrap from it, as operators start a mesh.
  const config = { limiter: { flushIntervalMs: 10 }, escalation: { enabled: false }, policy: { trustedKeys: [OPERATOR.text] } }
  const first = await sidecar(FALLBACK, config, { transport: libp2pTransport({ psk, identityFile: join(dir, 'a.key') }) })
  const rest = await Promise.all(['b', 'c'].map(async id => await sidecar(FALLBACK, config, {
    transport: libp2pTransport({ psk, bootstrap: first.node.multiaddrs(), identityFile: join(dir, `${id}.key`) })
  })))
  nodes = [first, ...rest]
  await until(() => nodes.every(n => n.node.meshNode?.membership.members().filter(m => m.state === 'alive').length === 2), 'every node to see both others alive', 10_000)
}, 30_000)
afterAll(async () => {
  await Promise.all(nodes.map(async n => { await n.close() }))
  rmSync(dir, { recursive: true, force: true })
})

const usage = (n: Sidecar, user: string, limit = 30): number => limit - n.node.limiter.peek({ user }).remaining

describe('sidecars on a libp2p mesh (TCP on 127.0.0.1)', () => {
  it('keep their peer id in the identity file', async () => {
    const { privateKey, created } = await loadOrCreateIdentity(join(dir, 'a.key'))
    expect(created).toBe(false)
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
    expect(peerIdFromPrivateKey(privateKey).toString()).toBe(nodes[0].node.id)
  })

  it('enforce one limit across the mesh through the decision API', async () => {
    let allowed = 0
    for (const [i, n] of nodes.entries()) {
      for (let k = 0; k < 10; k++) if ((await check(n.httpUrl, { descriptor: { user: 'shared' } })).json.allowed === true) allowed++
      await until(() => nodes.every(m => usage(m, 'shared') === 10 * (i + 1)), `every node to count ${10 * (i + 1)} uses of "shared"`, 10_000)
    }
    expect(allowed).toBe(30)
    for (const n of nodes) expect((await check(n.httpUrl, { descriptor: { user: 'shared' } })).json.allowed).toBe(false)
  })

  it('install a signed bundle pushed to one node\'s admin API on every node, and refuse an unsigned one', async () => {
    const doc: PolicyDocument = { version: 7, policies: [{ id: 'per-user', key: 'user', limits: [{ limit: 5, window: '1h', algorithm: 'fixed-window' }] }] }
    const bundle = encodeBundle(signBundle(doc, OPERATOR, 7))
    const res = await fetch(`${nodes[1].adminUrl as string}/admin/v1/policies`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: bundle })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ status: 'installed', version: 7 })
    await until(() => nodes.every(n => n.node.limiter.policies.version === 7), 'every node to run policy version 7', 10_000)
    for (let k = 0; k < 5; k++) expect((await check(nodes[2].httpUrl, { descriptor: { user: 'fresh' } })).json.allowed).toBe(true)
    await until(() => usage(nodes[0], 'fresh', 5) === 5, 'node a to count the 5 uses made on node c', 10_000)
    expect((await check(nodes[0].httpUrl, { descriptor: { user: 'fresh' } })).json.allowed).toBe(false)

    const forged = await fetch(`${nodes[0].adminUrl as string}/admin/v1/policies`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: encodeBundle(signBundle(doc, generateOperatorKey(), 8)) })
    expect(forged.status).toBe(403)
    expect(nodes.every(n => n.node.limiter.policies.version === 7)).toBe(true)
  })

  it('report members and addresses on the admin status', async () => {
    const res = await fetch(`${nodes[0].adminUrl as string}/admin/v1/status`, { headers: { authorization: `Bearer ${TOKEN}` } })
    const status: any = await res.json()
    expect(status.multiaddrs[0]).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//)
    expect(status.members).toHaveLength(2)
    expect(status.members.every((m: { state: string }) => m.state === 'alive')).toBe(true)
  })
})
