/**
 * IP address parsing for keys and CIDR matches, written for the hot path: no regular
 * expressions and no intermediate arrays; the only allocation is the returned key.
 */

const scratch = new Uint16Array(8)

/** Parses dotted-quad IPv4 in s[from, to) to an unsigned 32-bit number, or -1. */
function parseV4 (s: string, from: number, to: number): number {
  let value = 0
  let part = 0
  let digits = 0
  let dots = 0
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1
      value = value * 256 + part
      part = 0
      digits = 0
      dots++
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1 // no leading zeros: "01" is ambiguous (octal)
      part = part * 10 + (c - 48)
      if (part > 255 || ++digits > 3) return -1
    } else return -1
  }
  if (digits === 0 || dots !== 3) return -1
  return value * 256 + part
}

/** Parses IPv6 (with "::", an embedded IPv4 tail and an optional %zone) into `out`. */
function parseV6 (s: string, out: Uint16Array): boolean {
  let end = s.indexOf('%')
  if (end < 0) end = s.length
  if (end < 2) return false
  let groups = 0
  let gap = -1
  let i = 0
  if (s.charCodeAt(0) === 58) {
    if (s.charCodeAt(1) !== 58) return false
    gap = 0
    i = 2
    if (i === end) { out.fill(0); return true }
  }
  while (i < end) {
    if (groups === 8) return false
    let j = i
    let v = 0
    while (j < end && j - i < 5) {
      const c = s.charCodeAt(j)
      let d: number
      if (c >= 48 && c <= 57) d = c - 48
      else if (c >= 97 && c <= 102) d = c - 87
      else if (c >= 65 && c <= 70) d = c - 55
      else break
      v = v * 16 + d
      j++
    }
    if (j < end && s.charCodeAt(j) === 46) {
      // Embedded IPv4 in the last 32 bits.
      if (groups > 6) return false
      const v4 = parseV4(s, i, end)
      if (v4 < 0) return false
      out[groups++] = v4 >>> 16
      out[groups++] = v4 & 0xffff
      i = end
      break
    }
    if (j === i || j - i > 4) return false
    out[groups++] = v
    i = j
    if (i === end) break
    if (s.charCodeAt(i) !== 58) return false
    i++
    if (i < end && s.charCodeAt(i) === 58) {
      if (gap >= 0) return false
      gap = groups
      i++
    } else if (i === end) return false
  }
  if (gap < 0) return groups === 8
  if (groups === 8) return false
  const tail = groups - gap
  for (let k = 7; k >= 8 - tail; k--) out[k] = out[k - (8 - groups)]
  for (let k = gap; k < 8 - tail; k++) out[k] = 0
  return true
}

function isV4Mapped (g: Uint16Array): boolean {
  return g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff
}

function v4Key (v: number, prefix: number, raw: string | undefined): string {
  if (prefix >= 32) {
    return raw ?? `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`
  }
  const masked = prefix === 0 ? 0 : (v & (~0 << (32 - prefix))) >>> 0
  return `${masked >>> 24}.${(masked >>> 16) & 255}.${(masked >>> 8) & 255}.${masked & 255}/${prefix}`
}

/**
 * The counter key for an IP address: IPv4 grouped by `v4Prefix` bits, IPv6 by
 * `v6Prefix` bits (IPv4-mapped IPv6 counts as IPv4). A value that is not an IP
 * address is returned unchanged and counted as an opaque key.
 */
export function ipKey (s: string, v4Prefix: number, v6Prefix: number): string {
  if (s.indexOf(':') < 0) {
    const v4 = parseV4(s, 0, s.length)
    return v4 < 0 ? s : v4Key(v4, v4Prefix, s)
  }
  const g = scratch
  if (!parseV6(s, g)) return s
  if (isV4Mapped(g)) return v4Key(g[6] * 65536 + g[7], v4Prefix, undefined)
  const groups = Math.ceil(v6Prefix / 16)
  let out = ''
  for (let k = 0; k < groups; k++) {
    let v = g[k]
    const bits = v6Prefix - k * 16
    if (bits < 16) v &= (0xffff << (16 - bits)) & 0xffff
    out += (k === 0 ? '' : ':') + v.toString(16)
  }
  return groups === 8 ? out : out + '::/' + String(v6Prefix)
}

/** A parsed CIDR block. */
export interface Cidr {
  readonly v6: boolean
  /** Network bits as 8 hextets (IPv4 uses hextets 6 and 7). */
  readonly bits: Uint16Array
  readonly prefix: number
}

/** Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (a /32 or /128); undefined when invalid. */
export function parseCidr (text: string): Cidr | undefined {
  const slash = text.indexOf('/')
  const addr = slash < 0 ? text : text.slice(0, slash)
  const v6 = addr.indexOf(':') >= 0
  const max = v6 ? 128 : 32
  let prefix = max
  if (slash >= 0) {
    const p = text.slice(slash + 1)
    if (!/^\d{1,3}$/.test(p)) return undefined
    prefix = Number(p)
    if (prefix > max) return undefined
  }
  const bits = new Uint16Array(8)
  if (v6) {
    if (!parseV6(addr, bits)) return undefined
    // Mapped addresses count as IPv4 everywhere, so a mapped block is the IPv4 block it maps (else it never matches).
    if (prefix >= 96 && isV4Mapped(bits)) {
      bits.fill(0, 0, 6)
      return { v6: false, bits, prefix: prefix - 96 }
    }
  } else {
    const v4 = parseV4(addr, 0, addr.length)
    if (v4 < 0) return undefined
    bits[6] = v4 >>> 16
    bits[7] = v4 & 0xffff
  }
  return { v6, bits, prefix }
}

/** Whether the address `s` lies inside `cidr` (IPv4-mapped IPv6 matches IPv4 blocks). */
export function cidrContains (cidr: Cidr, s: string): boolean {
  const g = scratch
  let v6: boolean
  if (s.indexOf(':') < 0) {
    const v4 = parseV4(s, 0, s.length)
    if (v4 < 0) return false
    g.fill(0)
    g[6] = v4 >>> 16
    g[7] = v4 & 0xffff
    v6 = false
  } else {
    if (!parseV6(s, g)) return false
    v6 = !isV4Mapped(g)
  }
  if (v6 !== cidr.v6) return false
  const offset = cidr.v6 ? 0 : 96
  let remaining = cidr.prefix
  for (let k = offset / 16; remaining > 0; k++) {
    const take = remaining >= 16 ? 16 : remaining
    const mask = (0xffff << (16 - take)) & 0xffff
    if ((g[k] & mask) !== (cidr.bits[k] & mask)) return false
    remaining -= take
  }
  return true
}
