import { systemClock, type Clock } from '../../membership/clock.js'
import { ErrorCode, invalid } from '../errors.js'
import type { BlockEntry, Blocklist } from './blocklist.js'

export interface EscalationInit {
  /** Where escalated clients are blocked. */
  blocklist: Blocklist
  /**
   * Time source.
   * @default systemClock
   */
  clock?: Clock
  /**
   * Window in which denials are counted, from a client's first denial.
   * @default 60000
   */
  windowMs?: number
  /**
   * Distinct things (policy and route pairs) a client must be denied on within the
   * window to be blocked; hammering one endpoint is the limiter's job, probing many is abuse.
   * @default 10
   */
  threshold?: number
  /**
   * How long an escalated client is blocked, in ms.
   * @default 600000
   */
  blockMs?: number
  /**
   * Most clients tracked at once; past it the oldest tracker is dropped (bounded memory under floods).
   * @default 10000
   */
  maxClients?: number
}

export interface EscalationStats {
  tracked: number
  escalations: number
}

export interface Escalation {
  /**
   * Records that `client` was denied on `what` (e.g. "per-user /v1/search"); returns
   * the block when this denial made the client cross the threshold.
   */
  denied(client: string, what: string): BlockEntry | undefined
  stats(): EscalationStats
}

interface Tracker {
  start: number
  seen: string[]
}

function positive (name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw invalid(ErrorCode.OPTION_INVALID, name, v, 'must be an integer >= 1', `pass ${name} as a whole number, or leave it out for ${dflt}`)
  }
  return v
}

/** Blocks clients that are denied on many policies or endpoints within a window. */
export function createEscalation (init: EscalationInit): Escalation {
  const clock = init.clock ?? systemClock
  const windowMs = positive('windowMs', init.windowMs, 60_000)
  const threshold = positive('threshold', init.threshold, 10)
  const blockMs = positive('blockMs', init.blockMs, 600_000)
  const maxClients = positive('maxClients', init.maxClients, 10_000)
  const trackers = new Map<string, Tracker>()
  let escalations = 0

  return {
    denied (client, what) {
      const now = clock.now()
      let t = trackers.get(client)
      if (t === undefined || now - t.start >= windowMs) {
        if (t !== undefined) trackers.delete(client)
        else if (trackers.size >= maxClients) trackers.delete(trackers.keys().next().value as string)
        t = { start: now, seen: [] }
        trackers.set(client, t)
      }
      if (t.seen.includes(what)) return undefined
      t.seen.push(what)
      if (t.seen.length < threshold) return undefined
      trackers.delete(client)
      escalations++
      return init.blocklist.block(client, blockMs, `escalation: denied on ${t.seen.length} policies/endpoints within ${windowMs} ms (${t.seen.slice(0, 5).join('; ')})`.slice(0, 256))
    },
    stats () {
      return { tracked: trackers.size, escalations }
    }
  }
}
