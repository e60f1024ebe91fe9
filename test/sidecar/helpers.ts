import { createLogger, type Logger } from '../../src/log.js'
import { configWith, startSidecar, type Sidecar, type SidecarInit } from '../../src/sidecar/index.js'
import type { SidecarConfig } from '../../src/sidecar/config.js'

/** A logger whose JSON lines are kept in `lines`. */
export function memoryLogger (level = 'info'): { logger: Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const logger = createLogger({ level, destination: { write: (s: string) => { for (const l of s.split('\n')) if (l !== '') lines.push(JSON.parse(l)) } } })
  return { logger, lines }
}

export const TOKEN = 'test-admin-token-0123456789'

/** A sidecar on free loopback ports. */
export async function sidecar (policies: string, over: Parameters<typeof configWith>[0] = {}, init: Omit<SidecarInit, 'config'> = {}): Promise<Sidecar> {
  const config: SidecarConfig = configWith({
    policies,
    http: { port: 0 },
    grpc: { port: 0 },
    admin: { port: 0, token: TOKEN },
    ...over
  })
  return await startSidecar({ logger: createLogger({ level: 'silent' }), ...init, config })
}

export async function check (base: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<{ status: number, json: any, headers: Headers }> {
  const res = await fetch(`${base}/v1/check`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) })
  const text = await res.text()
  return { status: res.status, json: text.length > 0 ? JSON.parse(text) : undefined, headers: res.headers }
}

/** Polls `cond` every 5 ms for at most `ms`; fails naming `what` (bounded waits, no timing luck). */
export async function until (cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}
