import { afterEach, describe, expect, it, vi } from 'vitest'
import { coarseClock } from '../../membership/clock.js'

const nextTurn = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

describe('coarseClock', () => {
  afterEach(() => { vi.restoreAllMocks() })

  function countingDateNow (): { reads: () => number } {
    let t = 1_700_000_000_000
    let n = 0
    vi.spyOn(Date, 'now').mockImplementation(() => { n++; t += 7; return t })
    return { reads: () => n }
  }

  it('reads the time source once per event-loop turn', async () => {
    const src = countingDateNow()
    const clock = coarseClock()
    const a = clock.now()
    const b = clock.now()
    expect(b).toBe(a)
    expect(src.reads()).toBe(1)
    await nextTurn()
    const c = clock.now()
    expect(c).toBe(a + 7)
    expect(clock.now()).toBe(c)
    expect(src.reads()).toBe(2)
    clock.stop()
  })

  it('does no work while nobody reads it', async () => {
    const src = countingDateNow()
    const clock = coarseClock()
    clock.now()
    for (let i = 0; i < 5; i++) await nextTurn()
    await new Promise(resolve => setTimeout(resolve, 5))
    expect(src.reads()).toBe(1)
    clock.stop()
  })

  it('fresh() always reads the source, and later reads in the turn see it', () => {
    const src = countingDateNow()
    const clock = coarseClock()
    const a = clock.now()
    const f = clock.fresh()
    expect(f).toBe(a + 7)
    expect(clock.now()).toBe(f)
    expect(src.reads()).toBe(2)
    clock.stop()
  })

  it('stop() drops the pending refresh, so the next read is fresh', () => {
    const src = countingDateNow()
    const clock = coarseClock()
    const a = clock.now()
    clock.stop()
    expect(clock.now()).toBe(a + 7)
    expect(src.reads()).toBe(2)
    clock.stop()
  })
})
