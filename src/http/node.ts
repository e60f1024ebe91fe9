import type { IncomingMessage, ServerResponse } from 'node:http'
import { createHttpLimiter, type MiddlewareInit } from './middleware.js'
import { PROBLEM_TYPES, problem, sendProblem } from './problem.js'

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void

/**
 * Wraps a node:http request handler: refused requests get a 429 problem+json and never
 * reach `handler`; admitted ones carry the rate-limit headers. If admission itself
 * fails (a descriptor function that throws, a closed limiter), the request gets a 500
 * problem and `onError` is told; the server keeps running.
 *
 *   http.createServer(meshlimitNode({ limiter })((req, res) => res.end('ok')))
 */
export function meshlimitNode (init: MiddlewareInit & { onError?: (err: unknown, req: IncomingMessage) => void }): (handler: NodeHandler) => NodeHandler {
  const core = createHttpLimiter(init)
  return handler => (req, res) => {
    let ok: boolean
    try {
      ok = core.handle(req, res)
    } catch (err) {
      init.onError?.(err, req)
      sendProblem(res, problem(500, PROBLEM_TYPES.internal, 'Internal Server Error', 'Rate limiting failed for this request.'))
      return
    }
    if (ok) handler(req, res)
  }
}
