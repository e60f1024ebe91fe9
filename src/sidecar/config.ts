import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { ErrorCode, MeshlimitError, invalid } from '../errors.js'

/** The sidecar's settings, every field filled in. */
export interface SidecarConfig {
  mesh: string
  region: string
  /** A policy file path, or inline policy text (JSON or YAML). */
  policies: string
  http: { host: string, port: number, maxBodyBytes: number }
  /**
   * `maxConcurrentStreams`: calls in flight per HTTP/2 connection, advertised to clients (0: unlimited).
   * `youngStreamTables`: keep node's per-connection stream tables young (src/sidecar/stream-table.ts).
   */
  grpc: { enabled: boolean, host: string, port: number, maxConcurrentStreams: number, youngStreamTables: boolean }
  admin: { enabled: boolean, host: string, port: number, token: string | undefined, maxBodyBytes: number }
  headers: { legacy: boolean, ietf: boolean, resetFormat: 'delta-seconds' | 'epoch-seconds', retryAfterJitterMs: number }
  log: { level: string, sampleEvery: number }
  limiter: { flushIntervalMs: number, maxKeys: number, hashSeed: number }
  escalation: { enabled: boolean, windowMs: number, threshold: number, blockMs: number }
  blocklist: { maxEntries: number, maxBlockMs: number }
  /** The libp2p mesh: the node joins one when it listens, has bootstrap peers, or uses mDNS. */
  network: { listen: string[], bootstrap: string[], pskFile: string | undefined, allowNoPsk: boolean, identityFile: string | undefined, mdns: boolean }
  /** Signed policy bundles: with trusted keys the node runs bundles gossiped on the mesh; `policies` is the fallback. */
  policy: { trustedKeys: string[] }
  /** Debugging aids exported in /metrics. `stallWatchMs`: event-loop stalls at least this long are counted by cause (0: off). */
  metrics: { stallWatchMs: number }
}

/** Whether these settings put the node on a libp2p mesh. */
export function joinsMesh (config: SidecarConfig): boolean {
  return config.network.listen.length > 0 || config.network.bootstrap.length > 0 || config.network.mdns
}

/** The policies `meshlimit start` runs with when none are given: one per-client and one per-API-key limit. */
export const EXAMPLE_POLICIES = `version: 1
policies:
  - id: per-client
    description: every client IP, 100 requests per 10 seconds
    key: ip
    limits: [ { limit: 100, window: 10s } ]
  - id: per-api-key
    description: every API key, 1000 requests per minute
    key: apiKey
    limits: [ { limit: 1000, window: 1m } ]
`

export const DEFAULT_CONFIG: SidecarConfig = {
  mesh: 'default',
  region: 'local',
  policies: EXAMPLE_POLICIES,
  http: { host: '127.0.0.1', port: 8080, maxBodyBytes: 65536 },
  grpc: { enabled: true, host: '127.0.0.1', port: 8081, maxConcurrentStreams: 0, youngStreamTables: true },
  admin: { enabled: true, host: '127.0.0.1', port: 8082, token: undefined, maxBodyBytes: 1 << 20 },
  headers: { legacy: true, ietf: true, resetFormat: 'delta-seconds', retryAfterJitterMs: 0 },
  log: { level: 'info', sampleEvery: 1000 },
  limiter: { flushIntervalMs: 50, maxKeys: 1_000_000, hashSeed: 0 },
  escalation: { enabled: true, windowMs: 60_000, threshold: 10, blockMs: 600_000 },
  blocklist: { maxEntries: 100_000, maxBlockMs: 86_400_000 },
  network: { listen: [], bootstrap: [], pskFile: undefined, allowNoPsk: false, identityFile: undefined, mdns: false },
  policy: { trustedKeys: [] },
  metrics: { stallWatchMs: 0 }
}

type Kind = 'string' | 'port' | 'int' | 'bool' | 'level' | 'reset' | 'name' | 'list'

interface Setting {
  /** Dotted path in the config (and the config file). */
  path: string
  kind: Kind
  flag?: string
  env?: string
  help: string
}

/** Every setting, with its flag and environment variable: one table for parsing and for help text. */
export const SETTINGS: readonly Setting[] = [
  { path: 'mesh', kind: 'name', flag: '--mesh', env: 'MESHLIMIT_MESH', help: 'mesh name; nodes only hear their own mesh' },
  { path: 'region', kind: 'name', flag: '--region', env: 'MESHLIMIT_REGION', help: 'region label' },
  { path: 'policies', kind: 'string', flag: '--policies', env: 'MESHLIMIT_POLICIES', help: 'policy file (YAML or JSON); default: an example policy' },
  { path: 'http.host', kind: 'string', flag: '--host', env: 'MESHLIMIT_HOST', help: 'address of the decision API and metrics' },
  { path: 'http.port', kind: 'port', flag: '--port', env: 'MESHLIMIT_PORT', help: 'port of the decision API, /metrics, /healthz, /readyz' },
  { path: 'http.maxBodyBytes', kind: 'int', help: 'largest decision request body' },
  { path: 'grpc.enabled', kind: 'bool', flag: '--grpc', env: 'MESHLIMIT_GRPC', help: 'serve the Envoy rate limit service' },
  { path: 'grpc.host', kind: 'string', flag: '--grpc-host', env: 'MESHLIMIT_GRPC_HOST', help: 'address of the gRPC service' },
  { path: 'grpc.port', kind: 'port', flag: '--grpc-port', env: 'MESHLIMIT_GRPC_PORT', help: 'port of the gRPC service' },
  { path: 'grpc.maxConcurrentStreams', kind: 'int', flag: '--grpc-max-streams', env: 'MESHLIMIT_GRPC_MAX_STREAMS', help: 'calls in flight per gRPC connection; more wait in the client (0: unlimited)' },
  { path: 'grpc.youngStreamTables', kind: 'bool', flag: '--grpc-young-stream-tables', env: 'MESHLIMIT_GRPC_YOUNG_STREAM_TABLES', help: 'copy each connection\'s table of open streams after every collection, so finished calls are not promoted (off: node as is)' },
  { path: 'admin.enabled', kind: 'bool', flag: '--admin', env: 'MESHLIMIT_ADMIN', help: 'serve the admin API' },
  { path: 'admin.host', kind: 'string', flag: '--admin-host', env: 'MESHLIMIT_ADMIN_HOST', help: 'address of the admin API' },
  { path: 'admin.port', kind: 'port', flag: '--admin-port', env: 'MESHLIMIT_ADMIN_PORT', help: 'port of the admin API' },
  { path: 'admin.token', kind: 'string', flag: '--admin-token', env: 'MESHLIMIT_ADMIN_TOKEN', help: 'bearer token of the admin API; default: a random one, printed at start' },
  { path: 'admin.maxBodyBytes', kind: 'int', help: 'largest admin request body' },
  { path: 'headers.legacy', kind: 'bool', flag: '--legacy-headers', env: 'MESHLIMIT_LEGACY_HEADERS', help: 'X-RateLimit-* headers' },
  { path: 'headers.ietf', kind: 'bool', flag: '--ietf-headers', env: 'MESHLIMIT_IETF_HEADERS', help: 'RateLimit-Policy and RateLimit headers' },
  { path: 'headers.resetFormat', kind: 'reset', flag: '--reset-format', env: 'MESHLIMIT_RESET_FORMAT', help: 'X-RateLimit-Reset as delta-seconds or epoch-seconds' },
  { path: 'headers.retryAfterJitterMs', kind: 'int', flag: '--retry-jitter-ms', env: 'MESHLIMIT_RETRY_JITTER_MS', help: 'random extra delay added to Retry-After' },
  { path: 'log.level', kind: 'level', flag: '--log-level', env: 'MESHLIMIT_LOG_LEVEL', help: 'trace, debug, info, warn, error, fatal or silent' },
  { path: 'log.sampleEvery', kind: 'int', flag: '--log-sample', env: 'MESHLIMIT_LOG_SAMPLE', help: 'log one allowed decision in this many (0: none)' },
  { path: 'limiter.flushIntervalMs', kind: 'int', flag: '--flush-ms', env: 'MESHLIMIT_FLUSH_MS', help: 'gossip flush interval' },
  { path: 'limiter.maxKeys', kind: 'int', help: 'most keys per limit' },
  { path: 'limiter.hashSeed', kind: 'int', env: 'MESHLIMIT_HASH_SEED', help: 'key hash seed, the same on every node' },
  { path: 'escalation.enabled', kind: 'bool', flag: '--escalation', env: 'MESHLIMIT_ESCALATION', help: 'block clients denied on many policies or endpoints' },
  { path: 'escalation.windowMs', kind: 'int', help: 'escalation window' },
  { path: 'escalation.threshold', kind: 'int', help: 'distinct denials that escalate' },
  { path: 'escalation.blockMs', kind: 'int', help: 'how long an escalated client is blocked' },
  { path: 'blocklist.maxEntries', kind: 'int', help: 'most block-list entries' },
  { path: 'blocklist.maxBlockMs', kind: 'int', help: 'longest block' },
  { path: 'network.listen', kind: 'list', flag: '--listen', env: 'MESHLIMIT_LISTEN', help: 'libp2p addresses to listen on, comma-separated (e.g. /ip4/0.0.0.0/tcp/4001): joins a mesh' },
  { path: 'network.bootstrap', kind: 'list', flag: '--bootstrap', env: 'MESHLIMIT_BOOTSTRAP', help: 'multiaddrs (with /p2p/<id>) of peers to join, comma-separated' },
  { path: 'network.pskFile', kind: 'string', flag: '--psk', env: 'MESHLIMIT_PSK_FILE', help: 'private-network key file (meshlimit psk); required on a mesh' },
  { path: 'network.allowNoPsk', kind: 'bool', flag: '--allow-no-psk', env: 'MESHLIMIT_ALLOW_NO_PSK', help: 'run a mesh without a private-network key (local development only)' },
  { path: 'network.identityFile', kind: 'string', flag: '--identity', env: 'MESHLIMIT_IDENTITY_FILE', help: 'peer identity file, created on first start (keeps the peer id)' },
  { path: 'network.mdns', kind: 'bool', flag: '--mdns', env: 'MESHLIMIT_MDNS', help: 'find peers on the local network by mDNS (development)' },
  { path: 'metrics.stallWatchMs', kind: 'int', flag: '--stall-watch-ms', env: 'MESHLIMIT_STALL_WATCH_MS', help: 'count event-loop stalls this long or longer by cause (gc or other) in /metrics; 0: off' },
  { path: 'policy.trustedKeys', kind: 'list', flag: '--trusted-keys', env: 'MESHLIMIT_TRUSTED_KEYS', help: 'operator public keys (meshlimit keygen), comma-separated: run signed bundles' }
]

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

function coerce (s: Setting, raw: unknown, where: string): unknown {
  const bad = (problem: string, fix: string): MeshlimitError => invalid(ErrorCode.OPTION_INVALID, where, raw, problem, fix)
  switch (s.kind) {
    case 'string':
      if (typeof raw !== 'string' || raw.length === 0) throw bad('must be a non-empty string', `give ${s.help}`)
      return raw
    case 'name':
      if (typeof raw !== 'string' || !NAME.test(raw)) throw bad('must be 1-64 letters, digits, "_", "." or "-"', 'use e.g. "prod" or "eu-west"')
      return raw
    case 'level':
      if (typeof raw !== 'string' || !LEVELS.includes(raw)) throw bad(`must be one of ${LEVELS.join(', ')}`, 'pick a level, e.g. info')
      return raw
    case 'reset':
      if (raw !== 'delta-seconds' && raw !== 'epoch-seconds') throw bad('must be "delta-seconds" or "epoch-seconds"', 'pick one of the two')
      return raw
    case 'list': {
      const items = typeof raw === 'string' ? raw.split(',').map(x => x.trim()).filter(x => x.length > 0) : raw
      if (!Array.isArray(items) || !items.every(x => typeof x === 'string' && x.length > 0)) throw bad('must be a list of non-empty strings', 'write a YAML list, or comma-separated values')
      return items
    }
    case 'bool': {
      if (typeof raw === 'boolean') return raw
      if (raw === 'true' || raw === '1' || raw === 'yes') return true
      if (raw === 'false' || raw === '0' || raw === 'no') return false
      throw bad('must be true or false', 'write true or false')
    }
    case 'port':
    case 'int': {
      const n = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : raw
      const max = s.kind === 'port' ? 65535 : Number.MAX_SAFE_INTEGER
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0 || n > max) {
        throw bad(`must be an integer from 0 to ${max}`, s.kind === 'port' ? 'pick a free port, or 0 for any' : 'write a whole number')
      }
      return n
    }
  }
}

function setPath (cfg: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.')
  let o = cfg
  for (let i = 0; i < parts.length - 1; i++) o = o[parts[i]] as Record<string, unknown>
  o[parts[parts.length - 1]] = value
}

/** Flattens a config file object to dotted paths, refusing unknown fields. */
function flatten (obj: unknown, prefix: string, out: Map<string, unknown>, file: string): void {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw invalid(ErrorCode.OPTION_INVALID, prefix === '' ? file : prefix, obj, 'must be a mapping', 'write the config as YAML or JSON keys, as in docs/sidecar.md')
  }
  for (const [k, v] of Object.entries(obj)) {
    const path = prefix === '' ? k : `${prefix}.${k}`
    const known = SETTINGS.some(s => s.path === path)
    if (known) out.set(path, v)
    else if (SETTINGS.some(s => s.path.startsWith(path + '.'))) flatten(v, path, out, file)
    else {
      const near = SETTINGS.map(s => s.path).filter(p => p.split('.').pop() === k || p.startsWith(prefix))
      throw invalid(ErrorCode.OPTION_INVALID, path, v, 'is not a setting', near.length > 0 ? `use one of ${near.slice(0, 6).join(', ')}` : 'remove it (see docs/sidecar.md for the settings)')
    }
  }
}

export interface LoadConfigInit {
  /** Command-line arguments after the command name. */
  args: string[]
  env: Record<string, string | undefined>
  /** Reads a file (tests pass a stub). @default fs.readFileSync as UTF-8 */
  readFile?: (path: string) => string
}

/**
 * Builds the config: defaults, then the config file (`--config` or MESHLIMIT_CONFIG),
 * then environment variables, then flags; later sources win. A `policies` value that
 * names a file is read from it.
 */
export function loadConfig (init: LoadConfigInit): SidecarConfig {
  const readFile = init.readFile ?? ((p: string) => readFileSync(p, 'utf8'))
  const cfg = structuredClone(DEFAULT_CONFIG) as unknown as Record<string, unknown>
  const flags = new Map<string, string>()
  const args = init.args
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (!a.startsWith('--')) throw invalid(ErrorCode.OPTION_INVALID, 'argument', a, 'is not a flag', 'run `meshlimit start --help` for the flags')
    const eq = a.indexOf('=')
    let name = eq < 0 ? a : a.slice(0, eq)
    let value = eq < 0 ? undefined : a.slice(eq + 1)
    if (name.startsWith('--no-')) {
      name = '--' + name.slice(5)
      value = 'false'
    }
    const s = SETTINGS.find(x => x.flag === name)
    if (name !== '--config' && s === undefined) throw invalid(ErrorCode.OPTION_INVALID, 'flag', name, 'is not a flag of meshlimit start', 'run `meshlimit start --help` for the flags')
    if (value === undefined) {
      if (s?.kind === 'bool' && (args[i + 1] === undefined || args[i + 1].startsWith('--'))) value = 'true'
      else if (args[i + 1] === undefined) throw invalid(ErrorCode.OPTION_INVALID, name, undefined, 'needs a value', `write ${name} VALUE`)
      else value = args[++i]
    }
    flags.set(name, value)
  }
  const file = flags.get('--config') ?? init.env.MESHLIMIT_CONFIG
  if (file !== undefined) {
    let text: string
    try { text = readFile(file) } catch (err) {
      throw invalid(ErrorCode.OPTION_INVALID, 'config', file, `cannot be read (${(err as Error).message})`, 'give the path of a YAML or JSON config file')
    }
    let doc: unknown
    try { doc = parseYaml(text) } catch (err) {
      throw invalid(ErrorCode.OPTION_INVALID, 'config', file, `is not YAML or JSON (${(err as Error).message.split('\n')[0]})`, 'fix the syntax')
    }
    const values = new Map<string, unknown>()
    if (doc !== null && doc !== undefined) flatten(doc, '', values, file)
    for (const [path, raw] of values) {
      const s = SETTINGS.find(x => x.path === path) as Setting
      // Inline policy documents in the config file are kept as text.
      const v = path === 'policies' && typeof raw === 'object' && raw !== null ? JSON.stringify(raw) : raw
      setPath(cfg, path, coerce(s, v, path))
    }
  }
  for (const s of SETTINGS) {
    const v = s.env === undefined ? undefined : init.env[s.env]
    if (v !== undefined && v !== '') setPath(cfg, s.path, coerce(s, v, s.env as string))
  }
  for (const s of SETTINGS) {
    const v = s.flag === undefined ? undefined : flags.get(s.flag)
    if (v !== undefined) setPath(cfg, s.path, coerce(s, v, s.flag as string))
  }
  const out = cfg as unknown as SidecarConfig
  if (joinsMesh(out) && out.network.pskFile === undefined && !out.network.allowNoPsk) {
    throw invalid(ErrorCode.OPTION_INVALID, 'network.pskFile', undefined, 'is required to join a mesh: without a private-network key any host that can reach the port could join and gossip counts', 'make one with `meshlimit psk mesh.key`, give every node --psk mesh.key (or --allow-no-psk for local development)')
  }
  if (out.policy.trustedKeys.length > 0 && !joinsMesh(out)) {
    throw invalid(ErrorCode.OPTION_INVALID, 'policy.trustedKeys', out.policy.trustedKeys.join(','), 'need a mesh: signed bundles arrive by gossip', 'add --listen or --bootstrap, or drop the trusted keys and give --policies')
  }
  // A policies value that is not a document is a path.
  if (out.policies !== EXAMPLE_POLICIES && !/[\n:{]/.test(out.policies)) {
    try { out.policies = readFile(out.policies) } catch (err) {
      throw invalid(ErrorCode.OPTION_INVALID, 'policies', out.policies, `cannot be read (${(err as Error).message})`, 'give the path of a policy file')
    }
  }
  return out
}

/** The flag and environment table of `meshlimit start --help`. */
export function settingsHelp (): string {
  const rows = SETTINGS.filter(s => s.flag !== undefined || s.env !== undefined)
  return rows.map(s => `  ${(s.flag ?? '').padEnd(18)} ${(s.env ?? '').padEnd(26)} ${s.help}`).join('\n')
}
