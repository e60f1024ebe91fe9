import type { IncomingMessage, ServerResponse } from 'node:http'
import { createHttpLimiter, type MiddlewareInit } from './middleware.js'

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void

/**
 * Wraps a node:http request handler: refused requests get a 429 problem+json and never
 * reach `handler`; admitted ones carry the rate-limit headers.
 *
 *   http.createServer(meshlimitNode({ limiter })((req, res) => res.end('ok')))
 */
export function meshlimitNode (init: MiddlewareInit): (handler: NodeHandler) => NodeHandler {
  const core = createHttpLimiter(init)
  return handler => (req, res) => {
    if (core.handle(req, res)) handler(req, res)
  }
}
