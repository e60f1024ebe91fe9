import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createAntiEntropy, type AntiEntropy, type AntiEntropyInit, type PullResult } from '../../gossip/anti-entropy.js'
import { createLoopbackNetwork, type LoopbackNetwork } from '../../gossip/loopback.js'
import { decodeSyncRequest, encodeSnapshotPage, encodeSyncRequest, type SnapshotCursor, type SnapshotGroup } from '../../gossip/sync-codec.js'
import type { Transport } from '../../gossip/transport.js'
import { VirtualClock } from '../../membership/clock.js'
import { seededRandom } from '../../membership/random.js'
import { createLimiter, type Limiter } from '../../src/limiter.js'
import type { PolicyDocument } from '../../src/policy/types.js'
import { stubTransport } from '../helpers/transport.js'

/** An hour boundary, so an hour of traffic from T0 stays in one fixed window. */
const T0 = 1_800_000_000_000
const SYNC = '/meshlimit/sync/1'

/** Limits large enough never to deny, so every request is admitted and totals are exact. */
const policies: PolicyDocument = {
  policies: [
    { id: 'fixed', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 1_000_000, window: '1h' }] },
    { id: 'slide', key: 'apiKey', limits: [{ id: 'w', limit: 1_000_000, window: '1h' }] },
    { id: 'local', key: 'route', scope: 'node', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 1_000_000, window: '1h' }] }
  ]
}

const desc = (k: string): Record<string, string> => ({ user: k, apiKey: k, route: k })

/** What limiter `l` believes each policy has used for key `k`. */
function used (l: Limiter, k: string): { fixed: number, slide: number, local: number } {
  const d = l.peek(desc(k), 1)
  const by = (p: string): number => {
    const s = d.limits.find(x => x.policy === p)
    if (s === undefined) throw new Error(`no ${p}`)
    return s.limit - s.remaining
  }
  return { fixed: by('fixed'), slide: by('slide'), local: by('local') }
}

/** Every live entry a limiter holds, as sortable strings (limit, slot, replica key, hash, epoch, count). */
function entries (l: Limiter, maxEntries = 1e9): string[] {
  const out: string[] = []
  let cursor: SnapshotCursor | undefined
  do {
    const page = l.snapshotPage(cursor, maxEntries)
    for (const g of page.groups) {
      for (let j = 0; j < g.entries.length; j += 4) out.push(`${g.limit}|${g.slotMs}|${g.replicas[g.entries[j]]}|${g.entries.slice(j + 1, j + 4).join('|')}`)
    }
    cursor = page.next
  } while (cursor !== undefined)
  return out.sort()
}

const settle = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

interface Node { id: string, limiter: Limiter, ae: AntiEntropy, t: Transport }

/**
 * A limiter and its anti-entropy on the loopback network. Limiters gossip counters
 * only with nodes given the same `gossip` topic; by default each has a private one,
 * so anti-entropy is the only way state moves.
 */
function node (net: LoopbackNetwork, clock: VirtualClock, id: string, o: { gossip?: string, incarnation?: number, ae?: Partial<AntiEntropyInit> } = {}): Node {
  const t = net.connect(id)
  const limiter = createLimiter({ clock, policies, transport: t, topic: o.gossip ?? `private/${id}`, incarnation: o.incarnation ?? 1, republishIntervalMs: 0 })
  const ae = createAntiEntropy({ transport: t, clock, state: limiter, pullIntervalMs: 0, ...o.ae })
  ae.start()
  return { id, limiter, ae, t }
}

/** `n` random admitted requests over `nodes` (time moving 0-3 s each), added to `truth`. */
function drive (clock: VirtualClock, nodes: Limiter[], seed: number, n: number, keys: number, truth: Map<string, number>): void {
  const rnd = seededRandom(seed)
  for (let r = 0; r < n; r++) {
    clock.advance(Math.floor(rnd() * 3000))
    const at = Math.floor(rnd() * nodes.length)
    const k = `k${Math.floor(rnd() * keys)}`
    const cost = 1 + Math.floor(rnd() * 4)
    expect(nodes[at].check(desc(k), cost).allowed).toBe(true)
    truth.set(k, (truth.get(k) ?? 0) + cost)
  }
}

/** A two-node mesh (b, c) that gossips, with traffic on both, fully exchanged. */
function gossipingPair (seed: number): { clock: VirtualClock, net: LoopbackNetwork, b: Node, c: Node, truth: Map<string, number> } {
  const clock = new VirtualClock(T0)
  const net = createLoopbackNetwork({ clock })
  const b = node(net, clock, 'b', { gossip: 'counters' })
  const c = node(net, clock, 'c', { gossip: 'counters' })
  const truth = new Map<string, number>()
  drive(clock, [b.limiter, c.limiter], seed, 300, 25, truth)
  b.limiter.flush()
  c.limiter.flush()
  // Sanity: gossip (latency 0, synchronous) gave b everything c admitted.
  for (const [k, total] of truth) expect(used(b.limiter, k).fixed).toBe(total)
  return { clock, net, b, c, truth }
}

describe('anti-entropy pulls', () => {
  it("gives a new node exactly its peer's view, including the counts of a node that died", async () => {
    const { clock, net, b, c, truth } = gossipingPair(1)
    const cOwn = entries(c.limiter).filter(e => e.includes('|c@1|'))
    expect(cOwn.length).toBeGreaterThan(0)
    c.limiter.close()
    c.ae.stop()
    net.disconnect('c')

    const a = node(net, clock, 'a')
    for (const k of truth.keys()) expect(used(a.limiter, k)).toEqual({ fixed: 0, slide: 0, local: 0 })
    const want = entries(b.limiter)
    const r = await a.ae.pull(['b'])
    expect(r).toEqual({ peers: 1, failed: 0, pages: 1, merged: want.length })
    expect(a.ae.stats).toMatchObject({ pagesPulled: 1, pullsFailed: 0, entriesMerged: want.length, rejectedPages: 0 })
    expect(b.ae.stats.pagesServed).toBe(1)
    for (const [k, total] of truth) {
      const ua = used(a.limiter, k)
      const ub = used(b.limiter, k)
      expect(ua.fixed).toBe(total)
      expect(ua.slide).toBe(total)
      expect({ fixed: ua.fixed, slide: ua.slide }).toEqual({ fixed: ub.fixed, slide: ub.slide })
      // Node-scoped limits are this node's own business: never pulled.
      expect(ua.local).toBe(0)
    }
    expect(entries(a.limiter)).toEqual(want)
    // The dead node's own entries came through b.
    for (const e of cOwn) expect(entries(a.limiter)).toContain(e)
  })

  it('gives a restarted node back the counts of its previous incarnation', async () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock })
    const b1 = node(net, clock, 'b', { gossip: 'counters', incarnation: 1 })
    const c = node(net, clock, 'c', { gossip: 'counters' })
    const truth = new Map<string, number>()
    drive(clock, [b1.limiter], 2, 100, 10, truth)
    b1.limiter.flush()
    b1.limiter.close()
    b1.ae.stop()
    net.disconnect('b')

    const b2 = node(net, clock, 'b', { gossip: 'counters', incarnation: 2 })
    for (const k of truth.keys()) expect(used(b2.limiter, k).fixed).toBe(0)
    expect((await b2.ae.pull(['c'])).failed).toBe(0)
    for (const [k, total] of truth) expect(used(b2.limiter, k)).toMatchObject({ fixed: total, slide: total })
    expect(entries(b2.limiter).every(e => e.includes('|b@1|'))).toBe(true)
    // New traffic counts on top, under the new incarnation.
    const k = [...truth.keys()][0]
    b2.limiter.check(desc(k), 5)
    expect(used(b2.limiter, k).fixed).toBe((truth.get(k) as number) + 5)
    expect(entries(b2.limiter).some(e => e.includes('|b@2|'))).toBe(true)
    b2.limiter.flush()
    expect(used(c.limiter, k).fixed).toBe((truth.get(k) as number) + 5)
  })

  it('gives the same result whatever the page size', async () => {
    const { clock, net, b, truth } = gossipingPair(3)
    // b also serves small pages on a second protocol.
    const small = createAntiEntropy({ transport: b.t, clock, state: b.limiter, protocol: '/sync/small', maxEntriesPerPage: 5, pullIntervalMs: 0 })
    small.start()
    const want = entries(b.limiter)
    const a1 = node(net, clock, 'a1', { ae: { protocol: '/sync/small' } })
    const a2 = node(net, clock, 'a2')
    const r1 = await a1.ae.pull(['b'])
    const r2 = await a2.ae.pull(['b'])
    expect(r2).toMatchObject({ peers: 1, failed: 0, pages: 1, merged: want.length })
    expect(r1.peers).toBe(1)
    expect(r1.merged).toBe(want.length)
    expect(r1.pages).toBeGreaterThan(want.length / 20)
    expect(r1.pages).toBeLessThanOrEqual(Math.ceil(want.length / 5))
    expect(small.stats.pagesServed).toBe(r1.pages)
    expect(entries(a1.limiter)).toEqual(want)
    expect(entries(a2.limiter)).toEqual(want)
    for (const [k, total] of truth) {
      expect(used(a1.limiter, k)).toEqual(used(a2.limiter, k))
      expect(used(a1.limiter, k).fixed).toBe(total)
    }
  })

  it('pages through every live entry exactly once, whatever maxEntries (property)', () => {
    const { b } = gossipingPair(4)
    const all = entries(b.limiter)
    expect(all.length).toBeGreaterThan(50)
    fc.assert(fc.property(fc.integer({ min: 1, max: 60 }), max => {
      const got: string[] = []
      let cursor: SnapshotCursor | undefined
      let pages = 0
      do {
        const page = b.limiter.snapshotPage(cursor, max)
        const n = page.groups.reduce((s, g) => s + g.entries.length / 4, 0)
        // Every page but the last is full; none carries an empty group.
        if (page.next !== undefined) expect(n).toBeGreaterThanOrEqual(max)
        for (const g of page.groups) {
          expect(g.entries.length).toBeGreaterThan(0)
          // The page-local replica table lists only replicas the entries use.
          expect(new Set(g.entries.filter((_, j) => j % 4 === 0)).size).toBe(g.replicas.length)
          for (let j = 0; j < g.entries.length; j += 4) got.push(`${g.limit}|${g.slotMs}|${g.replicas[g.entries[j]]}|${g.entries.slice(j + 1, j + 4).join('|')}`)
        }
        cursor = page.next
        expect(++pages).toBeLessThanOrEqual(all.length)
      } while (cursor !== undefined)
      expect(got.slice().sort()).toEqual(all)
    }), { numRuns: 60 })
    // A cursor naming a limit the node does not run restarts from the beginning.
    const restarted = b.limiter.snapshotPage({ limit: 'gone/w', index: 3 }, 1e9)
    expect(restarted.next).toBeUndefined()
    expect(restarted.groups.reduce((s, g) => s + g.entries.length / 4, 0)).toBe(all.length)
  })

  it('changes nothing when pulled twice or from several peers holding the same counts (max-merge)', async () => {
    const { clock, net, b, truth } = gossipingPair(5)
    const want = entries(b.limiter)
    const a = node(net, clock, 'a')
    const both = await a.ae.pull(['b', 'c'])
    expect(both).toMatchObject({ peers: 2, failed: 0, pages: 2 })
    // c holds the same counts as b: its page raised nothing.
    expect(both.merged).toBe(want.length)
    for (const [k, total] of truth) expect(used(a.limiter, k)).toMatchObject({ fixed: total, slide: total })
    const again = await a.ae.pull(['b', 'c', 'b'])
    expect(again).toEqual({ peers: 3, failed: 0, pages: 3, merged: 0 })
    expect(entries(a.limiter)).toEqual(want)
    for (const [k, total] of truth) expect(used(a.limiter, k)).toMatchObject({ fixed: total, slide: total })
    // b pulling its own counts back from a (an echo of its own replica) changes nothing either.
    expect((await b.ae.pull(['a'])).merged).toBe(0)
    expect(entries(b.limiter)).toEqual(want)
    expect(await a.ae.pull([])).toEqual({ peers: 0, failed: 0, pages: 0, merged: 0 })
  })

  it('joins the counts of limiters that never gossiped into the sum of all traffic (property)', async () => {
    const request = fc.record({ node: fc.nat(3), key: fc.nat(5), cost: fc.integer({ min: 1, max: 5 }), dt: fc.nat(5000) })
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 2, max: 4 }), fc.array(request, { maxLength: 80 }), fc.constantFrom('all' as const, 'ring' as const), fc.integer({ min: 1, max: 30 }),
      async (n, traffic, topology, pageSize) => {
        const clock = new VirtualClock(T0)
        const net = createLoopbackNetwork({ clock })
        const nodes = Array.from({ length: n }, (_, i) => {
          const id = `n${i}`
          // The limiter replicates nowhere (stub transport); only anti-entropy moves state.
          const limiter = createLimiter({ clock, policies, transport: stubTransport(id), incarnation: 1 })
          const ae = createAntiEntropy({ transport: net.connect(id), clock, state: limiter, maxEntriesPerPage: pageSize, pullIntervalMs: 0 })
          ae.start()
          return { id, limiter, ae }
        })
        const truth = new Map<string, number>()
        const own = nodes.map(() => new Map<string, number>())
        for (const t of traffic) {
          clock.advance(t.dt)
          const k = `k${t.key}`
          expect(nodes[t.node % n].limiter.check(desc(k), t.cost).allowed).toBe(true)
          truth.set(k, (truth.get(k) ?? 0) + t.cost)
          own[t.node % n].set(k, (own[t.node % n].get(k) ?? 0) + t.cost)
        }
        const results: PullResult[] = []
        if (topology === 'all') {
          for (const x of nodes) results.push(await x.ae.pull(nodes.filter(y => y !== x).map(y => y.id)))
        } else {
          // Each node only ever pulls from its successor: third-party entries travel round the ring.
          for (let round = 0; round < n - 1; round++) {
            for (let i = 0; i < n; i++) results.push(await nodes[i].ae.pull([nodes[(i + 1) % n].id]))
          }
        }
        expect(results.every(r => r.failed === 0)).toBe(true)
        const reference = entries(nodes[0].limiter)
        for (const [i, x] of nodes.entries()) {
          for (const [k, total] of truth) {
            expect(used(x.limiter, k)).toEqual({ fixed: total, slide: total, local: own[i].get(k) ?? 0 })
          }
          expect(entries(x.limiter)).toEqual(reference)
        }
        // Once joined, further pulls raise nothing.
        for (const x of nodes) expect((await x.ae.pull(nodes.filter(y => y !== x).map(y => y.id))).merged).toBe(0)
      }), { numRuns: 30 })
  })
})

describe('anti-entropy against bad peers', () => {
  /** A group that would merge fine: one entry of the fixed limit for key k0. */
  function validGroup (limiter: Limiter, count: number): SnapshotGroup {
    const page = limiter.snapshotPage(undefined, 1e9)
    const g = page.groups.find(x => x.limit === 'fixed/w') as SnapshotGroup
    return { limit: g.limit, slotMs: g.slotMs, replicas: ['evil@1'], entries: [0, g.entries[1], g.entries[2], count] }
  }

  function setup (): { clock: VirtualClock, net: LoopbackNetwork, a: Node, template: SnapshotGroup } {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock })
    const a = node(net, clock, 'a', { ae: { maxPages: 6 } })
    // A throwaway node to learn a real hash and epoch for k0.
    const scratch = createLimiter({ clock, policies, transport: stubTransport('scratch'), incarnation: 1 })
    scratch.check(desc('k0'), 1)
    return { clock, net, a, template: validGroup(scratch, 7) }
  }

  it('counts a peer answering garbage as failed and merges nothing from it', async () => {
    const { net, a, template } = setup()
    net.connect('garbage').handle(SYNC, () => Uint8Array.from([0xc1, 0x00]))
    // A page whose first group is fine and whose second is not: refused as a whole.
    net.connect('half').handle(SYNC, () => encodeSnapshotPage({ next: undefined, groups: [template, { ...template, entries: [0, 1, 1, 0] }] }))
    // A page whose group names a replica beyond its table.
    net.connect('dangling').handle(SYNC, () => encodeSnapshotPage({ next: undefined, groups: [{ ...template, entries: [3, 1, 1, 1] }] }))
    const r = await a.ae.pull(['garbage', 'half', 'dangling'])
    expect(r).toEqual({ peers: 0, failed: 3, pages: 0, merged: 0 })
    expect(a.ae.stats).toMatchObject({ rejectedPages: 3, pullsFailed: 3, pagesPulled: 0, entriesMerged: 0 })
    expect(entries(a.limiter)).toEqual([])
    expect(used(a.limiter, 'k0').fixed).toBe(0)
    expect(a.limiter.stats().mergedEntries).toBe(0)
  })

  it('keeps the valid pages of a peer that fails on a later page, and counts it as failed', async () => {
    const { net, a, template } = setup()
    let calls = 0
    net.connect('flaky').handle(SYNC, () => ++calls === 1
      ? encodeSnapshotPage({ next: { limit: 'fixed/w', index: 1 }, groups: [template] })
      : Uint8Array.from([0xc1]))
    const r = await a.ae.pull(['flaky'])
    expect(r).toEqual({ peers: 0, failed: 1, pages: 1, merged: 1 })
    expect(used(a.limiter, 'k0').fixed).toBe(7)
  })

  it('counts unreachable peers, peers that do not serve the protocol and peers that time out as failed', async () => {
    const { clock, net, a } = setup()
    net.connect('mute') // connected, serves nothing
    net.connect('slow').handle(SYNC, async () => await new Promise<Uint8Array>(() => {}))
    let done: PullResult | undefined
    void a.ae.pull(['nobody', 'mute', 'slow']).then(r => { done = r })
    await settle()
    expect(done).toBeUndefined()
    clock.advance(4999)
    await settle()
    expect(done).toBeUndefined()
    clock.advance(1)
    await settle()
    expect(done).toEqual({ peers: 0, failed: 3, pages: 0, merged: 0 })
    expect(a.ae.stats).toMatchObject({ pullsFailed: 3, rejectedPages: 0 })
    expect(entries(a.limiter)).toEqual([])
  })

  it('bounds a pull from a peer that always answers with a next cursor by maxPages', async () => {
    const { net, a, template } = setup()
    const cursors: Array<SnapshotCursor | undefined> = []
    net.connect('liar').handle(SYNC, data => {
      const req = decodeSyncRequest(data)
      if (req === undefined) throw new Error('bad request')
      cursors.push(req.cursor)
      return encodeSnapshotPage({ next: { limit: 'fixed/w', index: cursors.length }, groups: [template] })
    })
    const r = await a.ae.pull(['liar'])
    // Bounded, and the liar counts as failed: it still had pages after maxPages.
    expect(r).toMatchObject({ pages: 6, merged: 1, peers: 0, failed: 1 })
    expect(cursors).toHaveLength(6)
    // Each request carries the cursor of the page before.
    expect(cursors).toEqual([undefined, ...[1, 2, 3, 4, 5].map(index => ({ limit: 'fixed/w', index }))])
    expect(used(a.limiter, 'k0').fixed).toBe(7)
  })

  it('refuses a malformed request without serving a page', async () => {
    const { clock, net } = setup()
    const b = node(net, clock, 'b')
    b.limiter.check(desc('k1'), 2)
    const asker = net.connect('asker')
    await expect(asker.request('b', SYNC, Uint8Array.from([0x93, 0x02, 0xc0, 0x00]), 1000)).rejects.toThrow(/malformed sync request/)
    expect(b.ae.stats.pagesServed).toBe(0)
    const ok = await asker.request('b', SYNC, encodeSyncRequest(undefined), 1000)
    expect(ok.byteLength).toBeGreaterThan(10)
    expect(b.ae.stats.pagesServed).toBe(1)
  })
})

describe('snapshot contents and background pulls', () => {
  it('sends only live entries: slots that left the window are not in any page', async () => {
    const shortPolicies: PolicyDocument = {
      policies: [
        { id: 'fixed', key: 'user', limits: [{ id: 'w', algorithm: 'fixed-window', limit: 1_000_000, window: '1h' }] },
        // 10 s slots, 7 retained.
        { id: 'short', key: 'apiKey', limits: [{ id: 'w', limit: 1_000_000, window: '1m', slots: 6 }] }
      ]
    }
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock })
    const bt = net.connect('b')
    const b = createLimiter({ clock, policies: shortPolicies, transport: bt, topic: 'private/b', incarnation: 1 })
    createAntiEntropy({ transport: bt, clock, state: b, pullIntervalMs: 0 }).start()
    b.check({ user: 'k0', apiKey: 'k0' }, 3)
    clock.advance(30_000)
    b.check({ user: 'k1', apiKey: 'k1' }, 2)
    clock.advance(40_000) // k0's slot (epoch of T0) has left the 7 retained slots of 'short'
    const nowEpoch = Math.floor(clock.now() / 10_000)
    const page = b.snapshotPage(undefined, 1e9)
    const short = page.groups.find(g => g.limit === 'short/w') as SnapshotGroup
    expect(short.entries).toHaveLength(4)
    expect(short.entries[2]).toBe(T0 / 10_000 + 3)
    expect(short.entries[3]).toBe(2)
    for (let j = 2; j < short.entries.length; j += 4) expect(short.entries[j]).toBeGreaterThan(nowEpoch - 7)
    const fixed = page.groups.find(g => g.limit === 'fixed/w') as SnapshotGroup
    expect(fixed.entries.filter((_, j) => j % 4 === 3).sort()).toEqual([2, 3])

    const at = net.connect('a')
    const a = createLimiter({ clock, policies: shortPolicies, transport: at, topic: 'private/a', incarnation: 1 })
    const aae = createAntiEntropy({ transport: at, clock, state: a, pullIntervalMs: 0 })
    expect(await aae.pull(['b'])).toMatchObject({ failed: 0, merged: 3 })
    const view = (k: string): Record<string, number> => Object.fromEntries(a.peek({ user: k, apiKey: k }).limits.map(s => [s.policy, s.limit - s.remaining]))
    expect(view('k0')).toEqual({ fixed: 3, short: 0 })
    expect(view('k1')).toEqual({ fixed: 2, short: 2 })

    // Two hours on, nothing is live: the page is empty and a pull merges nothing.
    clock.advance(2 * 3_600_000)
    expect(b.snapshotPage(undefined, 1e9)).toEqual({ next: undefined, groups: [] })
    const ct = net.connect('c')
    const c = createLimiter({ clock, policies: shortPolicies, transport: ct, topic: 'private/c', incarnation: 1 })
    expect(await createAntiEntropy({ transport: ct, clock, state: c, pullIntervalMs: 0 }).pull(['b'])).toEqual({ peers: 1, failed: 0, pages: 1, merged: 0 })
  })

  it('pulls in the background every pullIntervalMs (jittered) from a peer, until stopped', async () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock })
    const b = node(net, clock, 'b')
    const truth = new Map<string, number>()
    drive(clock, [b.limiter], 6, 50, 8, truth)
    const startedAt = clock.now()
    const a = node(net, clock, 'a', { ae: { pullIntervalMs: 1000, random: seededRandom(9) } })
    const step = async (ms: number): Promise<void> => {
      for (let t = 0; t < ms; t += 50) {
        clock.advance(50)
        await settle()
      }
    }
    await step(700) // the first pull comes 750-1250 ms after start
    expect(a.ae.stats.pagesPulled).toBe(0)
    expect(b.ae.stats.pagesServed).toBe(0)
    await step(600)
    expect(a.ae.stats.pagesPulled).toBe(1)
    expect(clock.now() - startedAt).toBe(1300)
    for (const [k, total] of truth) expect(used(a.limiter, k).fixed).toBe(total)

    await step(10_000)
    // 10 s at 750-1250 ms per pull.
    expect(a.ae.stats.pagesPulled - 1).toBeGreaterThanOrEqual(8)
    expect(a.ae.stats.pagesPulled - 1).toBeLessThanOrEqual(14)
    expect(b.ae.stats.pagesServed).toBe(a.ae.stats.pagesPulled)

    a.ae.stop()
    const pulled = a.ae.stats.pagesPulled
    await step(10_000)
    expect(a.ae.stats.pagesPulled).toBe(pulled)
    expect(b.ae.stats.pagesServed).toBe(pulled)
    // Stopped, a no longer serves the protocol either.
    expect(await b.ae.pull(['a'])).toMatchObject({ peers: 0, failed: 1 })

    // pullIntervalMs 0: no background pulls at all.
    const d = node(net, clock, 'd')
    await step(5000)
    expect(d.ae.stats.pagesPulled).toBe(0)
  })
})
