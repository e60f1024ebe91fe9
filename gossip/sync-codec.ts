import { encode } from '@msgpack/msgpack'
import { parseReplicaKey } from '../crdt/replica.js'
import { decodeBounded } from './msgpack.js'

/**
 * Wire format of anti-entropy pulls (msgpack over a request/response protocol):
 *
 *   request  = [version, cursorLimit | null, cursorIndex]
 *   response = [version, next | null, [group...]]       next = [limitName, index]
 *   group    = [limitName, slotMs, baseEpoch, [replicaKey...], [rep, hash, epoch - baseEpoch, count, ...]]
 *
 * A snapshot carries every live entry the responder holds, its own and other
 * replicas' alike (named by `peerId@incarnation`), so a node that restarts or joins
 * also regains the counts of nodes that have since died. Entries are absolute counts;
 * the receiver max-merges them, so pulling twice or from several peers is harmless.
 */
export const SYNC_VERSION = 1

export interface SnapshotCursor {
  limit: string
  index: number
}

export interface SnapshotGroup {
  limit: string
  slotMs: number
  /** Replica keys (`peerId@incarnation`) the entries refer to by position. */
  replicas: string[]
  /** Flat (replicaIndex, hash, epoch, count) quadruples. */
  entries: number[]
}

export interface SnapshotPage {
  next: SnapshotCursor | undefined
  groups: SnapshotGroup[]
}

export interface SyncLimits {
  /** @default 8 MiB */
  maxPageBytes: number
  /** @default 262144 */
  maxEntries: number
  /** @default 4096 */
  maxGroups: number
  /** @default 4096 */
  maxReplicas: number
}

export const DEFAULT_SYNC_LIMITS: SyncLimits = { maxPageBytes: 8 << 20, maxEntries: 1 << 18, maxGroups: 4096, maxReplicas: 4096 }

const MAX_NAME = 256
const MAX_EPOCH_SPAN = 1 << 16
const HASH_LIMIT = 2 ** 53
const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

export function encodeSyncRequest (cursor: SnapshotCursor | undefined): Uint8Array {
  return encode([SYNC_VERSION, cursor?.limit ?? null, cursor?.index ?? 0])
}

/** Decodes a request; undefined when malformed. Never throws. */
export function decodeSyncRequest (bytes: Uint8Array): { cursor: SnapshotCursor | undefined } | undefined {
  if (bytes.byteLength > 1024) return undefined
  const d = decodeBounded(bytes, { maxStrLength: MAX_NAME, maxArrayLength: 8, maxMapLength: 0, maxBinLength: 0, maxExtLength: 0 })
  if (!d.ok) return undefined
  const raw = d.raw
  if (!Array.isArray(raw) || raw.length !== 3 || raw[0] !== SYNC_VERSION) return undefined
  const [, limit, index] = raw as unknown[]
  if (!isIndex(index)) return undefined
  if (limit === null) return { cursor: undefined }
  if (typeof limit !== 'string' || limit.length === 0 || limit.length > MAX_NAME) return undefined
  return { cursor: { limit, index } }
}

export function encodeSnapshotPage (page: SnapshotPage): Uint8Array {
  const groups = page.groups.map(g => {
    let base = Infinity
    for (let j = 2; j < g.entries.length; j += 4) if (g.entries[j] < base) base = g.entries[j]
    if (base === Infinity) base = 0
    const flat = g.entries.slice()
    for (let j = 2; j < flat.length; j += 4) flat[j] -= base
    return [g.limit, g.slotMs, base, g.replicas, flat]
  })
  return encode([SYNC_VERSION, page.next === undefined ? null : [page.next.limit, page.next.index], groups])
}

export type SnapshotDecodeResult = { ok: true, page: SnapshotPage } | { ok: false, reason: string }

/** Decodes and validates a snapshot page. Never throws. */
export function decodeSnapshotPage (bytes: Uint8Array, limits: SyncLimits = DEFAULT_SYNC_LIMITS): SnapshotDecodeResult {
  if (!(bytes instanceof Uint8Array)) return { ok: false, reason: 'not bytes' }
  if (bytes.byteLength > limits.maxPageBytes) return { ok: false, reason: `page of ${bytes.byteLength} bytes exceeds ${limits.maxPageBytes}` }
  const d = decodeBounded(bytes, { maxStrLength: MAX_NAME * 4, maxArrayLength: Math.max(limits.maxGroups, limits.maxReplicas, limits.maxEntries * 4), maxMapLength: 0, maxBinLength: 0, maxExtLength: 0 })
  if (!d.ok) return d
  const raw = d.raw
  if (!Array.isArray(raw) || raw.length !== 3 || raw[0] !== SYNC_VERSION) return { ok: false, reason: 'not a version-1 page' }
  const [, rawNext, rawGroups] = raw as unknown[]
  let next: SnapshotCursor | undefined
  if (rawNext !== null) {
    if (!Array.isArray(rawNext) || rawNext.length !== 2 || typeof rawNext[0] !== 'string' || rawNext[0].length === 0 || rawNext[0].length > MAX_NAME || !isIndex(rawNext[1])) {
      return { ok: false, reason: 'invalid cursor' }
    }
    next = { limit: rawNext[0], index: rawNext[1] }
  }
  if (!Array.isArray(rawGroups) || rawGroups.length > limits.maxGroups) return { ok: false, reason: 'invalid groups' }
  const groups: SnapshotGroup[] = []
  let total = 0
  for (let g = 0; g < rawGroups.length; g++) {
    const rg: unknown = rawGroups[g]
    if (!Array.isArray(rg) || rg.length !== 5) return { ok: false, reason: `group ${g} is not a 5-element array` }
    const [limit, slotMs, base, replicas, flat] = rg as unknown[]
    if (typeof limit !== 'string' || limit.length === 0 || limit.length > MAX_NAME) return { ok: false, reason: `group ${g} has an invalid limit name` }
    if (typeof slotMs !== 'number' || !Number.isFinite(slotMs) || slotMs <= 0) return { ok: false, reason: `group ${g} has an invalid slotMs` }
    if (!isIndex(base)) return { ok: false, reason: `group ${g} has an invalid base epoch` }
    if (!Array.isArray(replicas) || replicas.length > limits.maxReplicas) return { ok: false, reason: `group ${g} has an invalid replica list` }
    for (const r of replicas) {
      if (typeof r !== 'string' || r.length > MAX_NAME || parseReplicaKey(r) === undefined) return { ok: false, reason: `group ${g} names an invalid replica` }
    }
    if (!Array.isArray(flat) || flat.length % 4 !== 0) return { ok: false, reason: `group ${g} entries are not quadruples` }
    total += flat.length / 4
    if (total > limits.maxEntries) return { ok: false, reason: `more than ${limits.maxEntries} entries` }
    const entries = new Array<number>(flat.length)
    for (let j = 0; j < flat.length; j += 4) {
      const rep: unknown = flat[j]
      const h: unknown = flat[j + 1]
      const d: unknown = flat[j + 2]
      const c: unknown = flat[j + 3]
      if (!isIndex(rep) || rep >= replicas.length) return { ok: false, reason: `group ${g} entry ${j / 4} names no replica` }
      if (!isIndex(h) || h >= HASH_LIMIT) return { ok: false, reason: `group ${g} entry ${j / 4} has an invalid key hash` }
      if (!isIndex(d) || d >= MAX_EPOCH_SPAN || !Number.isSafeInteger(base + d)) return { ok: false, reason: `group ${g} entry ${j / 4} has an invalid epoch` }
      if (!isIndex(c) || c === 0) return { ok: false, reason: `group ${g} entry ${j / 4} has an invalid count` }
      entries[j] = rep
      entries[j + 1] = h
      entries[j + 2] = base + d
      entries[j + 3] = c
    }
    groups.push({ limit, slotMs, replicas: replicas as string[], entries })
  }
  return { ok: true, page: { next, groups } }
}
