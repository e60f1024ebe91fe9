import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ReplicaTable, parseReplicaKey, replicaKey, type ReplicaId } from '../../crdt/replica.js'

const peerIdArb = fc.oneof(
  fc.stringMatching(/^12D3Koo[1-9A-HJ-NP-Za-km-z]{10,20}$/),
  fc.string({ minLength: 1, maxLength: 20 }),
  fc.tuple(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 })).map(([a, b]) => `${a}@${b}x`)
)
const replicaArb: fc.Arbitrary<ReplicaId> = fc.record({
  peerId: peerIdArb,
  incarnation: fc.oneof(fc.nat(10), fc.maxSafeNat())
})

describe('replicaKey / parseReplicaKey', () => {
  it('round-trips every replica id, including peer ids that contain @', () => {
    fc.assert(fc.property(replicaArb, r => {
      const key = replicaKey(r)
      expect(key).toBe(`${r.peerId}@${r.incarnation}`)
      expect(parseReplicaKey(key)).toEqual(r)
    }), { numRuns: 300 })
  })

  it('parses only canonical keys: whatever parses, prints back to the same string', () => {
    const suffixArb = fc.oneof(
      fc.constantFrom('', ' 1', '1 ', '\t2', '0x10', '0b1', '0o7', '1e3', '+5', '05', '00', '1.0', '1.', '.5', '-0', '-1', 'NaN', 'Infinity', '9007199254740992', '٣'),
      fc.string({ maxLength: 4 }),
      fc.nat().map(String)
    )
    fc.assert(fc.property(fc.string({ maxLength: 8 }), suffixArb, (peer, suffix) => {
      const key = `${peer}@${suffix}`
      const r = parseReplicaKey(key)
      if (r !== undefined) {
        expect(replicaKey(r)).toBe(key)
        expect(Number.isSafeInteger(r.incarnation) && r.incarnation >= 0).toBe(true)
        expect(r.peerId.length).toBeGreaterThan(0)
      }
    }), { numRuns: 500 })
  })

  it.each([
    ['no separator', 'peer'],
    ['empty', ''],
    ['empty peer id', '@3'],
    ['empty incarnation', 'peer@'],
    ['negative incarnation', 'peer@-1'],
    ['fractional incarnation', 'peer@1.5'],
    ['non-numeric incarnation', 'peer@abc'],
    ['hex incarnation', 'peer@0x10'],
    ['exponent incarnation', 'peer@1e3'],
    ['padded incarnation', 'peer@ 1'],
    ['signed incarnation', 'peer@+1'],
    ['leading zero', 'peer@01'],
    ['unsafe incarnation', 'peer@9007199254740992'],
    ['infinite incarnation', 'peer@Infinity']
  ])('rejects a key with %s', (_what, key) => {
    expect(parseReplicaKey(key)).toBeUndefined()
  })

  it('splits at the last @', () => {
    expect(parseReplicaKey('a@b@7')).toEqual({ peerId: 'a@b', incarnation: 7 })
    expect(parseReplicaKey('@@0')).toEqual({ peerId: '@', incarnation: 0 })
  })
})

describe('ReplicaTable', () => {
  it('gives the local replica index 0', () => {
    const t = new ReplicaTable({ peerId: 'me', incarnation: 4 })
    expect(t.size).toBe(1)
    expect(t.lookup('me@4')).toBe(0)
    expect(t.intern('me@4')).toBe(0)
    expect(t.keyOf(0)).toBe('me@4')
    // Another incarnation of the same peer is another replica.
    expect(t.intern('me@5')).toBe(1)
  })

  it('interns keys to dense indexes in first-seen order, stable on re-intern', () => {
    fc.assert(fc.property(replicaArb, fc.array(replicaArb.map(replicaKey), { maxLength: 40 }), (local, keys) => {
      const t = new ReplicaTable(local)
      const model = [replicaKey(local)]
      for (const k of keys) {
        const before = t.lookup(k)
        const id = t.intern(k)
        if (!model.includes(k)) model.push(k)
        expect(id).toBe(model.indexOf(k))
        expect(before === undefined ? model.length - 1 : before).toBe(id)
      }
      expect(t.size).toBe(model.length)
      model.forEach((k, i) => {
        expect(t.keyOf(i)).toBe(k)
        expect(t.lookup(k)).toBe(i)
      })
    }))
  })

  it('lookup of an unknown key is undefined and does not allocate', () => {
    const t = new ReplicaTable({ peerId: 'me', incarnation: 0 })
    expect(t.lookup('other@0')).toBeUndefined()
    expect(t.size).toBe(1)
  })

  it('keyOf an unknown index throws RangeError', () => {
    const t = new ReplicaTable({ peerId: 'me', incarnation: 0 })
    t.intern('p@1')
    expect(() => t.keyOf(2)).toThrow(RangeError)
    expect(() => t.keyOf(-1)).toThrow(RangeError)
    expect(() => t.keyOf(0.5)).toThrow(RangeError)
  })
})
