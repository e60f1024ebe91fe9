import { afterEach, describe, expect, it, vi } from 'vitest'
import { DENIED_SUFFIX } from '../../src/algorithms.js'
import { createLimiter, createLoopbackNetwork, VirtualClock } from '../../src/index.js'
import { ErrorCode } from '../../src/errors.js'

const T0 = 1_800_000_000_000
const policies = { policies: [{ id: 'p', key: 'user', limits: [{ id: 'w', limit: 100, window: '1s', slots: 10 }] }] }

/**
 * Node b admitted 50 in one slot (and says it was denied `denied` more there); once that
 * slot has settled, node a asks 20 times: how many does a admit?
 */
function askAfterPeer (denied: number, asks = 20): number {
  const clock = new VirtualClock(T0)
  const net = createLoopbackNetwork()
  const init = { clock, policies, flushIntervalMs: 3_600_000, shareHorizonMs: 100 }
  const a = createLimiter({ ...init, transport: net.connect('a'), incarnation: 1 })
  const b = createLimiter({ ...init, transport: net.connect('b'), incarnation: 2 })
  for (let j = 0; j < 50; j++) b.check({ user: 'hot' })
  const own = b.collectDelta()
  a.applyDelta('b', { incarnation: 2, sentAtMs: T0, groups: own })
  const [hash, epoch] = own[0].entries
  if (denied > 0) a.applyDelta('b', { incarnation: 2, sentAtMs: T0, groups: [{ limit: `p/w${DENIED_SUFFIX}`, slotMs: 100, entries: [hash, epoch, denied] }] })
  clock.advance(300)
  let admitted = 0
  for (let j = 0; j < asks; j++) if (a.check({ user: 'hot' }).allowed) admitted++
  a.close()
  b.close()
  return admitted
}

describe('share rule experiment switches (environment, read once per limiter)', () => {
  afterEach(() => { vi.unstubAllEnvs() })

  it('the engage factor: shares stand aside below it, cut above it', () => {
    // Settled demand 50 x 10 / 9 = 55.6 per window: under 1.1 x 100, the rule stands aside.
    expect(askAfterPeer(0)).toBe(20)
    // Engaging at half the limit, a (no settled demand) gets 100 x 1 / 55.6 = 1.8 requests.
    vi.stubEnv('MESHLIMIT_EXP_SHARE_ENGAGE', '0.5')
    const n = askAfterPeer(0)
    expect(n).toBeGreaterThanOrEqual(1)
    expect(n).toBeLessThanOrEqual(2)
  })

  it('the slack: a node with no settled demand gets slack x limit / demand', () => {
    // Demand (50 + 100) x 10 / 9 = 166.7 per window.
    vi.stubEnv('MESHLIMIT_EXP_SHARE_SLACK', '0')
    expect(askAfterPeer(100)).toBe(0)
    vi.stubEnv('MESHLIMIT_EXP_SHARE_SLACK', '5')
    expect(askAfterPeer(100)).toBe(3)
    vi.unstubAllEnvs()
    // The default, one request of slack: 0.6 of a request, one coin.
    expect(askAfterPeer(100)).toBeLessThanOrEqual(1)
  })

  it('the margin: the simple rule keeps headroom for peers\' admissions not seen yet', () => {
    // Without it, a fills the limit: 50 of b's plus 50 of its own.
    expect(askAfterPeer(0, 60)).toBe(50)
    // b's settled rate is 50 per 900 ms; a quarter of the 100 ms horizon times 10 is 13.9
    // units of headroom: a admits while 50 + x + 13.9 + 1 <= 100, x = 0..35.
    vi.stubEnv('MESHLIMIT_EXP_SHARE_MARGIN', '10')
    expect(askAfterPeer(0, 60)).toBe(36)
  })

  it('a bad value is refused at construction with the switch named', () => {
    vi.stubEnv('MESHLIMIT_EXP_SHARE_SLACK', 'lots')
    expect(() => createLimiter({ clock: new VirtualClock(T0), policies })).toThrow(expect.objectContaining({ code: ErrorCode.OPTION_INVALID, field: 'MESHLIMIT_EXP_SHARE_SLACK' }))
    vi.stubEnv('MESHLIMIT_EXP_SHARE_SLACK', '')
    vi.stubEnv('MESHLIMIT_EXP_SHARE_ENGAGE', '-1')
    expect(() => createLimiter({ clock: new VirtualClock(T0), policies })).toThrow(/MESHLIMIT_EXP_SHARE_ENGAGE/)
  })
})
