import type { IncomingMessage, ServerResponse } from 'node:http'

/**
 * An extra route a module mounts on the sidecar's admin HTTP server (policy pushes,
 * block-list edits). The server authenticates admin requests before calling the
 * handler, reads the body up to its size limit, and turns a thrown MeshlimitError
 * into a 400 problem+json response.
 */
export interface AdminRoute {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  /** Exact path, e.g. "/admin/v1/policies". */
  path: string
  handler(req: IncomingMessage, res: ServerResponse, body: Buffer): void | Promise<void>
}
