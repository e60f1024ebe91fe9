import { parse as parseYaml } from 'yaml'
import { ErrorCode, invalid } from '../src/errors.js'
import { layoutOf } from '../src/algorithms.js'
import { distribution, duration, fail, int, NAME, nonNegative, num, oneOf, record, str } from './fields.js'
import type { Limit, PolicyDocument, PolicySet, Scope } from '../src/policy/types.js'
import { validatePolicies } from '../src/policy/validate.js'
import type { Distribution } from './sim/random.js'

/**
 * A chaos scenario: the fleet, its network, its clocks, the workload and a timeline of
 * faults. Harness-independent: the simulator (chaos/sim/) runs it today, the real
 * multi-process harness (chaos/real/, later) will run the same files.
 */
export interface Scenario {
  name: string
  description: string
  /** Seed used when the command line gives none. */
  seed: number
  /** How long clients send traffic, in ms. */
  durationMs: number
  /** Final period without traffic before the last audit, in ms (shorter than the shortest window). */
  quietMs: number
  regions: RegionSpec[]
  network: NetworkSpec
  gossip: GossipSpec
  limiter: LimiterOptions
  mesh: MeshOptions
  clocks: ClockSpec
  /** The policy document every node runs (validated). */
  policies: PolicySet
  /** Per limit name ("policy/limit"): the limit, its scope, and its slot layout. */
  limits: Map<string, LimitMeta>
  workload: WorkloadSpec
  events: EventSpec[]
  measure: MeasureSpec
}

export interface LimitMeta {
  name: string
  limit: Limit
  scope: Scope
  slotMs: number
  /** Slots per window: k for a sliding window, 1 for a fixed window. */
  slotsPerWindow: number
  /** The policy's partition mode, and whether it is strict (escrowed rights). */
  onPartition: 'share' | 'closed' | 'open'
  strict: boolean
}

export interface RegionSpec {
  name: string
  nodes: number
  /** Share of the traffic that enters through this region (normalised over regions). */
  share: number
}

export interface NetworkSpec {
  /** Latency between two nodes of one region. */
  intraRegion: Distribution
  /** Latency between nodes of different regions. */
  interRegion: Distribution
  /** Probability that one delivery is lost. */
  loss: number
  /** Probability that one delivery arrives twice (the copy after up to reorderDelayMs more). */
  duplicate: number
  /** Probability that one delivery is held back by up to reorderDelayMs (so later ones overtake it). */
  reorder: number
  reorderDelayMs: number
  /** Upload bandwidth of every node, bytes/s (each copy of a message takes its share). */
  uplinkBytesPerSec: number
  /** Bytes each copy of a message costs beyond its payload (framing, signature, topic, ids). */
  overheadBytesPerMessage: number
}

export interface GossipSpec {
  /**
   * `region`: counters travel on one topic per region (the design's fast path); `mesh`:
   * one topic for every node.
   */
  topology: 'region' | 'mesh'
  flushIntervalMs: number
  /** `direct`: one copy to every subscriber; `relay`: gossipsub-like mesh relay of degree meshDegree. */
  delivery: 'direct' | 'relay'
  meshDegree: number
}

/** Limiter options every node gets. */
export interface LimiterOptions {
  maxClockSkewMs?: number
  maxKeys?: number
  maxMessageBytes?: number
  /** Local shares on gossiped limits (the limiter's default: on). */
  localShares?: boolean
  shareHorizonMs?: number
}

/**
 * Mesh node options every node gets (membership, anti-entropy, region aggregates);
 * each defaults to the product's default.
 */
export interface MeshOptions {
  /** Membership heartbeat interval, ms. */
  heartbeatIntervalMs?: number
  /** No heartbeat for this long: suspect (partition modes start), ms. */
  suspectAfterMs?: number
  deadAfterMs?: number
  /** Cross-region interval of region aggregates, ms. */
  aggregateIntervalMs?: number
  /** Whether a starting node pulls a snapshot from peers before serving. */
  syncOnStart?: boolean
  syncTimeoutMs?: number
  /** Interval of background anti-entropy pulls, ms (0: none). */
  pullIntervalMs?: number
}

export interface ClockSpec {
  /** Offset of each node's clock from true time, drawn once per node (kept across its restarts). */
  skew: Distribution | undefined
}

export type Profile =
  | { type: 'steady' }
  /** `factor` times the rate for `burstMs` at the start of every `periodMs`, 1x otherwise. */
  | { type: 'burst', periodMs: number, burstMs: number, factor: number }
  /** Rate factor moving linearly from `from` to `to` over the run. */
  | { type: 'ramp', from: number, to: number }

export interface ClientSpec {
  name: string
  /** Mean requests per second at factor 1. */
  ratePerSec: number
  profile: Profile
  /** Regions this client's requests enter through (default: every region, by share). */
  regions: string[] | undefined
}

export interface HotKey {
  key: string
  /** Fraction of every client's requests that go to this key. */
  share: number
}

export interface WorkloadSpec {
  /** Descriptor field the key goes in. */
  field: string
  /** Size of the key population the popularity law draws from. */
  keys: number
  popularity: 'zipf' | 'uniform'
  zipfS: number
  hotKeys: HotKey[]
  /** `uniform`: any live node of the region; `sticky`: the same node for a key while it lives. */
  spread: 'uniform' | 'sticky'
  clients: ClientSpec[]
}

/** A set of nodes: "all", "region:NAME", "nodes:A-B", "fraction:A-B", "random:N" or "random:P%". */
export type Selector = string

export type EventSpec =
  | { atMs: number, kind: 'partition', groups: Selector[][] }
  | { atMs: number, kind: 'heal' }
  | { atMs: number, kind: 'crash', nodes: Selector, restartAfterMs: number | undefined, everyMs: number | undefined, untilMs: number | undefined }
  | { atMs: number, kind: 'join', region: string, nodes: number }
  | { atMs: number, kind: 'leave', nodes: Selector }

export interface MeasureSpec {
  /** Interval of the running audit of views against the truth, in ms. */
  auditEveryMs: number
  /** Keys the running audit inspects on every node (the hottest, then a seeded sample). */
  auditKeys: number
  /** Admissions sampled per simulated second to time gossip convergence. */
  samplesPerSec: number
  /** Width of one point of the report chart, in ms. */
  chartBucketMs: number
  /** Windows starting this soon after traffic starts are not steady state (default: two windows). */
  warmupMs: number
}

/** Most nodes a scenario may have, joins included (the audits keep per-link fields, N x N). */
export const MAX_NODES = 2000

const TOP_FIELDS = ['name', 'description', 'seed', 'duration', 'quiet', 'regions', 'network', 'gossip', 'limiter', 'mesh', 'clocks', 'policies', 'workload', 'events', 'measure']

const SELECTOR = /^(all|region:[A-Za-z0-9_.-]+|nodes:\d+-\d+|fraction:(0|1|0?\.\d+)-(0|1|0?\.\d+)|random:\d+%?)$/

function selector (v: unknown, path: string, regions: RegionSpec[]): Selector {
  if (typeof v !== 'string' || !SELECTOR.test(v)) fail(path, v, 'is not a node selector', 'use "all", "region:NAME", "nodes:A-B", "fraction:A-B" (e.g. 0-0.5), "random:N" or "random:P%"')
  if (v.startsWith('region:') && !regions.some(r => r.name === v.slice(7))) fail(path, v, 'names no region of the scenario', `use one of ${regions.map(r => `region:${r.name}`).join(', ')}`)
  return v
}

function profile (v: unknown, path: string): Profile {
  const r = record(v, path, ['type', 'period', 'burst', 'factor', 'from', 'to'])
  const type = oneOf(r.type, `${path}.type`, ['steady', 'burst', 'ramp'] as const, 'steady')
  switch (type) {
    case 'steady': return { type }
    case 'burst': {
      const periodMs = duration(r.period, `${path}.period`, 1)
      const burstMs = duration(r.burst, `${path}.burst`, 1)
      if (burstMs > periodMs) fail(`${path}.burst`, r.burst, 'is longer than the period', 'make the burst shorter than the period')
      return { type, periodMs, burstMs, factor: num(r.factor, `${path}.factor`, 0, 1e6) }
    }
    case 'ramp': return { type, from: num(r.from, `${path}.from`, 0, 1e6), to: num(r.to, `${path}.to`, 0, 1e6) }
  }
}

/** Parses and validates a scenario from YAML or JSON text (JSON is YAML). */
export function parseScenario (text: string, fallbackName = 'scenario'): Scenario {
  let raw: unknown
  try {
    raw = parseYaml(text)
  } catch (err) {
    throw invalid(ErrorCode.OPTION_INVALID, 'scenario', text.slice(0, 40), `is not valid YAML or JSON (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`, 'fix the syntax at the position given')
  }
  return validateScenario(raw, fallbackName)
}

/** The input each validated scenario was made from (workers of a parallel run validate it again). */
const sources = new WeakMap<Scenario, { input: unknown, name: string }>()

/** The plain input `s` was validated from and its fallback name, when validateScenario made it. */
export function scenarioSource (s: Scenario): { input: unknown, name: string } | undefined {
  return sources.get(s)
}

/** Validates a scenario object, filling every default. */
export function validateScenario (input: unknown, fallbackName = 'scenario'): Scenario {
  const s = validate(input, fallbackName)
  sources.set(s, { input, name: fallbackName })
  return s
}

function validate (input: unknown, fallbackName: string): Scenario {
  const r = record(input, '(root)', TOP_FIELDS)
  const name = str(r.name, 'name', NAME, fallbackName)
  const description = r.description === undefined ? '' : String(r.description)
  const seed = int(r.seed, 'seed', 0, 2 ** 32 - 1, 1)
  const durationMs = duration(r.duration, 'duration', 100)

  if (!Array.isArray(r.regions) || r.regions.length === 0) fail('regions', r.regions, 'must list at least one region', 'add regions: [{ name: us, nodes: 10 }]')
  const regions: RegionSpec[] = r.regions.map((x: unknown, i: number) => {
    const rr = record(x, `regions[${i}]`, ['name', 'nodes', 'share'])
    return { name: str(rr.name, `regions[${i}].name`, NAME), nodes: int(rr.nodes, `regions[${i}].nodes`, 0, 10_000), share: num(rr.share, `regions[${i}].share`, 0, 1e6, 1) }
  })
  const names = new Set<string>()
  for (const [i, g] of regions.entries()) {
    if (names.has(g.name)) fail(`regions[${i}].name`, g.name, 'is used twice', 'give every region its own name')
    names.add(g.name)
  }
  if (regions.reduce((n, g) => n + g.nodes, 0) === 0) fail('regions', r.regions, 'has no node', 'give some region nodes > 0')
  if (regions.every(g => g.share === 0)) fail('regions', r.regions, 'has no region with a traffic share', 'give some region share > 0')

  const n = record(r.network, 'network', ['intraRegion', 'interRegion', 'loss', 'duplicate', 'reorder', 'reorderDelay', 'uplinkBytesPerSec', 'overheadBytesPerMessage'])
  const network: NetworkSpec = {
    intraRegion: nonNegative(n.intraRegion === undefined ? { dist: 'lognormal', medianMs: 1, p99Ms: 5 } : distribution(n.intraRegion, 'network.intraRegion'), 'network.intraRegion'),
    interRegion: nonNegative(n.interRegion === undefined ? { dist: 'lognormal', medianMs: 60, p99Ms: 120 } : distribution(n.interRegion, 'network.interRegion'), 'network.interRegion'),
    loss: num(n.loss, 'network.loss', 0, 0.99, 0),
    duplicate: num(n.duplicate, 'network.duplicate', 0, 1, 0),
    reorder: num(n.reorder, 'network.reorder', 0, 1, 0),
    reorderDelayMs: duration(n.reorderDelay, 'network.reorderDelay', 0, 50),
    uplinkBytesPerSec: num(n.uplinkBytesPerSec, 'network.uplinkBytesPerSec', 1000, 1e12, 125_000_000),
    overheadBytesPerMessage: int(n.overheadBytesPerMessage, 'network.overheadBytesPerMessage', 0, 65536, 180)
  }

  const g = record(r.gossip, 'gossip', ['topology', 'flushInterval', 'delivery', 'meshDegree'])
  const gossip: GossipSpec = {
    topology: oneOf(g.topology, 'gossip.topology', ['region', 'mesh'] as const, 'region'),
    flushIntervalMs: duration(g.flushInterval, 'gossip.flushInterval', 1, 100),
    delivery: oneOf(g.delivery, 'gossip.delivery', ['direct', 'relay'] as const, 'direct'),
    meshDegree: int(g.meshDegree, 'gossip.meshDegree', 1, 64, 6)
  }

  const l = record(r.limiter, 'limiter', ['maxClockSkewMs', 'maxKeys', 'maxMessageBytes', 'localShares', 'shareHorizonMs'])
  const limiter: LimiterOptions = {}
  if (l.maxClockSkewMs !== undefined) limiter.maxClockSkewMs = int(l.maxClockSkewMs, 'limiter.maxClockSkewMs', 0, 3_600_000)
  if (l.maxKeys !== undefined) limiter.maxKeys = int(l.maxKeys, 'limiter.maxKeys', 1, 100_000_000)
  if (l.maxMessageBytes !== undefined) limiter.maxMessageBytes = int(l.maxMessageBytes, 'limiter.maxMessageBytes', 1024, 1 << 20)
  if (l.localShares !== undefined) {
    if (typeof l.localShares !== 'boolean') fail('limiter.localShares', l.localShares, 'must be true or false', 'write localShares: false to compare with the simple rule')
    limiter.localShares = l.localShares
  }
  if (l.shareHorizonMs !== undefined) limiter.shareHorizonMs = int(l.shareHorizonMs, 'limiter.shareHorizonMs', 0, 60_000)

  const mo = record(r.mesh, 'mesh', ['heartbeatInterval', 'suspectAfter', 'deadAfter', 'aggregateInterval', 'syncOnStart', 'syncTimeout', 'pullInterval'])
  const mesh: MeshOptions = {}
  if (mo.heartbeatInterval !== undefined) mesh.heartbeatIntervalMs = duration(mo.heartbeatInterval, 'mesh.heartbeatInterval', 1)
  if (mo.suspectAfter !== undefined) mesh.suspectAfterMs = duration(mo.suspectAfter, 'mesh.suspectAfter', 1)
  if (mo.deadAfter !== undefined) mesh.deadAfterMs = duration(mo.deadAfter, 'mesh.deadAfter', 1)
  const beat = mesh.heartbeatIntervalMs ?? 1000
  if ((mesh.suspectAfterMs ?? 3 * beat) >= (mesh.deadAfterMs ?? 10 * beat)) fail('mesh.deadAfter', mo.deadAfter, 'is not longer than suspectAfter', 'make deadAfter longer than suspectAfter (defaults: 3 and 10 heartbeat intervals)')
  if (mo.aggregateInterval !== undefined) mesh.aggregateIntervalMs = duration(mo.aggregateInterval, 'mesh.aggregateInterval', 1)
  if (mo.syncOnStart !== undefined) {
    if (typeof mo.syncOnStart !== 'boolean') fail('mesh.syncOnStart', mo.syncOnStart, 'must be true or false', 'write syncOnStart: false to start nodes blank')
    mesh.syncOnStart = mo.syncOnStart
  }
  if (mo.syncTimeout !== undefined) mesh.syncTimeoutMs = duration(mo.syncTimeout, 'mesh.syncTimeout', 1)
  if (mo.pullInterval !== undefined) mesh.pullIntervalMs = duration(mo.pullInterval, 'mesh.pullInterval', 0)

  const c = record(r.clocks, 'clocks', ['skew'])
  const clocks: ClockSpec = { skew: c.skew === undefined ? undefined : distribution(c.skew, 'clocks.skew') }

  if (r.policies === undefined) fail('policies', undefined, 'is required', 'add a policy document: policies: { policies: [ { id: per-user, key: user, limits: [ { limit: 100, window: 1s } ] } ] }')
  const policies = validatePolicies(r.policies as PolicyDocument)
  const limits = limitsOf(policies)

  const w = record(r.workload, 'workload', ['field', 'keys', 'popularity', 'zipfS', 'hotKeys', 'spread', 'clients'])
  if (!Array.isArray(w.clients) || w.clients.length === 0) fail('workload.clients', w.clients, 'must list at least one client', 'add clients: [{ name: web, ratePerSec: 1000 }]')
  const hot = w.hotKeys === undefined ? [] : w.hotKeys
  if (!Array.isArray(hot)) fail('workload.hotKeys', hot, 'is not a list', 'write hotKeys: [{ key: hot, share: 0.2 }]')
  const workload: WorkloadSpec = {
    field: str(w.field, 'workload.field', /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/, 'user'),
    keys: int(w.keys, 'workload.keys', 1, 10_000_000, 1000),
    popularity: oneOf(w.popularity, 'workload.popularity', ['zipf', 'uniform'] as const, 'zipf'),
    zipfS: num(w.zipfS, 'workload.zipfS', 0, 10, 1),
    hotKeys: hot.map((x: unknown, i: number) => {
      const h = record(x, `workload.hotKeys[${i}]`, ['key', 'share'])
      return { key: str(h.key, `workload.hotKeys[${i}].key`, NAME), share: num(h.share, `workload.hotKeys[${i}].share`, 0, 1) }
    }),
    spread: oneOf(w.spread, 'workload.spread', ['uniform', 'sticky'] as const, 'uniform'),
    clients: w.clients.map((x: unknown, i: number) => {
      const cr = record(x, `workload.clients[${i}]`, ['name', 'ratePerSec', 'profile', 'regions'])
      const regs = cr.regions === undefined ? undefined : cr.regions
      if (regs !== undefined && (!Array.isArray(regs) || regs.some(x => !names.has(String(x))))) {
        fail(`workload.clients[${i}].regions`, regs, 'must list regions of the scenario', `use names from ${[...names].join(', ')}`)
      }
      return {
        name: str(cr.name, `workload.clients[${i}].name`, NAME, `client-${i}`),
        ratePerSec: num(cr.ratePerSec, `workload.clients[${i}].ratePerSec`, 0, 1e8),
        profile: profile(cr.profile, `workload.clients[${i}].profile`),
        regions: regs as string[] | undefined
      }
    })
  }
  if (workload.hotKeys.reduce((s, h) => s + h.share, 0) > 1) fail('workload.hotKeys', w.hotKeys, 'shares add up to more than 1', 'lower the shares')
  workload.hotKeys.forEach((h, i) => {
    if (/^k\d+$/.test(h.key)) fail(`workload.hotKeys[${i}].key`, h.key, 'is a name of the key population (k0, k1, ...)', 'name hot keys otherwise, e.g. "hot"')
  })

  const events = eventsOf(r.events, regions)
  const fleet = regions.reduce((n, g) => n + g.nodes, 0) + events.reduce((n, e) => n + (e.kind === 'join' ? e.nodes : 0), 0)
  if (fleet > MAX_NODES) fail('regions', fleet, `makes ${fleet} nodes with joins, more than the simulator's ${MAX_NODES}`, 'use fewer nodes')
  if (!events.every(e => e.kind === 'join' || e.atMs < durationMs)) fail('events', r.events, 'has an event after the end of the traffic', 'keep every event before duration')

  const shortestWindow = Math.min(...[...limits.values()].map(x => x.limit.windowMs))
  const longestWindow = Math.max(...[...limits.values()].map(x => x.limit.windowMs))
  const m = record(r.measure, 'measure', ['auditEvery', 'auditKeys', 'samplesPerSec', 'chartBucket', 'warmup'])
  const measure: MeasureSpec = {
    auditEveryMs: duration(m.auditEvery, 'measure.auditEvery', 10, 1000),
    auditKeys: int(m.auditKeys, 'measure.auditKeys', 0, 10_000, 16),
    samplesPerSec: num(m.samplesPerSec, 'measure.samplesPerSec', 0, 1e6, 20),
    chartBucketMs: duration(m.chartBucket, 'measure.chartBucket', 1, 100),
    warmupMs: duration(m.warmup, 'measure.warmup', 0, 2 * longestWindow)
  }

  // The final audit compares views with the truth over the slots still in the window.
  const quietMs = duration(r.quiet, 'quiet', 0, Math.min(Math.floor(shortestWindow / 2), 1000))
  if (quietMs >= shortestWindow) fail('quiet', r.quiet, `is not shorter than the shortest window (${shortestWindow} ms), so the final audit would see only expired counts`, 'shorten quiet or lengthen the window')

  return { name, description, seed, durationMs, quietMs, regions, network, gossip, limiter, mesh, clocks, policies, limits, workload, events, measure }
}

/**
 * The limits the simulator can measure: one policy group (so one winner per request),
 * one sliding- or fixed-window limit per policy, no shadow policies.
 */
function limitsOf (set: PolicySet): Map<string, LimitMeta> {
  const out = new Map<string, LimitMeta>()
  const groups = new Set(set.policies.map(p => p.group))
  if (groups.size !== 1) fail('policies', [...groups], 'has more than one policy group', 'measure one group per scenario (give every policy the same key fields or group)')
  for (const [i, p] of set.policies.entries()) {
    if (p.shadow) fail(`policies.policies[${i}].shadow`, true, 'shadow policies never deny, so there is nothing to measure', 'remove shadow')
    if (p.limits.length !== 1) fail(`policies.policies[${i}].limits`, p.limits.length, 'must hold exactly one limit in a scenario', 'split the limits into policies of their own scenario')
    const limit = p.limits[0]
    if (limit.algorithm !== 'sliding-window' && limit.algorithm !== 'fixed-window') {
      fail(`policies.policies[${i}].limits[0].algorithm`, limit.algorithm, 'is not measured by the simulator yet', 'use sliding-window or fixed-window')
    }
    const { slotMs } = layoutOf(limit)
    const name = `${p.id}/${limit.id}`
    out.set(name, { name, limit, scope: p.scope, slotMs, slotsPerWindow: limit.algorithm === 'fixed-window' ? 1 : limit.slots, onPartition: p.onPartition, strict: p.strict })
  }
  return out
}

function eventsOf (v: unknown, regions: RegionSpec[]): EventSpec[] {
  if (v === undefined) return []
  if (!Array.isArray(v)) fail('events', v, 'is not a list', 'write events: [{ at: 5s, partition: [["region:us"], ["region:eu"]] }]')
  const out: EventSpec[] = []
  v.forEach((x: unknown, i: number) => {
    const p = `events[${i}]`
    const r = record(x, p, ['at', 'partition', 'heal', 'crash', 'join', 'leave'])
    const atMs = duration(r.at, `${p}.at`, 0)
    const kinds = ['partition', 'heal', 'crash', 'join', 'leave'].filter(k => r[k] !== undefined)
    if (kinds.length !== 1) fail(p, x, 'must have exactly one of partition, heal, crash, join, leave', 'split it into one event per action')
    if (r.partition !== undefined) {
      if (!Array.isArray(r.partition) || r.partition.length < 1 || !r.partition.every(Array.isArray)) fail(`${p}.partition`, r.partition, 'is not a list of node groups', 'write partition: [["region:us"], ["region:eu", "region:ap"]] (nodes in no group form one more group)')
      out.push({ atMs, kind: 'partition', groups: (r.partition as unknown[][]).map((gr, j) => gr.map((s, k) => selector(s, `${p}.partition[${j}][${k}]`, regions))) })
    } else if (r.heal !== undefined) {
      out.push({ atMs, kind: 'heal' })
    } else if (r.crash !== undefined) {
      const cr = record(typeof r.crash === 'string' ? { nodes: r.crash } : r.crash, `${p}.crash`, ['nodes', 'restartAfter', 'every', 'until'])
      out.push({
        atMs,
        kind: 'crash',
        nodes: selector(cr.nodes, `${p}.crash.nodes`, regions),
        restartAfterMs: cr.restartAfter === undefined ? undefined : duration(cr.restartAfter, `${p}.crash.restartAfter`, 1),
        everyMs: cr.every === undefined ? undefined : duration(cr.every, `${p}.crash.every`, 1),
        untilMs: cr.until === undefined ? undefined : duration(cr.until, `${p}.crash.until`, 0)
      })
    } else if (r.join !== undefined) {
      const j = record(r.join, `${p}.join`, ['region', 'nodes'])
      const region = str(j.region, `${p}.join.region`, NAME)
      if (!regions.some(g => g.name === region)) fail(`${p}.join.region`, region, 'names no region of the scenario', `use one of ${regions.map(g => g.name).join(', ')}`)
      out.push({ atMs, kind: 'join', region, nodes: int(j.nodes, `${p}.join.nodes`, 1, 10_000) })
    } else {
      out.push({ atMs, kind: 'leave', nodes: selector(r.leave, `${p}.leave`, regions) })
    }
  })
  return out.sort((a, b) => a.atMs - b.atMs)
}
