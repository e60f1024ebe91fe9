import type { LimitMeta, Scenario } from '../scenario.js'
import { REACHABILITY_DEBOUNCE_MS } from '../../src/mesh.js'
import { RECOVERY_SLOTS } from '../../src/limiter.js'
import { detectionMs } from './bounds.js'
import { SIM_EPOCH_MS } from './node.js'
import { DETECTED, STEADY } from './windows.js'

/**
 * Classes of the windows of a limit, by the slot they end at (true time): STEADY when
 * the window starts after the warm-up, ends with the traffic and overlaps no fault or
 * its aftermath; DETECTED when it lies within a partition after membership noticed it
 * (cut + detection time .. heal).
 */
export function windowClasses (s: Scenario, trafficStart: number, trafficEnd: number): (meta: LimitMeta) => (end: number) => number {
  const beat = s.mesh.heartbeatIntervalMs ?? 1000
  const detect = detectionMs(s)
  const W = Math.max(...[...s.limits.values()].map(m => m.limit.windowMs))
  const slot = Math.max(...[...s.limits.values()].map(m => m.slotMs))
  const cuts: Array<{ from: number, to: number }> = []
  const disturbed: Array<{ from: number, to: number }> = []
  let cutAt: number | undefined
  for (const e of s.events) {
    const at = trafficStart + e.atMs
    switch (e.kind) {
      case 'partition':
        cutAt ??= at
        break
      case 'heal':
        if (cutAt !== undefined) cuts.push({ from: cutAt, to: at })
        cutAt = undefined
        break
      case 'crash': {
        const last = trafficStart + (e.everyMs === undefined ? e.atMs : Math.min(e.untilMs ?? Infinity, s.durationMs))
        // Silent until restarted (suspect if that takes long), then a window of aftermath.
        disturbed.push({ from: at, to: last + (e.restartAfterMs ?? Infinity) + 1.1 * beat + W })
        break
      }
      case 'join':
        disturbed.push({ from: at, to: at + 1.1 * beat + W })
        break
      case 'leave':
        // A member that leaves says goodbye and is forgotten at once; if the goodbye is
        // lost it is held unreachable until forgotten, which only lowers admissions.
        disturbed.push({ from: at, to: at + 1.1 * beat + W })
        break
    }
  }
  if (cutAt !== undefined) cuts.push({ from: cutAt, to: Infinity })
  // After a heal: heartbeats resume, the partition cap holds a few slots, then a window.
  for (const c of cuts) disturbed.push({ from: c.from, to: c.to + 1.1 * beat + REACHABILITY_DEBOUNCE_MS + RECOVERY_SLOTS * slot + W })
  const steadyFrom = trafficStart + s.measure.warmupMs
  return meta => end => {
    const start = (end - meta.slotsPerWindow + 1) * meta.slotMs - SIM_EPOCH_MS
    const stop = (end + 1) * meta.slotMs - SIM_EPOCH_MS
    let c = 0
    if (start >= steadyFrom && stop <= trafficEnd && disturbed.every(d => stop <= d.from || start >= d.to)) c |= STEADY
    if (cuts.some(x => start >= x.from + detect && stop <= x.to)) c |= DETECTED
    return c
  }
}
