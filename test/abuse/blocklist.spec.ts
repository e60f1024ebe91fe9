import { encode } from '@msgpack/msgpack'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createLoopbackNetwork, VirtualClock } from '../../src/index.js'
import { createBlocklist, type BlockEvent } from '../../src/abuse/blocklist.js'
import { createEscalation } from '../../src/abuse/escalation.js'

const T0 = 1_800_000_000_000

function mesh (n: number, opts: { latencyMs?: number } = {}) {
  const clock = new VirtualClock(T0)
  const net = createLoopbackNetwork({ clock, latencyMs: opts.latencyMs ?? 0 })
  const events: BlockEvent[][] = []
  const lists = Array.from({ length: n }, (_, i) => {
    const ev: BlockEvent[] = []
    events.push(ev)
    return createBlocklist({ clock, transport: net.connect(`p${i}`), topic: 't/blocklist', onChange: e => ev.push(e) })
  })
  const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await Promise.resolve() }
  return { clock, net, lists, events, settle }
}

describe('block list over a mesh', () => {
  it('a block on one node is enforced on every node and expires everywhere', async () => {
    const { clock, lists, events, settle } = mesh(3)
    lists[0].block('ip:203.0.113.7', 60_000, 'manual')
    await settle()
    for (const l of lists) expect(l.blocked('ip:203.0.113.7')?.reason).toBe('manual')
    expect(events[1]).toEqual([expect.objectContaining({ action: 'block', key: 'ip:203.0.113.7', local: false })])
    expect(events[0][0].local).toBe(true)
    clock.advance(60_000)
    for (const l of lists) expect(l.blocked('ip:203.0.113.7')).toBeUndefined()
  })

  it('an unblock on another node lifts the block everywhere', async () => {
    const { clock, lists, settle } = mesh(3)
    lists[0].block('k', 60_000, 'manual')
    await settle()
    clock.advance(10)
    expect(lists[2].unblock('k')).toBe(true)
    await settle()
    for (const l of lists) expect(l.blocked('k')).toBeUndefined()
    // Periodic re-publication of the blocker's entries does not bring the block back.
    clock.advance(31_000)
    await settle()
    for (const l of lists) expect(l.blocked('k')).toBeUndefined()
  })

  it('concurrent block/unblock races converge to one answer on every node', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.record({ node: fc.nat(2), op: fc.boolean(), key: fc.constantFrom('a', 'b'), gap: fc.nat(3) }), { maxLength: 12 }),
      async ops => {
        const { clock, lists } = mesh(3, { latencyMs: 5 })
        for (const o of ops) {
          if (o.op) lists[o.node].block(o.key, 10_000, `by ${o.node}`)
          else lists[o.node].unblock(o.key)
          clock.advance(o.gap)
        }
        clock.advance(100)
        for (const key of ['a', 'b']) {
          const answers = lists.map(l => l.blocked(key)?.ts ?? null)
          expect(new Set(answers).size).toBe(1)
        }
      }), { numRuns: 100 })
  })

  it('a joiner learns live blocks from the periodic re-publication', async () => {
    const { clock, net, lists, settle } = mesh(1)
    lists[0].block('k', 120_000, 'manual')
    const late = createBlocklist({ clock, transport: net.connect('late'), topic: 't/blocklist' })
    expect(late.blocked('k')).toBeUndefined()
    clock.advance(30_000)
    await settle()
    expect(late.blocked('k')?.reason).toBe('manual')
  })

  it('rejects malformed, forged-ahead and over-long entries and merges nothing from them', () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock })
    const list = createBlocklist({ clock, transport: net.connect('victim'), topic: 't/blocklist', maxBlockMs: 3_600_000 })
    const evil = net.connect('evil')
    const bad: unknown[] = [
      'not msgpack at all',
      [2, []],
      [1, [['k', T0, 1, T0 + 10]]],
      [1, [['', T0, 1, T0 + 10, '']]],
      [1, [['k', T0 + 60_000, 1, T0 + 70_000, '']]], // stamped a minute ahead
      [1, [['k', T0, 1, T0 + 7_200_000, '']]], // longer than maxBlockMs
      [1, [['k', T0, 2, T0 + 10, '']]],
      [1, [['k', T0, 1, T0 - 1, '']]],
      [1, [['x'.repeat(600), T0, 1, T0 + 10, '']]],
      [1, [['k', T0, 1, T0 + 10, 'r'.repeat(5000)]]], // a string past the decoder's bound
      [1, Array.from({ length: 1025 }, (_, i) => [`k${i}`, T0, 1, T0 + 10, ''])], // more entries than a message may hold
      [1, [['k', T0, 1, T0 + 10, new Uint8Array(4)]]], // bytes where a reason belongs
      [1, { k: 1 }]
    ]
    for (const b of bad) evil.publish('t/blocklist', typeof b === 'string' ? new TextEncoder().encode(b) : encode(b))
    expect(list.stats().messagesRejected).toBe(bad.length)
    expect(list.stats().entries).toBe(0)
    expect(net.stats.rejectedFrom.get('evil')).toBe(bad.length)
  })

  it('memory stays bounded under a flood of keys', () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock })
    const list = createBlocklist({ clock, transport: net.connect('victim'), topic: 't/blocklist', maxEntries: 100 })
    const evil = net.connect('evil')
    for (let m = 0; m < 10; m++) {
      evil.publish('t/blocklist', encode([1, Array.from({ length: 1000 }, (_, i) => [`k${m}-${i}`, T0, 1, T0 + 1000, ''])]))
    }
    expect(list.stats().entries).toBe(100)
    expect(list.stats().droppedFull).toBe(9900)
    // Once they expire, room comes back.
    clock.advance(1000)
    list.block('real', 1000, 'manual')
    expect(list.blocked('real')).toBeDefined()
  })

  it('refuses bad local input with coded errors and caps durations', () => {
    const clock = new VirtualClock(T0)
    const list = createBlocklist({ clock, maxBlockMs: 1000 })
    expect(() => list.block('', 10, 'x')).toThrow(expect.objectContaining({ code: 'MESHLIMIT_OPTION_INVALID', field: 'key' }))
    expect(() => list.block('k', 0, 'x')).toThrow(expect.objectContaining({ field: 'durationMs' }))
    expect(list.block('k', 1e12, 'x').expiresAt).toBe(T0 + 1000)
    expect(list.unblock('other')).toBe(false)
  })
})

describe('escalation', () => {
  it('blocks a client denied on many distinct policies/endpoints within the window, not one hammering one endpoint', () => {
    const clock = new VirtualClock(T0)
    const list = createBlocklist({ clock })
    const esc = createEscalation({ blocklist: list, clock, threshold: 3, windowMs: 10_000, blockMs: 60_000 })
    for (let i = 0; i < 50; i++) expect(esc.denied('ip:1', 'per-ip /a')).toBeUndefined()
    expect(list.blocked('ip:1')).toBeUndefined()
    esc.denied('ip:2', 'per-ip /a')
    esc.denied('ip:2', 'per-ip /b')
    const b = esc.denied('ip:2', 'per-ip /c')
    expect(b?.reason).toContain('escalation')
    expect(list.blocked('ip:2')?.expiresAt).toBe(T0 + 60_000)
    // Outside the window the count starts over.
    esc.denied('ip:3', 'x')
    esc.denied('ip:3', 'y')
    clock.advance(10_000)
    expect(esc.denied('ip:3', 'z')).toBeUndefined()
    expect(esc.stats().escalations).toBe(1)
  })

  it('tracks a bounded number of clients', () => {
    const clock = new VirtualClock(T0)
    const esc = createEscalation({ blocklist: createBlocklist({ clock }), clock, maxClients: 10 })
    for (let i = 0; i < 1000; i++) esc.denied(`c${i}`, 'x')
    expect(esc.stats().tracked).toBe(10)
  })
})

describe('block-list wire format', () => {
  it('arbitrary bytes and arbitrary msgpack values never throw and never merge unless valid', () => {
    const clock = new VirtualClock(T0)
    const net = createLoopbackNetwork({ clock })
    const list = createBlocklist({ clock, transport: net.connect('victim'), topic: 't/blocklist' })
    const evil = net.connect('evil')
    fc.assert(fc.property(fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.anything().map(v => { try { return encode(v) } catch { return new Uint8Array([0xc1]) } }),
      fc.array(fc.tuple(fc.string(), fc.integer(), fc.integer(), fc.integer(), fc.anything()), { maxLength: 3 }).map(es => encode([1, es]))
    ), bytes => {
      const before = list.stats()
      expect(() => { evil.publish('t/blocklist', bytes) }).not.toThrow()
      const after = list.stats()
      // Either refused, or every entry in it passed validation (then merged or ignored as expired).
      if (after.messagesRejected === before.messagesRejected) {
        for (const e of list.list()) expect(e.expiresAt - e.ts).toBeLessThanOrEqual(86_400_000)
      }
    }), { numRuns: 500 })
  })

  it('valid entries round-trip: what one node writes is what the others hold', async () => {
    await fc.assert(fc.asyncProperty(
      fc.uniqueArray(fc.record({ key: fc.string({ minLength: 1, maxLength: 40 }), ms: fc.integer({ min: 1, max: 86_400_000 }), reason: fc.string({ maxLength: 40 }) }), { selector: e => e.key, maxLength: 10 }),
      async entries => {
        const { lists, settle } = mesh(2)
        for (const e of entries) lists[0].block(e.key, e.ms, e.reason)
        await settle()
        expect(lists[1].list()).toEqual(lists[0].list().map(e => ({ ...e, replica: 'p0' })))
      }), { numRuns: 50 })
  })
})
