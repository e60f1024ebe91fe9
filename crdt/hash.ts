/**
 * Seeded 53-bit string hash used to name keys on the wire and in the remote index.
 *
 * Two independent 32-bit multiply-rotate lanes over UTF-16 code units, cross-mixed and
 * finalised with an avalanche step, combined into one safe integer (21 + 32 bits) so a
 * key hash is a plain JS number: no BigInt, no allocation. Every node of a mesh must use
 * the same seed; a secret seed stops an outsider from crafting colliding keys.
 */
export function hashString (s: string, seed = 0): number {
  let a = (seed ^ 0x2545f491) | 0
  let b = (Math.imul(seed, 0x9e3779b1) ^ 0x68e31da4) | 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    a = Math.imul(a ^ c, 0xcc9e2d51)
    a = (a << 15) | (a >>> 17)
    b = Math.imul(b ^ c, 0x1b873593)
    b = (b << 13) | (b >>> 19)
    b = (Math.imul(b, 5) + 0xe6546b64) | 0
  }
  a ^= s.length
  b ^= s.length
  a = (a + Math.imul(b, 0x7feb352d)) | 0
  b = (b + Math.imul(a, 0x846ca68b)) | 0
  a = avalanche(a)
  b = avalanche(b ^ a)
  return (b >>> 11) * 0x100000000 + (a >>> 0)
}

function avalanche (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h
}

/** Largest value `hashString` returns, plus one. */
export const HASH_LIMIT = 2 ** 53
