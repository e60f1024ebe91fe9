import type { LimitInfo } from '../algorithms.js'
import { Decision, LimitStatus } from '../decision.js'
import { toAscii } from '../http/headers.js'

/**
 * The decision API's answer as JSON text, written directly: the same characters as
 * JSON.stringify of the answer object (property-tested), without the object, the
 * toJSON copies and the stringifier's own buffers. Everything static about a limit is
 * cached per LimitInfo (new on each policy install, so a WeakMap lets old ones go).
 */

// Policy and limit ids are ASCII by validation: toAscii only guards.
const asciiJson = (s: string): string => toAscii(JSON.stringify(s))

/** A number as JSON writes it (non-finite numbers are null). */
function num (n: number): string {
  return Number.isFinite(n) ? String(n) : 'null'
}

interface Fragments {
  /** A Decision's fields from "policy" through "remaining":, after "allowed". */
  decision: string
  /** A LimitStatus's fields from its opening brace through "remaining":. */
  status: string
}

const fragments = new WeakMap<LimitInfo, Fragments>()

function fragmentsOf (info: LimitInfo): Fragments {
  let f = fragments.get(info)
  if (f !== undefined) return f
  const common = ',"algorithm":' + asciiJson(info.algorithm) + ',"scope":' + asciiJson(info.scope) +
    ',"limit":' + num(info.limit) + ',"windowMs":' + num(info.windowMs) + ',"remaining":'
  f = {
    decision: ',"policy":' + asciiJson(info.policy) + ',"limitId":' + asciiJson(info.id) + common,
    status: '{"policy":' + asciiJson(info.policy) + ',"id":' + asciiJson(info.id) + common
  }
  fragments.set(info, f)
  return f
}

function statusJson (s: LimitStatus): string {
  if (s.toJSON !== LimitStatus.prototype.toJSON) return toAscii(JSON.stringify(s))
  return fragmentsOf(s.info).status + num(s.remaining) + ',"resetMs":' + num(s.resetMs) + ',"retryAfterMs":' + num(s.retryAfterMs) +
    (s.allowed ? ',"allowed":true' : ',"allowed":false') + (s.info.shadow ? ',"shadow":true}' : ',"shadow":false}')
}

/** JSON.stringify(d), in ASCII (its length is its size in bytes). */
export function decisionJson (d: Decision): string {
  // A subclass may serialise itself differently: let it.
  if (d.toJSON !== Decision.prototype.toJSON) return toAscii(JSON.stringify(d))
  const info = d.info
  let out = d.allowed ? '{"allowed":true' : '{"allowed":false'
  out += info !== undefined ? fragmentsOf(info).decision : ',"limit":null,"windowMs":0,"remaining":'
  out += num(d.remaining) + ',"resetMs":' + num(d.resetMs) + ',"retryAfterMs":' + num(d.retryAfterMs) +
    (d.shadowDenied ? ',"shadowDenied":true,"limits":[' : ',"shadowDenied":false,"limits":[')
  const limits = d.limits
  for (let i = 0; i < limits.length; i++) out += (i === 0 ? '' : ',') + statusJson(limits[i])
  return out + ']}'
}
