import type { IncomingMessage, ServerResponse } from 'node:http'
import { PROBLEM_TYPES, problem, sendProblem } from '../http/problem.js'

/** A request body over the size limit. */
export class BodyTooLarge extends Error {}

/** One body being read: kept on the request, so the listeners below are shared, not closures per request. */
class BodyRead<T> {
  first: Buffer | undefined = undefined
  chunks: Buffer[] | undefined = undefined
  size = 0
  finished = false
  constructor (readonly maxBytes: number, readonly done: (err: Error | null, body: Buffer | undefined, arg: T) => void, readonly arg: T) {}
}

const kBodyRead = Symbol('meshlimit.bodyRead')
type Reading = IncomingMessage & { [kBodyRead]: BodyRead<unknown> }

function onBodyData (this: Reading, c: Buffer): void {
  const r = this[kBodyRead]
  if (r.finished) return
  r.size += c.length
  if (r.size > r.maxBytes) {
    r.finished = true
    this.resume()
    r.done(new BodyTooLarge(), undefined, r.arg)
    return
  }
  // Bodies of one chunk (nearly all) need no array.
  if (r.first === undefined) r.first = c
  else (r.chunks ??= [r.first]).push(c)
}

function onBodyEnd (this: Reading): void {
  const r = this[kBodyRead]
  if (r.finished) return
  r.finished = true
  r.done(null, r.chunks !== undefined ? Buffer.concat(r.chunks) : r.first ?? Buffer.alloc(0), r.arg)
}

function onBodyError (this: Reading, err: Error): void {
  const r = this[kBodyRead]
  if (!r.finished) { r.finished = true; r.done(err, undefined, r.arg) }
}

/**
 * Reads a request body up to `maxBytes`, then calls `done(err, body, arg)` once: with the
 * body, or with BodyTooLarge past the limit (without buffering the rest) or the stream's
 * error. Callback-style for the decision API, where a promise and its closures per
 * request are garbage the collector pays for at tens of thousands of requests per
 * second; `arg` (the response, say) spares the caller a closure too.
 */
export function readBodyThen<T = undefined> (req: IncomingMessage, maxBytes: number, done: (err: Error | null, body: Buffer | undefined, arg: T) => void, arg?: T): void {
  const declared = req.headers['content-length']
  if (declared !== undefined && Number(declared) > maxBytes) {
    req.resume()
    done(new BodyTooLarge(), undefined, arg as T)
    return
  }
  (req as Reading)[kBodyRead] = new BodyRead(maxBytes, done, arg as T) as BodyRead<unknown>
  req.on('data', onBodyData)
  req.on('end', onBodyEnd)
  req.on('error', onBodyError)
}

/** Reads a request body up to `maxBytes`; rejects with BodyTooLarge past it (without buffering the rest). */
export async function readBody (req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  return await new Promise<Buffer>((resolve, reject) => {
    readBodyThen(req, maxBytes, (err, body) => { if (err !== null) reject(err); else resolve(body as Buffer) })
  })
}

export function sendJson (res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body)
  res.statusCode = status
  if (headers !== undefined) for (const k in headers) res.setHeader(k, headers[k])
  res.setHeader('Content-Type', 'application/json')
  res.setHeader('Content-Length', Buffer.byteLength(text))
  res.end(text)
}

export function badRequest (res: ServerResponse, detail: string, extra?: Record<string, unknown>): void {
  sendProblem(res, problem(400, PROBLEM_TYPES.badRequest, 'Bad Request', detail, extra))
}

export function tooLarge (res: ServerResponse, maxBytes: number): void {
  // The rest of the body is not read: close the connection rather than parse it as the next request.
  res.setHeader('Connection', 'close')
  sendProblem(res, problem(413, PROBLEM_TYPES.tooLarge, 'Content Too Large', `The request body is larger than ${maxBytes} bytes.`))
}

export function notFound (res: ServerResponse, path: string): void {
  sendProblem(res, problem(404, PROBLEM_TYPES.notFound, 'Not Found', `No resource at ${JSON.stringify(path)}.`))
}

export function methodNotAllowed (res: ServerResponse, method: string, allowed: string[]): void {
  res.setHeader('Allow', allowed.join(', '))
  sendProblem(res, problem(405, PROBLEM_TYPES.methodNotAllowed, 'Method Not Allowed', `${method} is not allowed here; use ${allowed.join(' or ')}.`))
}

export function internalError (res: ServerResponse): void {
  sendProblem(res, problem(500, PROBLEM_TYPES.internal, 'Internal Server Error', 'The server failed to answer; see its log.'))
}
