import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DETECTED, KeyWindows, STEADY } from '../../chaos/sim/windows.js'

/** Brute force: every window of k slots ending at a slot from the first to the last + k - 1. */
function model (events: Array<{ slot: number, offered: number, admitted: number }>, k: number, limit: number, classify: (end: number) => number): { max: number, contended: number, ratio: number, windows: number, steadyMax: number, steadyMaxSlot: number, steadyContended: number, steadyRatio: number, detectedMax: number } {
  const a = new Map<number, number>()
  const o = new Map<number, number>()
  for (const e of events) {
    a.set(e.slot, (a.get(e.slot) ?? 0) + e.admitted)
    o.set(e.slot, (o.get(e.slot) ?? 0) + e.offered)
  }
  const first = Math.min(...events.map(e => e.slot))
  const last = Math.max(...events.map(e => e.slot))
  let max = 0
  let contended = 0
  let ratio = 0
  let windows = 0
  let steadyMax = 0
  let steadyMaxSlot = -1
  let steadyContended = 0
  let steadyRatio = 0
  let detectedMax = -1
  for (let end = first; end <= last + k - 1; end++) {
    let sa = 0
    let so = 0
    for (let s = end - k + 1; s <= end; s++) { sa += a.get(s) ?? 0; so += o.get(s) ?? 0 }
    if (sa === 0 && so === 0) continue
    windows++
    max = Math.max(max, sa - limit)
    if (so >= limit) { contended++; if (sa > limit) ratio += (sa - limit) / limit }
    const c = classify(end)
    if ((c & STEADY) !== 0) {
      // The first window that reached the largest excess over the limit.
      if (sa - limit > steadyMax) steadyMaxSlot = end
      steadyMax = Math.max(steadyMax, sa - limit)
      if (so >= limit) { steadyContended++; steadyRatio += Math.max(0, sa - limit) / limit }
    }
    if ((c & DETECTED) !== 0) detectedMax = Math.max(detectedMax, sa - limit, 0)
  }
  return { max, contended, ratio, windows, steadyMax, steadyMaxSlot, steadyContended, steadyRatio, detectedMax }
}

describe('over-admission windows', () => {
  it('match a brute-force evaluation of every window', () => {
    const event = fc.record({ gap: fc.integer({ min: 0, max: 6 }), offered: fc.integer({ min: 1, max: 5 }), admitted: fc.integer({ min: 0, max: 5 }) })
    fc.assert(fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 12 }), fc.array(event, { minLength: 1, maxLength: 60 }), fc.integer({ min: 0, max: 1000 }), (k, limit, raw, salt) => {
      // Window classes: any mix, fixed per end slot.
      const classify = (end: number): number => ((end * 7919 + salt) >>> 0) % 4
      let slot = 3
      const events = raw.map(e => { slot += e.gap; return { slot, offered: e.offered, admitted: Math.min(e.admitted, e.offered) } })
      const w = new KeyWindows(k, limit, classify)
      for (const e of events) w.add(e.slot, e.offered, e.admitted)
      w.finish()
      const m = model(events, k, limit, classify)
      expect(w.maxExcess).toBe(m.max)
      expect(w.contended).toBe(m.contended)
      expect(w.windows).toBe(m.windows)
      expect(w.excessRatioSum).toBeCloseTo(m.ratio, 9)
      expect(w.steadyMaxExcess).toBe(m.steadyMax)
      expect(w.steadyMaxExcessSlot).toBe(m.steadyMaxSlot)
      expect(w.steadyContended).toBe(m.steadyContended)
      expect(w.steadyRatioSum).toBeCloseTo(m.steadyRatio, 9)
      expect(w.detectedMaxExcess).toBe(m.detectedMax)
    }))
  })
})
