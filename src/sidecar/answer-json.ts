import type { LimitInfo } from '../algorithms.js'
import { Decision, LimitStatus } from '../decision.js'
import { toAscii } from '../http/headers.js'
import { jsonNumber, type JsonOut } from '../http/json-out.js'

/**
 * The decision API's decision as JSON text, written piece by piece: the same characters
 * as JSON.stringify of the decision (property-tested), without the toJSON copies and the
 * stringifier's own buffers. Everything static about a limit is cached per LimitInfo
 * (new on each policy install, so a WeakMap lets old ones go).
 */

// Policy and limit ids are ASCII by validation: toAscii only guards.
const asciiJson = (s: string): string => toAscii(JSON.stringify(s))

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
    ',"limit":' + JSON.stringify(info.limit) + ',"windowMs":' + JSON.stringify(info.windowMs) + ',"remaining":'
  f = {
    decision: ',"policy":' + asciiJson(info.policy) + ',"limitId":' + asciiJson(info.id) + common,
    status: '{"policy":' + asciiJson(info.policy) + ',"id":' + asciiJson(info.id) + common
  }
  fragments.set(info, f)
  return f
}

/** The figures a decision and each of its limits share, after "remaining":. */
function writeFigures (out: JsonOut, remaining: number, resetMs: number, retryAfterMs: number): void {
  jsonNumber(out, remaining)
  out.ascii(',"resetMs":')
  jsonNumber(out, resetMs)
  out.ascii(',"retryAfterMs":')
  jsonNumber(out, retryAfterMs)
}

function writeStatus (out: JsonOut, s: LimitStatus): void {
  if (s.toJSON !== LimitStatus.prototype.toJSON) { out.ascii(toAscii(JSON.stringify(s))); return }
  out.ascii(fragmentsOf(s.info).status)
  writeFigures(out, s.remaining, s.resetMs, s.retryAfterMs)
  out.ascii(s.allowed ? ',"allowed":true' : ',"allowed":false')
  out.ascii(s.info.shadow ? ',"shadow":true}' : ',"shadow":false}')
}

/** Writes JSON.stringify(d), in ASCII. */
export function writeDecisionJson (out: JsonOut, d: Decision): void {
  // A subclass may serialise itself differently: let it.
  if (d.toJSON !== Decision.prototype.toJSON) { out.ascii(toAscii(JSON.stringify(d))); return }
  const info = d.info
  out.ascii(d.allowed ? '{"allowed":true' : '{"allowed":false')
  out.ascii(info !== undefined ? fragmentsOf(info).decision : ',"limit":null,"windowMs":0,"remaining":')
  writeFigures(out, d.remaining, d.resetMs, d.retryAfterMs)
  out.ascii(d.shadowDenied ? ',"shadowDenied":true,"limits":[' : ',"shadowDenied":false,"limits":[')
  const limits = d.limits
  for (let i = 0; i < limits.length; i++) {
    if (i > 0) out.ascii(',')
    writeStatus(out, limits[i])
  }
  out.ascii(']}')
}
