import type { IncomingMessage, ServerResponse } from 'node:http'
import { createHttpLimiter, type MiddlewareInit } from './middleware.js'

/** The parts of Fastify the plugin uses, declared structurally (no run-time import of fastify). */
export interface FastifyRequestLike { raw: IncomingMessage, url: string }
export interface FastifyReplyLike { raw: ServerResponse, sent: boolean, hijack(): void }
export interface FastifyLike {
  addHook(name: 'onRequest', hook: (request: FastifyRequestLike, reply: FastifyReplyLike, done: (err?: Error) => void) => void): unknown
}

export type FastifyPlugin = ((fastify: FastifyLike, opts: MiddlewareInit, done: (err?: Error) => void) => void) & Record<symbol, unknown>

/**
 * Fastify plugin: `await app.register(meshlimitFastify, { limiter })`. It applies to
 * every route of the instance it is registered on (it skips encapsulation, as
 * fastify-plugin would).
 */
export const meshlimitFastify: FastifyPlugin = Object.assign(
  (fastify: FastifyLike, opts: MiddlewareInit, done: (err?: Error) => void): void => {
    let core: ReturnType<typeof createHttpLimiter>
    try { core = createHttpLimiter(opts) } catch (err) {
      done(err as Error)
      return
    }
    fastify.addHook('onRequest', (request, reply, next) => {
      const url = request.url
      const q = url.indexOf('?')
      let ok: boolean
      try { ok = core.handle(request.raw, reply.raw, q < 0 ? url : url.slice(0, q)) } catch (err) {
        next(err as Error)
        return
      }
      if (ok) next()
      // The 429 was written on the raw response: tell Fastify not to send another.
      else reply.hijack()
    })
    done()
  },
  {
    [Symbol.for('skip-override')]: true,
    [Symbol.for('fastify.display-name')]: 'meshlimit',
    [Symbol.for('plugin-meta')]: { name: 'meshlimit', fastify: '>=4' }
  }
)
