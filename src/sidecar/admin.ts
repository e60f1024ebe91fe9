import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Blocklist } from '../abuse/blocklist.js'
import { ErrorCode, MeshlimitError, invalid } from '../errors.js'
import type { AdminRoute } from '../http/route.js'
import { PROBLEM_TYPES, problem, sendProblem } from '../http/problem.js'
import { parseDuration } from '../policy/duration.js'
import type { Logger } from '../log.js'
import { BodyTooLarge, badRequest, internalError, methodNotAllowed, notFound, readBody, sendJson, tooLarge } from './http-util.js'

export interface AdminApiInit {
  /** Bearer token every admin request must present. */
  token: string
  blocklist: Blocklist
  /** Extra routes (policy pushes...), mounted beside the built-in ones. */
  routes?: AdminRoute[]
  /** Answer of GET /admin/v1/status. */
  status?: () => unknown
  logger?: Logger
  /**
   * Largest request body, in bytes.
   * @default 1048576
   */
  maxBodyBytes?: number
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

/** Parses a JSON body into an object, or throws a MeshlimitError naming what is wrong. */
export function jsonObject (body: Buffer): Record<string, unknown> {
  let v: unknown
  try { v = JSON.parse(body.length === 0 ? '{}' : body.toString('utf8')) } catch (err) {
    throw invalid(ErrorCode.OPTION_INVALID, 'body', body.toString('utf8', 0, 80), `is not valid JSON (${(err as Error).message})`, 'send a JSON object')
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(ErrorCode.OPTION_INVALID, 'body', v, 'must be a JSON object', 'send e.g. {"key":"ip:203.0.113.7","duration":"10m"}')
  return v as Record<string, unknown>
}

/** The built-in block-list routes: list, block, unblock. */
function blocklistRoutes (blocklist: Blocklist, logger: Logger | undefined): AdminRoute[] {
  const path = '/admin/v1/blocklist'
  return [
    { method: 'GET', path, handler: (_req, res) => { sendJson(res, 200, { blocked: blocklist.list() }) } },
    {
      method: 'POST',
      path,
      handler (_req, res, body) {
        const o = jsonObject(body)
        for (const k of Object.keys(o)) {
          if (!['key', 'duration', 'durationMs', 'reason'].includes(k)) throw invalid(ErrorCode.OPTION_INVALID, k, o[k], 'is not a field of a block', 'send key, duration (or durationMs) and reason')
        }
        let durationMs: unknown = o.durationMs
        if (o.duration !== undefined) {
          durationMs = typeof o.duration === 'string' ? parseDuration(o.duration) : undefined
          if (durationMs === undefined) throw invalid(ErrorCode.OPTION_INVALID, 'duration', o.duration, 'is not a duration', 'write e.g. "90s", "10m", "1h"')
        }
        const reason = o.reason ?? 'manual'
        const entry = blocklist.block(o.key as string, (durationMs ?? 600_000) as number, reason as string)
        logger?.warn({ event: 'admin-block', reason: entry.reason }, 'manual block')
        sendJson(res, 201, entry)
      }
    },
    {
      method: 'DELETE',
      path,
      handler (req, res) {
        const key = new URL(req.url ?? '/', 'http://x').searchParams.get('key')
        if (key === null) throw invalid(ErrorCode.OPTION_INVALID, 'key', undefined, 'is required', `call DELETE ${path}?key=<client key>`)
        const was = blocklist.unblock(key, 'manual')
        if (!was) {
          sendProblem(res, problem(404, PROBLEM_TYPES.notFound, 'Not Found', `${JSON.stringify(key)} is not blocked.`))
          return
        }
        sendJson(res, 200, { unblocked: key })
      }
    }
  ]
}

/**
 * The admin API's request listener: bearer-token authentication, a body size limit,
 * problem+json errors (a thrown MeshlimitError becomes a 400 naming its field).
 */
export function createAdminApi (init: AdminApiInit): (req: IncomingMessage, res: ServerResponse) => void {
  if (typeof init.token !== 'string' || init.token.length < 16) {
    throw invalid(ErrorCode.OPTION_INVALID, 'admin.token', init.token === undefined ? undefined : '***', 'must be at least 16 characters', 'set MESHLIMIT_ADMIN_TOKEN to a long random string')
  }
  const want = digest(init.token)
  const maxBodyBytes = init.maxBodyBytes ?? 1 << 20
  const routes = [
    ...blocklistRoutes(init.blocklist, init.logger),
    { method: 'GET', path: '/admin/v1/status', handler: (_req, res) => { sendJson(res, 200, init.status?.() ?? {}) } } satisfies AdminRoute,
    ...(init.routes ?? [])
  ]
  for (const r of routes) {
    if (routes.filter(x => x.path === r.path && x.method === r.method).length > 1) {
      throw invalid(ErrorCode.OPTION_INVALID, 'routes', `${r.method} ${r.path}`, 'is mounted twice', 'give each admin route its own method and path')
    }
  }

  const authorized = (req: IncomingMessage): boolean => {
    const h = req.headers.authorization
    if (h === undefined || h.slice(0, 7).toLowerCase() !== 'bearer ') return false
    return timingSafeEqual(digest(h.slice(7).trim()), want)
  }

  const serve = async (req: IncomingMessage, res: ServerResponse, route: AdminRoute): Promise<void> => {
    let body: Buffer
    try { body = await readBody(req, maxBodyBytes) } catch (err) {
      if (err instanceof BodyTooLarge) tooLarge(res, maxBodyBytes)
      else badRequest(res, 'The request body could not be read.')
      return
    }
    try {
      await route.handler(req, res, body)
    } catch (err) {
      if (err instanceof MeshlimitError) {
        badRequest(res, err.message, { code: err.code, field: err.field })
        return
      }
      init.logger?.error({ err, path: route.path }, 'admin route failed')
      internalError(res)
    }
  }

  return (req, res) => {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const path = q < 0 ? url : url.slice(0, q)
    if (!authorized(req)) {
      req.resume()
      res.setHeader('WWW-Authenticate', 'Bearer realm="meshlimit-admin"')
      sendProblem(res, problem(401, PROBLEM_TYPES.unauthorized, 'Unauthorized', 'Send the admin token as "Authorization: Bearer <token>".'))
      return
    }
    const atPath = routes.filter(r => r.path === path)
    if (atPath.length === 0) { req.resume(); notFound(res, path); return }
    const route = atPath.find(r => r.method === req.method)
    if (route === undefined) { req.resume(); methodNotAllowed(res, req.method ?? '', atPath.map(r => r.method)); return }
    serve(req, res, route).catch(() => { internalError(res) })
  }
}
