import type { IncomingMessage, ServerResponse } from 'node:http'
import { createHttpLimiter, type MiddlewareInit } from './middleware.js'

/** The parts of an Express request the middleware reads (no run-time import of express). */
export interface ExpressRequestLike extends IncomingMessage {
  /** The URL before router mounts rewrote `url`. */
  originalUrl?: string
}

export type ExpressMiddleware = (req: ExpressRequestLike, res: ServerResponse, next: (err?: unknown) => void) => void

/**
 * Express middleware: `app.use(meshlimitExpress({ limiter }))`. Refused requests get a
 * 429 problem+json and stop; admitted ones go on with the rate-limit headers set.
 */
export function meshlimitExpress (init: MiddlewareInit): ExpressMiddleware {
  const core = createHttpLimiter(init)
  return (req, res, next) => {
    let ok: boolean
    try {
      const url = req.originalUrl ?? req.url ?? '/'
      const q = url.indexOf('?')
      ok = core.handle(req, res, q < 0 ? url : url.slice(0, q))
    } catch (err) {
      next(err)
      return
    }
    if (ok) next()
  }
}
