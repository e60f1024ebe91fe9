import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createScheduler, type Task } from '../../chaos/sim/scheduler.js'

describe('scheduler', () => {
  it('runs events in (time, scheduling order) order, whatever order they were added in', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 200 }), times => {
      const sched = createScheduler()
      const ran: Array<[number, number]> = []
      times.forEach((t, k) => sched.at(t, () => { ran.push([sched.now, k]) }))
      sched.runUntil(Infinity)
      const expected = times.map((t, k) => [t, k] as [number, number]).sort((a, b) => a[0] - b[0] || a[1] - b[1])
      expect(ran).toEqual(expected)
    }))
  })

  it('skips cancelled events and events of a dead owner', () => {
    const sched = createScheduler()
    const owner = { dead: false }
    const ran: string[] = []
    const cancel = sched.at(5, () => ran.push('cancelled'))
    sched.at(6, () => ran.push('owned'), owner)
    sched.at(7, () => ran.push('kept'))
    cancel()
    owner.dead = true
    sched.runUntil(10)
    expect(ran).toEqual(['kept'])
    expect(sched.now).toBe(10)
  })

  it('never moves time backwards: an event scheduled in the past runs now', () => {
    const sched = createScheduler()
    const at: number[] = []
    sched.at(10, () => { sched.at(3, () => at.push(sched.now)) })
    sched.runUntil(20)
    expect(at).toEqual([10])
  })

  it('stops after the budget and right after a yield request, then resumes', () => {
    const sched = createScheduler()
    const ran: number[] = []
    for (let k = 0; k < 5; k++) sched.at(k, () => { ran.push(k); if (k === 1) sched.requestYield() })
    expect(sched.runUntil(10)).toBe(false)
    expect(ran).toEqual([0, 1])
    expect(sched.runUntil(10, 2)).toBe(false)
    expect(ran).toEqual([0, 1, 2, 3])
    expect(sched.runUntil(10)).toBe(true)
    expect(ran).toEqual([0, 1, 2, 3, 4])
    expect(sched.executed).toBe(5)
  })

  it('lets a task reschedule itself (one object for a series of events)', () => {
    const sched = createScheduler()
    const seen: number[] = []
    let runs = 0
    const task: Task = {
      at: 1, seq: 0, owner: { dead: false }, cancelled: false,
      run () {
        seen.push(sched.now)
        if (++runs < 3) { this.at = sched.now + 2; sched.push(this) }
      }
    }
    sched.push(task)
    sched.at(2, () => seen.push(-2))
    sched.runUntil(100)
    expect(seen).toEqual([1, -2, 3, 5])
  })
})
