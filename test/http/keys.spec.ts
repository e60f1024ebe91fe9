import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { apiKeyFrom, clientIpFrom, forwardedFor, normalizeIp, userFrom, type RequestLike } from '../../src/http/keys.js'

const req = (peer: string | undefined, headers: Record<string, string | string[]> = {}, extra: Record<string, unknown> = {}): RequestLike =>
  ({ headers, socket: { remoteAddress: peer }, ...extra }) as RequestLike

describe('normalizeIp', () => {
  it('strips brackets, ports, zones and the IPv4-mapped prefix; refuses non-addresses', () => {
    expect(normalizeIp('::ffff:127.0.0.1')).toBe('127.0.0.1')
    expect(normalizeIp('[2001:DB8::1]:443')).toBe('2001:db8::1')
    expect(normalizeIp('192.0.2.1:8080')).toBe('192.0.2.1')
    expect(normalizeIp(' 10.0.0.1 ')).toBe('10.0.0.1')
    expect(normalizeIp('fe80::1%eth0')).toBe('fe80::1')
    for (const bad of ['unknown', '_hidden', '', '1.2.3', '10.0.0.0/8', 'x'.repeat(100)]) expect(normalizeIp(bad)).toBeUndefined()
  })
})

describe('clientIpFrom', () => {
  it('without trusted proxies the socket address is the client, whatever the headers say', () => {
    const ip = clientIpFrom()
    expect(ip(req('::ffff:203.0.113.9', { 'x-forwarded-for': '1.1.1.1' }))).toBe('203.0.113.9')
  })

  it('believes X-Forwarded-For only hop by hop from trusted proxies', () => {
    const ip = clientIpFrom({ trustedProxies: ['10.0.0.0/8', 'loopback'] })
    // Client spoofs 6.6.6.6; the edge proxy 10.0.0.2 appended the real peer 203.0.113.7.
    expect(ip(req('127.0.0.1', { 'x-forwarded-for': '6.6.6.6, 203.0.113.7, 10.0.0.2' }))).toBe('203.0.113.7')
    // An untrusted peer's header is ignored.
    expect(ip(req('198.51.100.1', { 'x-forwarded-for': '6.6.6.6' }))).toBe('198.51.100.1')
    // Every hop trusted: the origin-most address.
    expect(ip(req('127.0.0.1', { 'x-forwarded-for': '10.1.1.1, 10.0.0.2' }))).toBe('10.1.1.1')
    // Garbage written where our proxy should have written an address: stop at the last known one.
    expect(ip(req('127.0.0.1', { 'x-forwarded-for': '6.6.6.6, garbage' }))).toBe('127.0.0.1')
    // Several header lines are one list.
    expect(ip(req('127.0.0.1', { 'x-forwarded-for': ['6.6.6.6', '203.0.113.8'] }))).toBe('203.0.113.8')
  })

  it('reads RFC 7239 Forwarded, with quoted IPv6 and ports', () => {
    const ip = clientIpFrom({ trustedProxies: ['loopback', '10.0.0.0/8'], header: 'forwarded' })
    expect(ip(req('127.0.0.1', { forwarded: 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.3;by=10.0.0.1' }))).toBe('2001:db8:cafe::17')
    expect(ip(req('127.0.0.1', { forwarded: 'for=unknown' }))).toBe('127.0.0.1')
    expect(forwardedFor('for=a;proto=http, by=x;for="b,c", proto=https')).toEqual(['a', 'b,c', ''])
  })

  it('groups IPv6 clients by prefix when asked', () => {
    const ip = clientIpFrom({ ipv6Prefix: 64 })
    expect(ip(req('2001:db8:1:2:aaaa::1'))).toBe('2001:db8:1:2::/64')
    expect(ip(req('2001:db8:1:2:bbbb::9'))).toBe('2001:db8:1:2::/64')
    expect(ip(req('203.0.113.5'))).toBe('203.0.113.5')
  })

  it('a client cannot choose its key: with any header, the answer is the first untrusted hop from the socket', () => {
    const addr = fc.tuple(fc.nat(255), fc.nat(255)).map(([a, b]) => `198.51.${a}.${b}`)
    const proxy = fc.nat(255).map(a => `10.0.0.${a}`)
    fc.assert(fc.property(fc.array(fc.oneof(addr, fc.string({ maxLength: 12 }))), addr, fc.array(proxy, { maxLength: 3 }), (spoofed, real, proxies) => {
      const ip = clientIpFrom({ trustedProxies: ['10.0.0.0/8', '127.0.0.1'] })
      const chain = [...spoofed, real, ...proxies].join(', ')
      expect(ip(req('127.0.0.1', { 'x-forwarded-for': chain }))).toBe(real)
    }))
  })

  it('refuses bad options with a coded error', () => {
    expect(() => clientIpFrom({ trustedProxies: ['10.0.0.0/33'] })).toThrow(expect.objectContaining({ code: 'MESHLIMIT_OPTION_INVALID', field: 'trustedProxies[0]' }))
    expect(() => clientIpFrom({ ipv6Prefix: 129 })).toThrow(expect.objectContaining({ field: 'ipv6Prefix' }))
  })
})

describe('api key and user extractors', () => {
  it('reads the API key header, and a bearer token only when enabled', () => {
    expect(apiKeyFrom()(req('1.1.1.1', { 'x-api-key': ' k1 ' }))).toBe('k1')
    expect(apiKeyFrom()(req('1.1.1.1', { authorization: 'Bearer t' }))).toBeUndefined()
    expect(apiKeyFrom({ bearer: true })(req('1.1.1.1', { authorization: 'Bearer t2' }))).toBe('t2')
    expect(apiKeyFrom({ header: 'X-Key' })(req('1.1.1.1', { 'x-key': 'k3' }))).toBe('k3')
  })

  it('reads the user id from the request object, then the header', () => {
    expect(userFrom()(req('1.1.1.1', {}, { user: { id: 42 } }))).toBe('42')
    expect(userFrom({ header: 'x-user' })(req('1.1.1.1', { 'x-user': 'u9' }))).toBe('u9')
    expect(userFrom()(req('1.1.1.1', { 'x-user': 'u9' }))).toBeUndefined()
  })
})
