import type { ServerResponse } from 'node:http'
import { ErrorCode, MeshlimitError } from '../errors.js'
import type { AdminRoute } from '../http/route.js'
import type { PolicyManager } from './manager.js'

/** Path of the policy admin routes. */
export const POLICY_ADMIN_PATH = '/admin/v1/policies'

/** HTTP status of each rejection: who is at fault and whether retrying can help. */
const STATUS: Record<string, number> = {
  [ErrorCode.BUNDLE_MALFORMED]: 400,
  [ErrorCode.POLICY_INVALID]: 400,
  [ErrorCode.POLICY_PARSE]: 400,
  [ErrorCode.BUNDLE_UNTRUSTED_KEY]: 403,
  [ErrorCode.BUNDLE_BAD_SIGNATURE]: 403,
  [ErrorCode.BUNDLE_STALE]: 409,
  [ErrorCode.BUNDLE_TOO_LARGE]: 413,
  [ErrorCode.STATE_INVALID]: 503
}

const TITLE: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 413: 'Content Too Large', 503: 'Service Unavailable' }

function json (res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}

/** Writes an RFC 9457 problem with meshlimit's stable code and the offending field. */
export function problem (res: ServerResponse, status: number, error: MeshlimitError): void {
  json(res, status, { type: 'about:blank', title: TITLE[status] ?? 'Error', status, detail: error.message, code: error.code, field: error.field }, 'application/problem+json')
}

/**
 * Admin routes of a node's policies, for the sidecar's authenticated admin server:
 *
 * - `POST /admin/v1/policies`: body is a signed bundle (`meshlimit policy push` sends
 *   one). 200 `{ status: "installed" | "current", version, hash, ... }`; a rejection is
 *   a problem+json with the error code: 400 malformed or invalid, 403 untrusted key or
 *   bad signature, 409 not newer than the running bundle, 413 too large.
 * - `GET /admin/v1/policies`: the running version, hash, signer, source, and the
 *   acceptance counters.
 * - `GET /admin/v1/policies/bundle`: the running bundle as received (404 while the
 *   fallback runs), e.g. to back it up or to diff against.
 *
 * The node never sees an operator's private key: bundles are signed where they are made.
 */
export function policyAdminRoutes (manager: PolicyManager): AdminRoute[] {
  return [
    {
      method: 'POST',
      path: POLICY_ADMIN_PATH,
      handler (_req, res, body) {
        const r = manager.offer(new Uint8Array(body.buffer, body.byteOffset, body.byteLength), 'admin')
        if (r.status === 'rejected') {
          problem(res, STATUS[r.error.code] ?? 400, r.error)
          return
        }
        json(res, 200, { status: r.status, ...r.bundle, previousVersion: r.status === 'installed' ? (r.previous?.version ?? 0) : undefined })
      }
    },
    {
      method: 'GET',
      path: POLICY_ADMIN_PATH,
      handler (_req, res) {
        const cur = manager.current
        json(res, 200, {
          version: manager.version,
          hash: manager.hash ?? null,
          keyId: cur?.keyId ?? null,
          source: cur?.source ?? 'fallback',
          from: cur?.from ?? null,
          installedAtMs: cur?.installedAtMs ?? null,
          policies: cur?.policies ?? null,
          stats: manager.stats
        })
      }
    },
    {
      method: 'GET',
      path: `${POLICY_ADMIN_PATH}/bundle`,
      handler (_req, res) {
        const b = manager.bundle
        if (b === undefined) {
          problem(res, 404, new MeshlimitError(ErrorCode.STATE_INVALID, 'this node runs its fallback policies and has no signed bundle yet. Fix: push one with `meshlimit policy push`', 'bundle'))
          return
        }
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': b.byteLength, 'cache-control': 'no-store' })
        res.end(b)
      }
    }
  ]
}
