/**
 * Replica identity: a peer id plus an incarnation that grows on every start.
 *
 * A restarted node writes under a new replica id, so the entries its previous
 * incarnation left with peers are never regressed (max-merge would ignore a smaller
 * value) and never double-counted: both stay until their slots leave the window.
 */
export interface ReplicaId {
  readonly peerId: string
  readonly incarnation: number
}

const SEPARATOR = '@'

/** The string form of a replica id, `peerId@incarnation`, used in plain-object state. */
export function replicaKey (r: ReplicaId): string {
  return r.peerId + SEPARATOR + String(r.incarnation)
}

/** Inverse of {@link replicaKey}; returns undefined for a malformed key. */
export function parseReplicaKey (key: string): ReplicaId | undefined {
  const at = key.lastIndexOf(SEPARATOR)
  if (at <= 0) return undefined
  const digits = key.slice(at + 1)
  // Only the decimal form replicaKey writes: Number() also takes '', ' 1', '0x10', '1e3'.
  if (!/^(0|[1-9][0-9]*)$/.test(digits)) return undefined
  const incarnation = Number(digits)
  if (!Number.isSafeInteger(incarnation) || incarnation < 0) return undefined
  return { peerId: key.slice(0, at), incarnation }
}

/**
 * Interns replica keys to small integers so stores can index per-replica columns by
 * number. Index 0 is always the local replica.
 */
export class ReplicaTable {
  private readonly ids = new Map<string, number>()
  private readonly names: string[] = []

  constructor (local: ReplicaId) {
    this.intern(replicaKey(local))
  }

  /** The small integer for a replica key, allocating one on first sight. */
  intern (key: string): number {
    let id = this.ids.get(key)
    if (id === undefined) {
      id = this.names.length
      this.names.push(key)
      this.ids.set(key, id)
    }
    return id
  }

  /** The small integer for a replica key, or undefined when it was never seen. */
  lookup (key: string): number | undefined {
    return this.ids.get(key)
  }

  keyOf (id: number): string {
    const name = this.names[id]
    if (name === undefined) throw new RangeError(`unknown replica index ${id}`)
    return name
  }

  get size (): number {
    return this.names.length
  }
}
