import pino from 'pino'
import type { DestinationStream, Logger, LoggerOptions } from 'pino'
import { hashString } from '../crdt/hash.js'
import type { Decision } from './decision.js'
import type { BlockEntry, BlockEvent } from './abuse/blocklist.js'

export type { Logger } from 'pino'

export interface LoggerInit {
  /**
   * Lowest level written: "trace", "debug", "info", "warn", "error", "fatal" or "silent".
   * @default "info"
   */
  level?: string
  /**
   * Where lines go: a pino destination or a file descriptor.
   * @default 2 (standard error, so that standard output stays for results)
   */
  destination?: DestinationStream | number
  /** Fields on every line (node, region...). */
  base?: Record<string, unknown>
}

/** A pino logger writing JSON lines (asynchronously buffered: no write per event on the request path). */
export function createLogger (init: LoggerInit = {}): Logger {
  const options: LoggerOptions = { level: init.level ?? 'info', base: init.base ?? {} }
  const dest = init.destination ?? 2
  return pino(options, typeof dest === 'number' ? pino.destination({ fd: dest, sync: false }) : dest)
}

/** A short, stable, non-reversible tag for a client key in logs (keys can be personal data or secrets). */
export function hashKey (key: string, seed = 0x6d6c): string {
  return hashString(key, seed).toString(16).padStart(14, '0')
}

export interface DecisionLogInit {
  logger: Logger
  /** This node's id, on every event. */
  node: string
  /** This node's region, on every event. */
  region: string
  /**
   * Log one allowed decision in this many (0 logs none); throttles are always logged.
   * @default 1000
   */
  sampleEvery?: number
  /**
   * Seed of the key hash in log lines (set the same on every node to correlate).
   * @default 0x6d6c
   */
  hashSeed?: number
}

export interface DecisionLog {
  /** An answered decision; allowed ones are sampled, denied ones always logged. */
  decision(api: string, clientKey: string | undefined, d: Decision, latencyMs: number): void
  /** A request refused by the block list (always logged). */
  blocked(api: string, clientKey: string, entry: BlockEntry): void
  /** A block-list change (always logged). */
  blockChange(e: BlockEvent): void
}

/** Structured decision and throttle events: the per-request cost is one counter decrement unless an event is written. */
export function createDecisionLog (init: DecisionLogInit): DecisionLog {
  const { logger, node, region } = init
  const every = init.sampleEvery ?? 1000
  const seed = init.hashSeed ?? 0x6d6c
  let countdown = every
  const round = (ms: number): number => Math.round(ms * 1000) / 1000
  return {
    decision (api, clientKey, d, latencyMs) {
      if (d.allowed) {
        if (every === 0 || --countdown > 0) return
        countdown = every
        logger.info({ event: 'decision', api, key: clientKey === undefined ? undefined : hashKey(clientKey, seed), policy: d.policy, decision: 'allowed', remaining: d.remaining, latencyMs: round(latencyMs), node, region, sampled: every }, 'decision')
        return
      }
      const violated: string[] = []
      for (const s of d.limits) if (!s.allowed && !s.info.shadow) violated.push(`${s.policy}/${s.id}`)
      logger.warn({ event: 'throttle', api, key: clientKey === undefined ? undefined : hashKey(clientKey, seed), policy: d.policy, limits: violated, decision: 'denied', retryAfterMs: Number.isFinite(d.retryAfterMs) ? Math.ceil(d.retryAfterMs) : null, latencyMs: round(latencyMs), node, region }, 'throttle')
    },
    blocked (api, clientKey, entry) {
      logger.warn({ event: 'throttle', api, key: hashKey(clientKey, seed), decision: 'blocked', reason: entry.reason, expiresAt: new Date(entry.expiresAt).toISOString(), node, region }, 'blocked')
    },
    blockChange (e) {
      logger.warn({ event: e.action, key: hashKey(e.key, seed), local: e.local, by: e.entry.replica, reason: e.entry.reason, expiresAt: new Date(e.entry.expiresAt).toISOString(), node, region }, e.action === 'block' ? 'client blocked' : 'client unblocked')
    }
  }
}
