import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Gate } from '../gate.js'
import { ByteOut } from '../http/json-out.js'
import { writeDecisionJson } from './answer-json.js'
import { MAX_COST } from '../limiter.js'
import type { Descriptor } from '../policy/types.js'
import { BodyTooLarge, badRequest, internalError, methodNotAllowed, notFound, readBodyThen, sendJson, tooLarge } from './http-util.js'
import type { SidecarMetrics } from './metrics.js'
import type { Logger } from '../log.js'

export interface DecisionApiInit {
  gate: Gate
  metrics?: SidecarMetrics
  logger?: Logger
  /**
   * Largest request body, in bytes.
   * @default 65536
   */
  maxBodyBytes?: number
  /** Whether the node is ready to serve (for /readyz). @default always */
  ready?: () => boolean
}

const MAX_FIELDS = 64
const MAX_FIELD_NAME = 64
const MAX_VALUE_LENGTH = 4096
const FIELD_NAME = /^[A-Za-z0-9_.-]+$/

/** A checked /v1/check request, or the reason it is refused. */
export function parseCheckRequest (body: unknown): { descriptor: Descriptor, cost: number } | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'the body must be a JSON object such as {"descriptor":{"user":"u-42"},"cost":1}'
  const b = body as Record<string, unknown>
  // for-in rather than Object.keys: no key array per request (JSON.parse's objects have no inherited enumerables).
  for (const k in b) if (k !== 'descriptor' && k !== 'cost') return `unknown field ${JSON.stringify(k)}; the fields are "descriptor" and "cost"`
  const d = b.descriptor
  if (typeof d !== 'object' || d === null || Array.isArray(d)) return '"descriptor" must be an object of string fields, e.g. {"user":"u-42","route":"/v1/search"}'
  // No prototype: a field named like an Object.prototype member must read as itself, not as
  // inherited, and for-in sees own fields only. The parsed object is ours: taking its
  // prototype away reuses V8's cached map, where a copy into Object.create(null) made a
  // dictionary per request.
  const descriptor = Object.setPrototypeOf(d, null) as Descriptor
  let n = 0
  for (const _ in descriptor) n++
  if (n > MAX_FIELDS) return `"descriptor" has ${n} fields; at most ${MAX_FIELDS} are accepted`
  for (const name in descriptor) {
    const v = descriptor[name] as unknown
    if (name.length > MAX_FIELD_NAME || !FIELD_NAME.test(name)) return `descriptor field name ${JSON.stringify(name.slice(0, 80))} must be 1-${MAX_FIELD_NAME} letters, digits, "_", "." or "-"`
    if (typeof v !== 'string') return `descriptor.${name} must be a string, got ${v === null ? 'null' : typeof v}`
    if (v.length > MAX_VALUE_LENGTH) return `descriptor.${name} is ${v.length} characters long; at most ${MAX_VALUE_LENGTH} are accepted`
  }
  const cost = b.cost ?? 1
  if (typeof cost !== 'number' || !Number.isInteger(cost) || cost < 1 || cost > MAX_COST) return `"cost" must be an integer from 1 to ${MAX_COST}, got ${JSON.stringify(cost)}`
  return { descriptor, cost }
}

/**
 * The decision API's request listener: POST /v1/check, GET /metrics, /healthz, /readyz.
 * A decision is always answered 200; its `status` field says what the gateway should answer.
 */
export function createDecisionApi (init: DecisionApiInit): (req: IncomingMessage, res: ServerResponse) => void {
  const { gate, metrics } = init
  const maxBodyBytes = init.maxBodyBytes ?? 65536
  const ready = init.ready ?? (() => true)
  // Answers are written here one after the other; each response holds a view of its own bytes.
  const out = new ByteOut()

  const answer = (res: ServerResponse, err: Error | null, raw: Buffer | undefined): void => {
    if (err !== null) {
      if (err instanceof BodyTooLarge) tooLarge(res, maxBodyBytes)
      else badRequest(res, 'The request body could not be read.')
      return
    }
    let body: unknown
    try { body = JSON.parse((raw as Buffer).toString('utf8')) } catch (err) {
      badRequest(res, `The body is not valid JSON: ${(err as Error).message}.`)
      return
    }
    const parsed = parseCheckRequest(body)
    if (typeof parsed === 'string') {
      badRequest(res, parsed)
      return
    }
    const r = gate.decide(parsed.descriptor, parsed.cost, 'http')
    // The bytes of JSON.stringify({ allowed, status, decision, headers, problem? }), written
    // directly: no answer object, no string to concatenate, flatten and convert.
    out.begin()
    out.ascii(r.allowed ? '{"allowed":true,"status":200' : '{"allowed":false,"status":429')
    if (r.decision !== undefined) {
      out.ascii(',"decision":')
      writeDecisionJson(out, r.decision)
    }
    out.ascii(',"headers":')
    gate.writeHeadersJson(out, r)
    if (!r.allowed) {
      out.ascii(',"problem":')
      out.utf8(JSON.stringify(gate.problem(r)))
    }
    out.ascii('}')
    const bytes = out.finish()
    // One flat array: no per-response header object.
    res.writeHead(200, ['Content-Type', 'application/json', 'Content-Length', String(bytes.length)])
    res.end(bytes)
  }

  // One function for every request (the response rides along): no closure per request.
  const bodyRead = (err: Error | null, raw: Buffer | undefined, res: ServerResponse): void => {
    try { answer(res, err, raw) } catch (e) {
      init.logger?.error({ err: e }, 'decision request failed')
      if (!res.headersSent) internalError(res)
      else res.destroy()
    }
  }

  const check = (req: IncomingMessage, res: ServerResponse): void => {
    // Any content type is read as JSON: curl -d sends form-encoded, fetch sends text/plain.
    readBodyThen(req, maxBodyBytes, bodyRead, res)
  }

  return (req, res) => {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const path = q < 0 ? url : url.slice(0, q)
    const method = req.method ?? 'GET'
    if (path === '/v1/check') {
      if (method !== 'POST') { req.resume(); methodNotAllowed(res, method, ['POST']); return }
      check(req, res)
      return
    }
    req.resume()
    if (method !== 'GET' && method !== 'HEAD') {
      if (path === '/metrics' || path === '/healthz' || path === '/readyz') methodNotAllowed(res, method, ['GET', 'HEAD'])
      else notFound(res, path)
      return
    }
    if (path === '/healthz') sendJson(res, 200, { status: 'ok' })
    else if (path === '/readyz') {
      if (ready()) sendJson(res, 200, { status: 'ready', policyVersion: gate.limiter.policies.version })
      else sendJson(res, 503, { status: 'not ready' })
    } else if (path === '/metrics' && metrics !== undefined) {
      metrics.text().then(text => {
        res.setHeader('Content-Type', metrics.registry.contentType)
        res.end(text)
      }, err => {
        init.logger?.error({ err }, 'metrics failed')
        internalError(res)
      })
    } else notFound(res, path)
  }
}
