import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { cidrContains, ipKey, parseCidr, type Cidr } from '../../src/policy/ip.js'
import { v4 } from './arbitraries.js'

const key = (s: string, v4Prefix = 32, v6Prefix = 64) => ipKey(s, v4Prefix, v6Prefix)

function cidr (text: string): Cidr {
  const c = parseCidr(text)
  expect(c, text).toBeDefined()
  return c as Cidr
}

describe('ipKey: IPv4', () => {
  it('keys a canonical address as itself', () => {
    for (const ip of ['1.2.3.4', '0.0.0.0', '255.255.255.255', '10.0.0.1', '192.168.100.200']) expect(key(ip)).toBe(ip)
  })

  it.each([
    ['1.2.3.4', 24, '1.2.3.0/24'],
    ['1.2.3.4', 16, '1.2.0.0/16'],
    ['1.2.3.5', 31, '1.2.3.4/31'],
    ['200.1.1.1', 1, '128.0.0.0/1'],
    ['255.255.255.255', 0, '0.0.0.0/0'],
    ['192.168.1.255', 23, '192.168.0.0/23'],
    ['9.8.7.6', 32, '9.8.7.6']
  ])('keys %s by /%d as %s', (ip, prefix, expected) => {
    expect(key(ip, prefix)).toBe(expected)
  })

  it('treats octets with leading zeros as opaque keys (they read as octal elsewhere)', () => {
    for (const ip of ['01.2.3.4', '1.2.3.04', '1.2.3.00', '010.0.0.1', '0.0.0.00']) {
      expect(key(ip)).toBe(ip)
      expect(key(ip, 24)).toBe(ip)
    }
  })

  it('returns anything else unchanged, ungrouped', () => {
    for (const s of ['256.1.1.1', '1.2.3', '1.2.3.4.5', '1..2.3', '1.2.3.', '.1.2.3', '', 'abc', '1.2.3.4 ', ' 1.2.3.4', '1.2.3.4/24', '1.2.3.1000', '1.2.3.-1', '１.2.3.4']) {
      expect(key(s, 8)).toBe(s)
    }
  })
})

describe('ipKey: IPv6', () => {
  it.each([
    ['::', '0:0:0:0:0:0:0:0'],
    ['::1', '0:0:0:0:0:0:0:1'],
    ['1::', '1:0:0:0:0:0:0:0'],
    ['2001:db8::1', '2001:db8:0:0:0:0:0:1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8:0:0:0:0:0:1'],
    ['2001:DB8::ABCD', '2001:db8:0:0:0:0:0:abcd'],
    ['fe80::1%eth0', 'fe80:0:0:0:0:0:0:1'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['1:2::7:8', '1:2:0:0:0:0:7:8'],
    ['64:ff9b::1.2.3.4', '64:ff9b:0:0:0:0:102:304'],
    ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304']
  ])('reads %s (keyed whole at /128 as %s)', (ip, canonical) => {
    expect(key(ip, 32, 128)).toBe(canonical)
  })

  it.each([
    ['2001:db8:1:2:3:4:5:6', 64, '2001:db8:1:2::/64'],
    ['2001:db8:1:2:3:4:5:6', 48, '2001:db8:1::/48'],
    ['2001:db8:1:2:3:4:5:6', 0, '::/0'],
    ['2001:db8:1:2ab::', 56, '2001:db8:1:200::/56'],
    ['ffff::', 1, '8000::/1']
  ])('keys %s by /%d as %s', (ip, prefix, expected) => {
    expect(key(ip, 32, prefix)).toBe(expected)
  })

  it('groups by prefixes that end inside a hextet', () => {
    expect(key('2001:db8::7', 32, 127)).toBe(key('2001:db8::6', 32, 127))
    expect(key('2001:db8::7', 32, 127)).not.toBe(key('2001:db8::8', 32, 127))
    expect(key('2001:db8:1:1ff::', 32, 55)).toBe(key('2001:db8:1:0::', 32, 55))
    expect(key('2001:db8:1:200::', 32, 55)).not.toBe(key('2001:db8:1:0::', 32, 55))
  })

  it('groups /64 by default', () => {
    expect(key('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64')
    expect(key('2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe(key('2001:db8:1:2::'))
    expect(key('2001:db8:1:3::')).not.toBe(key('2001:db8:1:2::'))
  })

  it('keys IPv4-mapped IPv6 as the IPv4 address', () => {
    expect(key('::ffff:1.2.3.4')).toBe('1.2.3.4')
    expect(key('::FFFF:1.2.3.4')).toBe('1.2.3.4')
    expect(key('::ffff:102:304')).toBe('1.2.3.4')
    expect(key('0:0:0:0:0:ffff:1.2.3.4')).toBe('1.2.3.4')
    expect(key('::ffff:1.2.3.4', 24)).toBe('1.2.3.0/24')
    expect(key('::ffff:1.2.3.4', 32, 0)).toBe('1.2.3.4')
  })

  it('returns malformed addresses unchanged', () => {
    for (const s of ['1::2::3', '12345::', ':1', '1:', 'g::1', ':', ':::', '1:::2', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '::1:2:3:4:5:6:7:8',
      '1:2:3:4:5:6:7:8::', '::ffff:1.2.3.256', '::ffff:1.2.3', '::ffff:01.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', '1.2.3.4::', '::1.2.3.4:5', '%eth0', '2001:db8::1 ',
      '1:2:3:4:5:6:7:8:', '1::2:', '1::2:3:4:5:6:7:1.2.3.4']) {
      expect(key(s, 8, 16)).toBe(s)
    }
  })
})

describe('parseCidr and cidrContains', () => {
  it('parses blocks and bare addresses', () => {
    expect(cidr('10.0.0.0/8')).toMatchObject({ v6: false, prefix: 8 })
    expect(cidr('10.1.2.3')).toMatchObject({ v6: false, prefix: 32 })
    expect(cidr('2001:db8::/32')).toMatchObject({ v6: true, prefix: 32 })
    expect(cidr('2001:db8::1')).toMatchObject({ v6: true, prefix: 128 })
    expect(cidr('0.0.0.0/0')).toMatchObject({ v6: false, prefix: 0 })
    expect(cidr('::/0')).toMatchObject({ v6: true, prefix: 0 })
    // Mapped blocks are IPv4 blocks.
    expect(cidr('::ffff:10.0.0.0/104')).toMatchObject({ v6: false, prefix: 8 })
    expect(cidr('::ffff:10.1.2.3')).toMatchObject({ v6: false, prefix: 32 })
  })

  it('rejects malformed blocks', () => {
    for (const s of ['', 'x', '10.0.0.0/33', '10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/1000', '10.0.0.0/8/8', '10.0.0/8', '::/129', '1::2::3/64', '/8', '10.0.0.0/ 8', '01.0.0.0/8']) {
      expect(parseCidr(s), s).toBeUndefined()
    }
  })

  it('tests membership bit by bit, across hextet boundaries', () => {
    expect(cidrContains(cidr('10.0.0.0/8'), '10.255.0.1')).toBe(true)
    expect(cidrContains(cidr('10.0.0.0/8'), '11.0.0.1')).toBe(false)
    expect(cidrContains(cidr('10.128.0.0/9'), '10.127.255.255')).toBe(false)
    expect(cidrContains(cidr('10.128.0.0/9'), '10.128.0.0')).toBe(true)
    expect(cidrContains(cidr('10.1.0.0/17'), '10.1.127.255')).toBe(true)
    expect(cidrContains(cidr('10.1.0.0/17'), '10.1.128.0')).toBe(false)
    expect(cidrContains(cidr('2001:db8:8000::/33'), '2001:db8:7fff::')).toBe(false)
    expect(cidrContains(cidr('2001:db8:8000::/33'), '2001:db8:8000::1')).toBe(true)
    // Host bits written in the block do not matter.
    expect(cidrContains(cidr('10.9.9.9/8'), '10.0.0.0')).toBe(true)
  })

  it('never mixes families, counting mapped addresses as IPv4', () => {
    expect(cidrContains(cidr('0.0.0.0/0'), '::1')).toBe(false)
    expect(cidrContains(cidr('::/0'), '1.2.3.4')).toBe(false)
    expect(cidrContains(cidr('::/0'), '::ffff:1.2.3.4')).toBe(false)
    expect(cidrContains(cidr('1.2.3.0/24'), '::ffff:1.2.3.4')).toBe(true)
    expect(cidrContains(cidr('::ffff:1.2.3.0/120'), '1.2.3.4')).toBe(true)
  })

  it('contains no malformed address', () => {
    for (const s of ['', 'x', '10.0.0.01', '1::2::3', '10.0.0', '::ffff:10.0.0.256']) {
      expect(cidrContains(cidr('0.0.0.0/0'), s)).toBe(false)
      expect(cidrContains(cidr('::/0'), s)).toBe(false)
    }
  })
})

type Hextets = number[]

const hextetArb = fc.oneof(fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff }))
const addrArb: fc.Arbitrary<Hextets> = fc.oneof(
  { weight: 8, arbitrary: fc.array(hextetArb, { minLength: 8, maxLength: 8 }) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff })).map(([a, b]) => [0, 0, 0, 0, 0, 0xffff, a, b]) }
)

const isMapped = (g: Hextets) => g.slice(0, 5).every(h => h === 0) && g[5] === 0xffff

function bitsEqual (a: Hextets, b: Hextets, from: number, bits: number): boolean {
  for (let i = from; i < from + bits; i++) {
    const h = i >> 4
    const m = 0x8000 >> (i & 15)
    if ((a[h] & m) !== (b[h] & m)) return false
  }
  return true
}

/** One spelling of an address: full, compressed at any zero run, or with an IPv4 tail; hex in either case. */
const spellingArb = (g: Hextets): fc.Arbitrary<string> => fc.tuple(
  fc.constantFrom('full', 'compressed', 'mixed'), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 1, max: 8 }), fc.boolean(), fc.boolean()
).map(([form, at, len, upper, pad]) => {
  const hex = (h: number) => pad ? h.toString(16).padStart(4, '0') : h.toString(16)
  const tail = form === 'mixed' ? 6 : 8
  let text: string
  if (form !== 'full' && at + len <= tail && g.slice(at, at + len).every(h => h === 0)) {
    text = g.slice(0, at).map(hex).join(':') + '::' + g.slice(at + len, tail).map(hex).join(':')
    if (form === 'mixed') text += (at + len === tail ? '' : ':')
  } else {
    text = g.slice(0, tail).map(hex).join(':') + (form === 'mixed' ? ':' : '')
  }
  if (form === 'mixed') text += `${g[6] >> 8}.${g[6] & 255}.${g[7] >> 8}.${g[7] & 255}`
  return upper ? text.toUpperCase() : text
})

/** A second address that shares the first `k` bits with `g` (and maybe more). */
const neighbourArb = (g: Hextets) => fc.tuple(fc.integer({ min: 0, max: 128 }), fc.array(hextetArb, { minLength: 8, maxLength: 8 }))
  .map(([k, r]) => r.map((h, i) => {
    const keep = Math.max(0, Math.min(16, k - i * 16))
    const mask = keep === 0 ? 0 : (0xffff << (16 - keep)) & 0xffff
    return (g[i] & mask) | (h & ~mask & 0xffff)
  }))

const pairArb = addrArb.chain(a => fc.tuple(fc.constant(a), fc.oneof(addrArb, neighbourArb(a))))

describe('ip properties', () => {
  it('keys every spelling of an IPv6 address the same, and keys whole at /128 canonically', () => {
    fc.assert(fc.property(addrArb.chain(g => fc.tuple(fc.constant(g), spellingArb(g), spellingArb(g))), fc.integer({ min: 0, max: 128 }), ([g, s1, s2], p) => {
      expect(key(s1, 32, p)).toBe(key(s2, 32, p))
      expect(key(s1)).toBe(key(g.map(h => h.toString(16).padStart(4, '0')).join(':')))
      const whole = isMapped(g) ? v4(g[6] * 65536 + g[7]) : g.map(h => h.toString(16)).join(':')
      expect(key(s1, 32, 128)).toBe(whole)
    }), { numRuns: 500 })
  })

  it('keys two IPv6 addresses alike exactly when they share the prefix', () => {
    fc.assert(fc.property(pairArb, fc.integer({ min: 0, max: 128 }), fc.boolean(), ([a, b], p, at64) => {
      fc.pre(!isMapped(a) && !isMapped(b))
      const prefix = at64 ? 64 : p
      const sa = a.map(h => h.toString(16)).join(':')
      const sb = b.map(h => h.toString(16)).join(':')
      expect(key(sa, 32, prefix) === key(sb, 32, prefix)).toBe(bitsEqual(a, b, 0, prefix))
    }), { numRuns: 500 })
  })

  it('agrees with a bitwise reference on CIDR membership', () => {
    fc.assert(fc.property(pairArb.chain(([a, b]) => fc.tuple(fc.constant(a), fc.constant(b), spellingArb(a), spellingArb(b))), fc.integer({ min: 0, max: 128 }), ([a, b, sa, sb], p) => {
      const block = parseCidr(`${sa}/${p}`) as Cidr
      // A mapped block of /96 or longer is an IPv4 block; a mapped address is an IPv4 address.
      const blockV4 = isMapped(a) && p >= 96
      const expected = blockV4 === isMapped(b) && bitsEqual(a, b, 0, p)
      expect(cidrContains(block, sb)).toBe(expected)
    }), { numRuns: 500 })
  })

  it('keys and matches IPv4 by prefix, whether written plain or mapped', () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff })
    const v4Pair = u32.chain(a => fc.tuple(fc.constant(a), fc.oneof(u32, fc.tuple(fc.integer({ min: 0, max: 32 }), u32)
      .map(([k, r]) => k === 0 ? r : ((a & (~0 << (32 - k))) | (r & ~(~0 << (32 - k)))) >>> 0))))
    fc.assert(fc.property(v4Pair, fc.integer({ min: 0, max: 32 }), ([a, b], p) => {
      const same = p === 0 || (a >>> (32 - p)) === (b >>> (32 - p))
      const masked = p === 0 ? 0 : (a & (~0 << (32 - p))) >>> 0
      expect(key(v4(a), p)).toBe(p === 32 ? v4(a) : `${v4(masked)}/${p}`)
      expect(key(`::ffff:${v4(a)}`, p)).toBe(key(v4(a), p))
      expect(key(v4(a), p) === key(v4(b), p)).toBe(same)
      for (const block of [`${v4(a)}/${p}`, `::ffff:${v4(a)}/${96 + p}`]) {
        expect(cidrContains(parseCidr(block) as Cidr, v4(b))).toBe(same)
        expect(cidrContains(parseCidr(block) as Cidr, `::ffff:${v4(b)}`)).toBe(same)
      }
    }), { numRuns: 500 })
  })
})
