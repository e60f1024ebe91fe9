import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLoopbackNetwork } from '../../src/index.js'
import { loopbackTransport, type Sidecar } from '../../src/sidecar/index.js'
import { TOKEN, check, sidecar, until } from './helpers.js'

const POLICIES = `
policies:
  - id: per-user
    key: user
    limits: [ { limit: 30, window: 1h, algorithm: fixed-window } ]
`

let nodes: Sidecar[] = []

beforeAll(async () => {
  const net = createLoopbackNetwork()
  nodes = await Promise.all(['a', 'b', 'c'].map(async id => await sidecar(POLICIES, {
    limiter: { flushIntervalMs: 10 },
    escalation: { enabled: false }
  }, { transport: loopbackTransport(net, `node-${id}`) })))
})
afterAll(async () => { await Promise.all(nodes.map(async n => { await n.close() })) })

const usage = (n: Sidecar, user: string): number => 30 - n.node.limiter.peek({ user }).remaining

describe('a 3-node sidecar mesh', () => {
  it('enforces one limit across the mesh: 30 in total, whichever node requests reach', async () => {
    let allowed = 0
    for (const [i, n] of nodes.entries()) {
      for (let k = 0; k < 10; k++) if ((await check(n.httpUrl, { descriptor: { user: 'shared' } })).json.allowed === true) allowed++
      await until(() => nodes.every(m => usage(m, 'shared') === 10 * (i + 1)), `every node to see ${10 * (i + 1)} uses`)
    }
    expect(allowed).toBe(30)
    for (const n of nodes) {
      const r = await check(n.httpUrl, { descriptor: { user: 'shared' } })
      expect(r.json.allowed).toBe(false)
      expect(r.json.headers['X-RateLimit-Remaining']).toBe('0')
    }
  })

  it('bounds over-admission by staleness when all nodes are hit at once', async () => {
    // 60 concurrent requests spread over the nodes: each node may admit before hearing
    // the others, but only within one flush interval's worth of its own traffic.
    const rs = await Promise.all(Array.from({ length: 60 }, async (_, i) => await check(nodes[i % 3].httpUrl, { descriptor: { user: 'burst' } })))
    const allowed = rs.filter(r => r.json.allowed === true).length
    expect(allowed).toBeGreaterThanOrEqual(30)
    expect(allowed).toBeLessThanOrEqual(3 * 30)
    // Converged: every node sees the limit spent and denies.
    await until(() => nodes.every(m => usage(m, 'burst') === 30), 'every node to see the limit spent')
    for (const n of nodes) expect((await check(n.httpUrl, { descriptor: { user: 'burst' } })).json.allowed).toBe(false)
  })

  it('shares a block mesh-wide: blocked through one node, refused by all', async () => {
    const res = await fetch(`${nodes[0].adminUrl as string}/admin/v1/blocklist`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ key: 'user:mallory', duration: '5m', reason: 'test' })
    })
    expect(res.status).toBe(201)
    await until(() => nodes.every(n => n.node.blocklist.blocked('user:mallory') !== undefined), 'the block to reach every node')
    for (const n of nodes) expect((await check(n.httpUrl, { descriptor: { user: 'mallory' } })).json.problem.type).toBe('urn:meshlimit:problem:blocked')
  })

  it('reports peers and gossip lag in /metrics', async () => {
    const text = await (await fetch(`${nodes[1].httpUrl}/metrics`)).text()
    expect(text).toContain('meshlimit_peers 2')
    expect(text).toMatch(/meshlimit_gossip_lag_seconds \d/)
    expect(text).toMatch(/meshlimit_gossip_sent_bytes_total [1-9]/)
  })
})
