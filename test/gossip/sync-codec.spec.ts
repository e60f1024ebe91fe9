import fc from 'fast-check'
import { encode } from '@msgpack/msgpack'
import { describe, expect, it } from 'vitest'
import { parseReplicaKey } from '../../crdt/replica.js'
import {
  DEFAULT_SYNC_LIMITS, SYNC_VERSION, decodeSnapshotPage, decodeSyncRequest, encodeSnapshotPage, encodeSyncRequest,
  type SnapshotCursor, type SnapshotGroup, type SnapshotPage, type SyncLimits
} from '../../gossip/sync-codec.js'

const HASH_LIMIT = 2 ** 53
const MAX_SPAN = 65536

// --- arbitraries ----------------------------------------------------------------

const name = fc.oneof(
  fc.string({ minLength: 1, maxLength: 40 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
  fc.constantFrom('fixed/w', 'slide/w', 'conc/c#acq', 'x'.repeat(256))
)
const cursor: fc.Arbitrary<SnapshotCursor> = fc.record({ limit: name, index: fc.oneof(fc.nat(1000), fc.maxSafeNat()) })
const replicaKeyArb = fc.tuple(
  fc.oneof(fc.string({ minLength: 1, maxLength: 30 }), fc.constantFrom('peerA', '12D3KooWAbc', 'p@q')),
  fc.oneof(fc.nat(100), fc.maxSafeNat())
).map(([peer, inc]) => `${peer}@${inc}`)

/** A group whose entries satisfy the wire invariants (epochs spanning < 2^16). */
const group: fc.Arbitrary<SnapshotGroup> = fc.record({
  limit: name,
  slotMs: fc.oneof(fc.integer({ min: 1, max: 86_400_000 }), fc.double({ min: 0.001, max: 1e9, noNaN: true })),
  replicas: fc.uniqueArray(replicaKeyArb, { minLength: 1, maxLength: 5 }),
  base: fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: 2 ** 45 }), fc.constant(Number.MAX_SAFE_INTEGER - MAX_SPAN))
}).chain(({ limit, slotMs, replicas, base }) => fc.array(fc.tuple(
  fc.nat(replicas.length - 1),
  fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: HASH_LIMIT - 1 })),
  fc.nat(MAX_SPAN - 1),
  fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }))
), { maxLength: 20 }).map(quads => ({ limit, slotMs, replicas, entries: quads.flatMap(([r, h, d, c]) => [r, h, base + d, c]) })))

const page: fc.Arbitrary<SnapshotPage> = fc.record({
  next: fc.option(cursor, { nil: undefined }),
  groups: fc.array(group, { maxLength: 4 })
})

/** An independent statement of what a valid decoded page is. */
function assertValidPage (p: SnapshotPage, limits: SyncLimits = DEFAULT_SYNC_LIMITS): void {
  if (p.next !== undefined) {
    expect(typeof p.next.limit).toBe('string')
    expect(p.next.limit.length).toBeGreaterThan(0)
    expect(p.next.limit.length).toBeLessThanOrEqual(256)
    expect(Number.isSafeInteger(p.next.index) && p.next.index >= 0).toBe(true)
  }
  expect(p.groups.length).toBeLessThanOrEqual(limits.maxGroups)
  let total = 0
  for (const g of p.groups) {
    expect(typeof g.limit === 'string' && g.limit.length > 0 && g.limit.length <= 256).toBe(true)
    expect(Number.isFinite(g.slotMs) && g.slotMs > 0).toBe(true)
    expect(g.replicas.length).toBeLessThanOrEqual(limits.maxReplicas)
    for (const r of g.replicas) expect(parseReplicaKey(r)).toBeDefined()
    expect(g.entries.length % 4).toBe(0)
    total += g.entries.length / 4
    let lo = Infinity
    let hi = -Infinity
    for (let j = 0; j < g.entries.length; j += 4) {
      const [rep, hash, epoch, count] = g.entries.slice(j, j + 4)
      expect(Number.isSafeInteger(rep) && rep >= 0 && rep < g.replicas.length).toBe(true)
      expect(Number.isSafeInteger(hash) && hash >= 0 && hash < HASH_LIMIT).toBe(true)
      expect(Number.isSafeInteger(epoch) && epoch >= 0).toBe(true)
      expect(Number.isSafeInteger(count) && count >= 1).toBe(true)
      lo = Math.min(lo, epoch)
      hi = Math.max(hi, epoch)
    }
    if (g.entries.length > 0) expect(hi - lo).toBeLessThan(MAX_SPAN)
  }
  expect(total).toBeLessThanOrEqual(limits.maxEntries)
}

/** A page as raw msgpack, for malformed cases the encoder would never write. */
const rawPage = (groups: unknown[], next: unknown = null, version: unknown = SYNC_VERSION): Uint8Array => encode([version, next, groups])
/** A well-formed raw group: one replica, entries as given (epoch deltas from base 100). */
const rawGroup = (entries: unknown[], replicas: unknown[] = ['peerA@3'], overrides: Partial<Record<'limit' | 'slotMs' | 'base', unknown>> = {}): unknown[] =>
  ['limit' in overrides ? overrides.limit : 'fixed/w', 'slotMs' in overrides ? overrides.slotMs : 1000, 'base' in overrides ? overrides.base : 100, replicas, entries]

function rejects (bytes: Uint8Array, reason: RegExp, limits?: SyncLimits): void {
  const r = decodeSnapshotPage(bytes, limits)
  expect(r.ok).toBe(false)
  if (!r.ok) expect(r.reason).toMatch(reason)
}

function accepts (bytes: Uint8Array, limits?: SyncLimits): SnapshotPage {
  const r = decodeSnapshotPage(bytes, limits)
  if (!r.ok) throw new Error(`expected a valid page, got: ${r.reason}`)
  return r.page
}

// --- requests -------------------------------------------------------------------

describe('sync requests', () => {
  it('round-trip with and without a cursor (property)', () => {
    fc.assert(fc.property(fc.option(cursor, { nil: undefined }), c => {
      expect(decodeSyncRequest(encodeSyncRequest(c))).toEqual({ cursor: c })
    }), { numRuns: 300 })
  })

  it('never throw on arbitrary bytes and only return valid cursors (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1100 }), bytes => {
      const r = decodeSyncRequest(bytes)
      if (r === undefined || r.cursor === undefined) return
      expect(r.cursor.limit.length).toBeGreaterThan(0)
      expect(Number.isSafeInteger(r.cursor.index) && r.cursor.index >= 0).toBe(true)
    }), { numRuns: 1000 })
  })

  it('refuse malformed requests', () => {
    const bad: unknown[] = [
      [2, null, 0], // version
      [SYNC_VERSION, null], // too short
      [SYNC_VERSION, null, 0, 0], // too long
      [SYNC_VERSION, 'a', -1],
      [SYNC_VERSION, 'a', 1.5],
      [SYNC_VERSION, 'a', '1'],
      [SYNC_VERSION, '', 0],
      [SYNC_VERSION, 'x'.repeat(257), 0],
      [SYNC_VERSION, 7, 0],
      { v: 1 },
      'hello'
    ]
    for (const b of bad) expect(decodeSyncRequest(encode(b)), JSON.stringify(b)).toBeUndefined()
    expect(decodeSyncRequest(new Uint8Array([0xc1]))).toBeUndefined()
    expect(decodeSyncRequest(new Uint8Array(1025))).toBeUndefined()
    // Trailing bytes after a valid request.
    expect(decodeSyncRequest(new Uint8Array([...encodeSyncRequest(undefined), 0]))).toBeUndefined()
    // The boundaries are accepted.
    expect(decodeSyncRequest(encode([SYNC_VERSION, 'x'.repeat(256), Number.MAX_SAFE_INTEGER]))).toEqual({ cursor: { limit: 'x'.repeat(256), index: Number.MAX_SAFE_INTEGER } })
  })
})

// --- pages ----------------------------------------------------------------------

describe('snapshot pages', () => {
  it('round-trip (property)', () => {
    fc.assert(fc.property(page, p => {
      const r = decodeSnapshotPage(encodeSnapshotPage(p))
      expect(r).toEqual({ ok: true, page: p })
    }), { numRuns: 300 })
  })

  it('encode epochs relative to the smallest one, so any base within a group round-trips', () => {
    const p: SnapshotPage = { next: undefined, groups: [{ limit: 'l', slotMs: 10, replicas: ['a@1'], entries: [0, 1, 5_000_000_000, 2, 0, 2, 5_000_065_535, 3] }] }
    expect(accepts(encodeSnapshotPage(p))).toEqual(p)
    // One more and the span no longer fits the 16-bit delta: the decoder refuses it.
    p.groups[0].entries[6] = 5_000_065_536
    rejects(encodeSnapshotPage(p), /invalid epoch/)
  })

  it('decode never throws on arbitrary bytes, and whatever it accepts is valid (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), bytes => {
      const r = decodeSnapshotPage(bytes)
      if (r.ok) assertValidPage(r.page)
      else expect(typeof r.reason).toBe('string')
    }), { numRuns: 1000 })
  })

  it('decode never throws on mutated valid pages, and whatever it accepts is valid (property)', () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), value: fc.constant(0) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) })
    )
    let accepted = 0
    fc.assert(fc.property(page, fc.array(mutation, { minLength: 1, maxLength: 4 }), (p, ms) => {
      let bytes = Array.from(encodeSnapshotPage(p))
      for (const m of ms) {
        const at = m.at % (bytes.length + 1)
        if (m.kind === 'flip' && at < bytes.length) bytes[at] = m.value
        else if (m.kind === 'cut') bytes = bytes.slice(0, at)
        else bytes.splice(at, 0, m.value)
      }
      const r = decodeSnapshotPage(new Uint8Array(bytes))
      if (r.ok) {
        accepted++
        assertValidPage(r.page)
      }
    }), { numRuns: 1000 })
    // Sanity: the mutations do not only produce undecodable noise.
    expect(accepted).toBeGreaterThan(0)
  })

  it('refuse a wrong version or shape', () => {
    rejects(rawPage([], null, 2), /version-1/)
    rejects(rawPage([], null, 0), /version-1/)
    rejects(encode([SYNC_VERSION, null]), /version-1/)
    rejects(encode([SYNC_VERSION, null, [], 0]), /version-1/)
    rejects(encode({}), /version-1/)
    rejects(encode({ version: 1 }), /undecodable/)
    rejects(new Uint8Array([0xc1]), /undecodable/)
    rejects(new Uint8Array([...encodeSnapshotPage({ next: undefined, groups: [] }), 0x00]), /undecodable/)
    expect(decodeSnapshotPage('not bytes' as unknown as Uint8Array)).toEqual({ ok: false, reason: 'not bytes' })
    rejects(encode([SYNC_VERSION, null, 'groups']), /invalid groups/)
    rejects(rawPage([[...rawGroup([]).slice(0, 4)]]), /not a 5-element array/)
    rejects(rawPage(['group']), /not a 5-element array/)
    // The smallest valid page.
    expect(accepts(rawPage([]))).toEqual({ next: undefined, groups: [] })
  })

  it('refuse an invalid cursor', () => {
    for (const next of [['', 0], ['a', -1], ['a', 0.5], ['a'], ['a', 0, 0], [1, 0], 'a', 0, ['x'.repeat(257), 0]]) {
      rejects(rawPage([], next), /invalid cursor/)
    }
    expect(accepts(rawPage([], ['x'.repeat(256), 3])).next).toEqual({ limit: 'x'.repeat(256), index: 3 })
  })

  it('refuse invalid group headers', () => {
    rejects(rawPage([rawGroup([], [], { limit: '' })]), /invalid limit name/)
    rejects(rawPage([rawGroup([], [], { limit: 'x'.repeat(257) })]), /invalid limit name/)
    rejects(rawPage([rawGroup([], [], { limit: 5 })]), /invalid limit name/)
    for (const slotMs of [0, -1, NaN, Infinity, '1000', null]) rejects(rawPage([rawGroup([], [], { slotMs })]), /invalid slotMs/)
    for (const base of [-1, 1.5, '1', null, 2 ** 53]) rejects(rawPage([rawGroup([], [], { base })]), /invalid base epoch/)
    rejects(rawPage([rawGroup([], 'peerA@3' as unknown as unknown[])]), /invalid replica list/)
    expect(accepts(rawPage([rawGroup([], [], { limit: 'x'.repeat(256), slotMs: 0.5 })])).groups[0]).toEqual({ limit: 'x'.repeat(256), slotMs: 0.5, replicas: [], entries: [] })
  })

  it('refuse invalid replica key strings', () => {
    for (const key of ['peerA', '@3', 'peerA@', 'peerA@-1', 'peerA@1.5', 'peerA@ 1', 'peerA@0x10', 'peerA@1e3', 'peerA@01', 'peerA@9007199254740992', 'x'.repeat(255) + '@10', 42, null]) {
      rejects(rawPage([rawGroup([0, 1, 0, 1], [key])]), /invalid replica/)
    }
    // An invalid key is refused even when no entry refers to it.
    rejects(rawPage([rawGroup([0, 1, 0, 1], ['peerA@3', 'bogus'])]), /invalid replica/)
    for (const key of ['peerA@0', 'a@b@7', 'x'.repeat(250) + '@12345']) {
      expect(accepts(rawPage([rawGroup([0, 1, 0, 1], [key])])).groups[0].replicas).toEqual([key])
    }
  })

  it('refuse an entry naming a replica index beyond the table', () => {
    rejects(rawPage([rawGroup([1, 7, 0, 1])]), /entry 0 names no replica/)
    rejects(rawPage([rawGroup([0, 7, 0, 1, 2, 7, 0, 1], ['a@1', 'b@1'])]), /entry 1 names no replica/)
    rejects(rawPage([rawGroup([0, 7, 0, 1], [])]), /names no replica/)
    rejects(rawPage([rawGroup([-1, 7, 0, 1])]), /names no replica/)
    rejects(rawPage([rawGroup([0.5, 7, 0, 1])]), /names no replica/)
    expect(accepts(rawPage([rawGroup([1, 7, 0, 1], ['a@1', 'b@1'])])).groups[0].entries).toEqual([1, 7, 100, 1])
  })

  it('refuse invalid hashes, epochs and counts', () => {
    rejects(rawPage([rawGroup([0, 2 ** 53, 0, 1])]), /invalid key hash/)
    rejects(rawPage([rawGroup([0, -1, 0, 1])]), /invalid key hash/)
    rejects(rawPage([rawGroup([0, 1.5, 0, 1])]), /invalid key hash/)
    rejects(rawPage([rawGroup([0, '7', 0, 1])]), /invalid key hash/)
    // A uint64 beyond 2^53 (which decodes to an imprecise number), hand-made.
    const u64 = Uint8Array.from([0x93, SYNC_VERSION, 0xc0, 0x91, 0x95, 0xa1, 0x6c, 0x01, 0x00, 0x91, 0xa3, 0x61, 0x40, 0x31, 0x94, 0x00, 0xcf, 0x10, 0, 0, 0, 0, 0, 0, 1, 0x00, 0x01])
    rejects(u64, /invalid key hash/)
    expect(accepts(u64.map((b, i) => i === 17 ? 0x00 : b)).groups[0].entries).toEqual([0, 1, 0, 1])
    expect(accepts(rawPage([rawGroup([0, 2 ** 53 - 1, 0, 1])])).groups[0].entries).toEqual([0, 2 ** 53 - 1, 100, 1])

    rejects(rawPage([rawGroup([0, 1, MAX_SPAN, 1])]), /invalid epoch/)
    rejects(rawPage([rawGroup([0, 1, -1, 1])]), /invalid epoch/)
    rejects(rawPage([rawGroup([0, 1, 0.5, 1])]), /invalid epoch/)
    rejects(rawPage([rawGroup([0, 1, 10, 1], ['a@1'], { base: Number.MAX_SAFE_INTEGER - 5 })]), /invalid epoch/)
    expect(accepts(rawPage([rawGroup([0, 1, MAX_SPAN - 1, 1])])).groups[0].entries).toEqual([0, 1, 100 + MAX_SPAN - 1, 1])

    rejects(rawPage([rawGroup([0, 1, 0, 0])]), /invalid count/)
    rejects(rawPage([rawGroup([0, 1, 0, -3])]), /invalid count/)
    rejects(rawPage([rawGroup([0, 1, 0, 2.5])]), /invalid count/)
    rejects(rawPage([rawGroup([0, 1, 0, null])]), /invalid count/)
    rejects(rawPage([rawGroup([0, 1, 0, 2 ** 53])]), /invalid count/)
    expect(accepts(rawPage([rawGroup([0, 1, 0, Number.MAX_SAFE_INTEGER])])).groups[0].entries[3]).toBe(Number.MAX_SAFE_INTEGER)
  })

  it('refuse entries that are not quadruples', () => {
    for (const entries of [[0], [0, 1, 0], [0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1, 0], 'entries', null]) {
      rejects(rawPage([rawGroup(entries as unknown[])]), /not quadruples/)
    }
  })

  it('refuse a whole page when any part of it is bad', () => {
    // The first group is fine; the second's bad count must sink the page.
    rejects(rawPage([rawGroup([0, 1, 0, 5]), rawGroup([0, 1, 0, 0])]), /group 1 entry 0 has an invalid count/)
  })

  it('refuse oversized pages and too many groups, replicas or entries', () => {
    const limits: SyncLimits = { maxPageBytes: 200, maxEntries: 10, maxGroups: 3, maxReplicas: 4 }
    const quads = (n: number): number[] => Array.from({ length: n }, (_, i) => [0, i, 0, 1]).flat()
    // Entries are counted across groups.
    rejects(rawPage([rawGroup(quads(6)), rawGroup(quads(5))]), /more than 10 entries/, limits)
    expect(accepts(rawPage([rawGroup(quads(6)), rawGroup(quads(4))]), limits).groups).toHaveLength(2)
    rejects(rawPage([rawGroup([]), rawGroup([]), rawGroup([]), rawGroup([])]), /invalid groups/, limits)
    expect(accepts(rawPage([rawGroup([]), rawGroup([]), rawGroup([])]), limits).groups).toHaveLength(3)
    rejects(rawPage([rawGroup([], ['a@1', 'b@1', 'c@1', 'd@1', 'e@1'])]), /invalid replica list/, limits)
    expect(accepts(rawPage([rawGroup([], ['a@1', 'b@1', 'c@1', 'd@1'])]), limits).groups[0].replicas).toHaveLength(4)

    // Exactly at the byte limit is fine, one byte more is not.
    const big = rawPage([rawGroup([], ['p'.repeat(20) + '@1'])], ['n'.repeat(60), 1])
    const exact: SyncLimits = { ...DEFAULT_SYNC_LIMITS, maxPageBytes: big.byteLength }
    expect(accepts(big, exact).next?.index).toBe(1)
    rejects(big, new RegExp(`page of ${big.byteLength} bytes exceeds ${big.byteLength - 1}`), { ...exact, maxPageBytes: big.byteLength - 1 })

    // The default limits bound entries too (counted across groups, each within the array limit).
    const half = quads(DEFAULT_SYNC_LIMITS.maxEntries / 2)
    const g = { limit: 'l', slotMs: 1, replicas: ['a@1'], entries: half }
    rejects(encodeSnapshotPage({ next: undefined, groups: [g, g, { ...g, entries: [0, 1, 0, 1] }] }), /more than 262144 entries/)
    expect(accepts(encodeSnapshotPage({ next: undefined, groups: [g, g] })).groups).toHaveLength(2)
  })
})
