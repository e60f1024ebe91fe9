import type { IncomingHttpHeaders } from 'node:http'
import { ErrorCode, invalid } from '../errors.js'
import { cidrContains, ipKey, parseCidr, type Cidr } from '../policy/ip.js'

/** What the key helpers read from a request: node's IncomingMessage, Express and Fastify's raw request all fit. */
export interface RequestLike {
  headers: IncomingHttpHeaders
  socket?: { remoteAddress?: string | undefined } | null
  method?: string
  url?: string
}

/** Reads one value from a request; undefined when absent. */
export type KeyExtractor = (req: RequestLike) => string | undefined

/** Named address ranges accepted in `trustedProxies`. */
const NAMED_RANGES: Record<string, string[]> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
  linklocal: ['169.254.0.0/16', 'fe80::/10']
}

export interface ClientIpInit {
  /**
   * Proxies whose forwarding header is believed: addresses, CIDR blocks, or the names
   * "loopback", "private", "linklocal". The client is the nearest address in the chain
   * (walking from the socket towards the origin) that is not a trusted proxy; with no
   * trusted proxies the socket's peer address is the client and headers are ignored.
   * @default []
   */
  trustedProxies?: string[]
  /**
   * Header that carries the chain: X-Forwarded-For or RFC 7239 Forwarded (`for=`).
   * @default "x-forwarded-for"
   */
  header?: 'x-forwarded-for' | 'forwarded'
  /**
   * Group IPv4 clients by this prefix length in the returned key (e.g. 24).
   * @default 32 (the address itself)
   */
  ipv4Prefix?: number
  /**
   * Group IPv6 clients by this prefix length in the returned key (64 puts a whole
   * subscriber network, which a client can rotate addresses in, under one key).
   * @default 128 (the address itself)
   */
  ipv6Prefix?: number
}

/**
 * Strips what is not part of an address: IPv6 brackets and ports ("[::1]:80",
 * "1.2.3.4:80"), and the IPv4-mapped prefix node gives dual-stack sockets. Returns
 * undefined when the rest is not an IP address.
 */
export function normalizeIp (raw: string): string | undefined {
  let s = raw.trim()
  if (s.length === 0 || s.length > 64) return undefined
  if (s.charCodeAt(0) === 91) {
    const end = s.indexOf(']')
    if (end < 0) return undefined
    s = s.slice(1, end)
  } else {
    const colon = s.indexOf(':')
    if (colon >= 0 && colon === s.lastIndexOf(':') && s.indexOf('.') >= 0) s = s.slice(0, colon)
  }
  if (s.length > 7 && s.slice(0, 7).toLowerCase() === '::ffff:' && s.indexOf('.') > 0) s = s.slice(7)
  const zone = s.indexOf('%')
  if (zone >= 0) s = s.slice(0, zone)
  if (parseCidr(s) === undefined || s.indexOf('/') >= 0) return undefined
  return s.indexOf(':') >= 0 ? s.toLowerCase() : s
}

function parseTrusted (list: string[]): Cidr[] {
  const out: Cidr[] = []
  list.forEach((entry, i) => {
    const named = NAMED_RANGES[entry]
    for (const text of named ?? [entry]) {
      const c = parseCidr(text)
      if (c === undefined) {
        throw invalid(ErrorCode.OPTION_INVALID, `trustedProxies[${i}]`, entry, 'is not an address, a CIDR block or one of "loopback", "private", "linklocal"', 'write e.g. "10.0.0.0/8", "2001:db8::/32" or "loopback"')
      }
      out.push(c)
    }
  })
  return out
}

/** The values of Forwarded `for=` parameters, nearest proxy last (RFC 7239, quoted strings honoured). */
export function forwardedFor (header: string): string[] {
  const out: string[] = []
  let i = 0
  const n = header.length
  while (i < n) {
    // One forwarded-element: pairs separated by ';', ended by ','.
    let found: string | undefined
    for (;;) {
      while (i < n && (header[i] === ' ' || header[i] === '\t' || header[i] === ';')) i++
      const eq = header.indexOf('=', i)
      if (eq < 0) { i = n; break }
      const name = header.slice(i, eq).trim().toLowerCase()
      i = eq + 1
      let value = ''
      if (header[i] === '"') {
        i++
        while (i < n && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < n) i++
          value += header[i++]
        }
        i++
      } else {
        const start = i
        while (i < n && header[i] !== ';' && header[i] !== ',') i++
        value = header.slice(start, i).trim()
      }
      if (name === 'for' && found === undefined) found = value
      while (i < n && (header[i] === ' ' || header[i] === '\t')) i++
      if (i >= n || header[i] === ',') { i++; break }
    }
    out.push(found ?? '')
  }
  return out
}

/**
 * Extracts the client IP address. Forwarding headers are believed only from trusted
 * proxies, hop by hop: a client cannot pick its key by sending X-Forwarded-For itself.
 */
export function clientIpFrom (init: ClientIpInit = {}): KeyExtractor {
  const trusted = parseTrusted(init.trustedProxies ?? [])
  const header = init.header ?? 'x-forwarded-for'
  if (header !== 'x-forwarded-for' && header !== 'forwarded') {
    throw invalid(ErrorCode.OPTION_INVALID, 'header', header, 'must be "x-forwarded-for" or "forwarded"', 'pick the header your proxies write')
  }
  const v4 = init.ipv4Prefix ?? 32
  const v6 = init.ipv6Prefix ?? 128
  if (!Number.isInteger(v4) || v4 < 0 || v4 > 32) throw invalid(ErrorCode.OPTION_INVALID, 'ipv4Prefix', v4, 'must be an integer from 0 to 32', 'use e.g. 24, or leave it out for whole addresses')
  if (!Number.isInteger(v6) || v6 < 0 || v6 > 128) throw invalid(ErrorCode.OPTION_INVALID, 'ipv6Prefix', v6, 'must be an integer from 0 to 128', 'use e.g. 64, or leave it out for whole addresses')
  const group = v4 === 32 && v6 === 128 ? (ip: string) => ip : (ip: string) => ipKey(ip, v4, v6)
  const isTrusted = (ip: string): boolean => {
    for (let k = 0; k < trusted.length; k++) if (cidrContains(trusted[k], ip)) return true
    return false
  }

  return req => {
    const peer = req.socket?.remoteAddress
    if (peer === undefined) return undefined
    let ip = normalizeIp(peer)
    if (ip === undefined) return undefined
    if (trusted.length === 0 || !isTrusted(ip)) return group(ip)
    const raw = req.headers[header]
    const value = Array.isArray(raw) ? raw.join(',') : raw
    if (value === undefined || value.length === 0) return group(ip)
    if (header === 'x-forwarded-for') {
      // Walk from the nearest hop without splitting the whole header.
      let end = value.length
      while (end > 0) {
        const comma = value.lastIndexOf(',', end - 1)
        const hop = normalizeIp(value.slice(comma + 1, end))
        // A hop our own proxy wrote but that is not an address: stop at the last address we know.
        if (hop === undefined) return group(ip)
        ip = hop
        if (!isTrusted(ip)) return group(ip)
        end = comma < 0 ? 0 : comma
      }
      return group(ip)
    }
    const hops = forwardedFor(value)
    for (let k = hops.length - 1; k >= 0; k--) {
      const hop = normalizeIp(hops[k])
      if (hop === undefined) return group(ip)
      ip = hop
      if (!isTrusted(ip)) return group(ip)
    }
    return group(ip)
  }
}

/** First value of a request header, trimmed; undefined when absent or empty. */
export function headerValue (name: string): KeyExtractor {
  const lower = name.toLowerCase()
  return req => {
    const raw = req.headers[lower]
    const v = Array.isArray(raw) ? raw[0] : raw
    if (v === undefined) return undefined
    const t = v.trim()
    return t.length === 0 ? undefined : t
  }
}

export interface ApiKeyInit {
  /**
   * Header carrying the API key.
   * @default "x-api-key"
   */
  header?: string
  /**
   * Also accept `Authorization: Bearer <key>` when the header is absent.
   * @default false
   */
  bearer?: boolean
}

/** Extracts an API key from a header (and optionally a bearer token). */
export function apiKeyFrom (init: ApiKeyInit = {}): KeyExtractor {
  const fromHeader = headerValue(init.header ?? 'x-api-key')
  if (init.bearer !== true) return fromHeader
  return req => {
    const v = fromHeader(req)
    if (v !== undefined) return v
    const auth = req.headers.authorization
    if (auth === undefined || auth.length < 8 || auth.slice(0, 7).toLowerCase() !== 'bearer ') return undefined
    const t = auth.slice(7).trim()
    return t.length === 0 ? undefined : t
  }
}

export interface UserInit {
  /**
   * Dotted path of the user id on the request object, set by your authentication
   * middleware (e.g. "user.id" for req.user.id). Read first.
   * @default "user.id"
   */
  property?: string
  /**
   * Header carrying the user id, read when the property is absent (set it only behind
   * a proxy that authenticates and overwrites it).
   * @default none
   */
  header?: string
}

/** Extracts an authenticated user id from the request object or a trusted header. */
export function userFrom (init: UserInit = {}): KeyExtractor {
  const path = (init.property ?? 'user.id').split('.')
  const fromHeader = init.header === undefined ? undefined : headerValue(init.header)
  return req => {
    let v: unknown = req
    for (let i = 0; i < path.length && v !== undefined && v !== null; i++) v = (v as Record<string, unknown>)[path[i]]
    if (typeof v === 'string' && v.length > 0) return v
    if (typeof v === 'number' && Number.isFinite(v)) return String(v)
    return fromHeader?.(req)
  }
}

/** The request path without its query string. */
export function pathOf (req: RequestLike): string {
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  return q < 0 ? url : url.slice(0, q)
}
