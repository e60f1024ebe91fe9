/**
 * Gossip topic names. A mesh has a name (several meshes can share a network without
 * hearing each other); counters are published per region, so a node only receives
 * its own region's fast traffic, and everything else is mesh-wide.
 */
export interface Topics {
  /** Per-node counter deltas of one region, at the fast interval. */
  counters(region: string): string
  /** Region aggregates, mesh-wide, at the slower cross-region interval. */
  readonly aggregates: string
  /** Signed policy bundles. */
  readonly policies: string
  /** Block-list entries. */
  readonly blocklist: string
  /** Membership heartbeats. */
  readonly membership: string
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

/** Topic names of mesh `mesh` (1-64 of letters, digits, `_`, `.`, `-`). */
export function topicsOf (mesh: string): Topics {
  if (!NAME.test(mesh)) throw new RangeError(`mesh name ${JSON.stringify(mesh)} must be 1-64 letters, digits, "_", "." or "-"`)
  const base = `meshlimit/${mesh}`
  return {
    counters: region => {
      if (!NAME.test(region)) throw new RangeError(`region name ${JSON.stringify(region)} must be 1-64 letters, digits, "_", "." or "-"`)
      return `${base}/counters/${region}`
    },
    aggregates: `${base}/aggregates`,
    policies: `${base}/policies`,
    blocklist: `${base}/blocklist`,
    membership: `${base}/membership`
  }
}
