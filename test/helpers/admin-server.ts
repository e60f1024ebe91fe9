import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { MeshlimitError } from '../../src/errors.js'
import type { AdminRoute } from '../../src/http/route.js'

export interface TestAdminServer {
  url: string
  /** Requests the server saw, as "METHOD path status". */
  log: string[]
  close(): Promise<void>
}

/**
 * A stand-in for the sidecar's admin server, following the AdminRoute contract: bearer
 * token check, body read up to a limit, a thrown MeshlimitError becomes a 400 problem.
 * Listens on 127.0.0.1 only.
 */
export async function startAdminServer (routes: AdminRoute[], token: string, maxBodyBytes = 4 << 20): Promise<TestAdminServer> {
  const log: string[] = []
  const server: Server = createServer((req, res) => {
    const done = (status: number, body: string): void => {
      res.writeHead(status, { 'content-type': 'application/problem+json' })
      res.end(body)
    }
    res.on('finish', () => log.push(`${req.method ?? ''} ${req.url ?? ''} ${res.statusCode}`))
    if (req.headers.authorization !== `Bearer ${token}`) {
      done(401, JSON.stringify({ status: 401, title: 'Unauthorized' }))
      req.resume()
      return
    }
    const route = routes.find(r => r.method === req.method && r.path === req.url)
    if (route === undefined) {
      done(404, JSON.stringify({ status: 404, title: 'Not Found' }))
      req.resume()
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > maxBodyBytes) {
        done(413, JSON.stringify({ status: 413, title: 'Content Too Large' }))
        req.destroy()
        return
      }
      chunks.push(c)
    })
    req.on('end', () => {
      if (res.writableEnded) return
      Promise.resolve(route.handler(req, res, Buffer.concat(chunks))).catch((err: unknown) => {
        const e = err instanceof MeshlimitError ? err : undefined
        done(e === undefined ? 500 : 400, JSON.stringify({ status: e === undefined ? 500 : 400, code: e?.code, detail: String(err) }))
      })
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    close: async () => await new Promise<void>(resolve => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}
