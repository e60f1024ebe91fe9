/** The randomness seam: returns a float in [0, 1). */
export type Random = () => number

/**
 * A seeded pseudo-random source (splitmix32): same seed, same sequence, so a
 * simulated run is replayable.
 */
export function seededRandom (seed: number): Random {
  let s = seed | 0
  return () => {
    s = (s + 0x9e3779b9) | 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
    z ^= z >>> 16
    return (z >>> 0) / 0x100000000
  }
}
