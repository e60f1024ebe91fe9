import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/sidecar/config.js'
import { createStallWatch, type StallWatch } from '../../src/sidecar/stalls.js'
import { sidecar, until } from './helpers.js'

/** Keeps the event loop busy until the process has used `ms` of CPU (a long task, however loaded the machine). */
function spin (ms: number): void {
  const cpu = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }
  const end = cpu() + ms
  while (cpu() < end) { /* busy */ }
}

/** A full collection of a heap made big enough that it stalls the loop for a while. */
function bigCollection (): unknown[] {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const keep: unknown[] = []
  for (let i = 0; i < 1_500_000; i++) keep.push({ i, s: 'x' + i })
  gc()
  return keep
}

let watch: StallWatch | undefined
afterEach(() => { watch?.stop() })

describe('stall watch', () => {
  it('counts a long task as a task stall, with its length', async () => {
    watch = createStallWatch({ thresholdMs: 5 })
    const w = watch
    // A long task is a task stall unless the machine took the CPU away for most of it: a few tries.
    for (let i = 0; i < 5 && w.stats().taskStalls === 0; i++) {
      await new Promise(resolve => setTimeout(resolve, 10))
      spin(40)
      await until(() => w.stats().taskStalls + w.stats().waitStalls > i, 'the stall to be classified')
    }
    expect(w.stats().taskStalls).toBeGreaterThanOrEqual(1)
    const st = w.stats()
    expect(st.taskStallMs).toBeGreaterThanOrEqual(30)
    expect(st.maxStallMs).toBeGreaterThanOrEqual(30)
    expect(w.takeMaxMs()).toBeGreaterThanOrEqual(30)
    // Read once: the next read starts from zero.
    expect(w.takeMaxMs()).toBeLessThan(30)
  })

  it('counts a stall in which the process did not run as a wait', async () => {
    watch = createStallWatch({ thresholdMs: 5 })
    const w = watch
    // The process's CPU counts every thread: on a loaded machine another of its threads (a
    // concurrent collection) may work through most of a wait, which then reads as a task: a few tries.
    for (let i = 0; i < 5 && w.stats().waitStalls === 0; i++) {
      await new Promise(resolve => setTimeout(resolve, 10))
      // Blocked in a system call for 40 ms: the loop stalls without using CPU.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 40)
      await until(() => w.stats().taskStalls + w.stats().waitStalls > i, 'the stall to be classified')
    }
    expect(w.stats().waitStalls).toBeGreaterThanOrEqual(1)
    expect(w.stats().waitStallMs).toBeGreaterThanOrEqual(30)
  })

  it('attributes a stall made of a full collection to gc', async () => {
    watch = createStallWatch({ thresholdMs: 1 })
    await new Promise(resolve => setTimeout(resolve, 10))
    const kept = bigCollection()
    const w = watch
    await until(() => w.stats().gcStalls >= 1, 'a stall attributed to collection')
    expect(w.stats().gcInStallsMs).toBeGreaterThan(0)
    expect(kept.length).toBe(1_500_000)
  })
})

describe('stall metrics', () => {
  it('are switched on by --stall-watch-ms or MESHLIMIT_STALL_WATCH_MS, off by default', () => {
    expect(loadConfig({ args: [], env: {} }).metrics.stallWatchMs).toBe(0)
    expect(loadConfig({ args: ['--stall-watch-ms', '5'], env: {} }).metrics.stallWatchMs).toBe(5)
    expect(loadConfig({ args: [], env: { MESHLIMIT_STALL_WATCH_MS: '7' } }).metrics.stallWatchMs).toBe(7)
  })


  it('are in /metrics when metrics.stallWatchMs is set, and absent by default', async () => {
    const policies = 'policies:\n  - id: p\n    key: user\n    limits: [ { limit: 5, window: 1s } ]\n'
    const on = await sidecar(policies, { metrics: { stallWatchMs: 5 } })
    const off = await sidecar(policies)
    try {
      spin(30)
      const text = await (await fetch(`${on.httpUrl}/metrics`)).text()
      expect(text).toMatch(/^meshlimit_event_loop_stalls_total\{cause="gc"\} \d/m)
      expect(text).toMatch(/^meshlimit_event_loop_stalls_total\{cause="task"\} \d/m)
      expect(text).toMatch(/^meshlimit_event_loop_stalls_total\{cause="wait"\} \d/m)
      expect(text).toMatch(/^meshlimit_event_loop_stall_seconds_total\{cause="task"\} /m)
      expect(text).toMatch(/^meshlimit_event_loop_stall_gc_seconds_total /m)
      const max = /^meshlimit_event_loop_stall_max_seconds (\S+)$/m.exec(text)
      expect(Number(max?.[1])).toBeGreaterThanOrEqual(0.02)
      expect(await (await fetch(`${off.httpUrl}/metrics`)).text()).not.toContain('meshlimit_event_loop_stall')
    } finally {
      await on.close()
      await off.close()
    }
  })
})
