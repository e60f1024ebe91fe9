import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Clock } from '../../membership/clock.js'
import { createGate, type Gate, type GateObserver } from '../gate.js'
import { createRateLimitHeaders } from '../http/headers.js'
import type { AdminRoute } from '../http/route.js'
import { createDecisionLog, createLogger, type Logger } from '../log.js'
import { createAdminApi } from './admin.js'
import { policyAdminRoutes } from '../policy/admin.js'
import { DEFAULT_CONFIG, joinsMesh, type SidecarConfig } from './config.js'
import { createDecisionApi } from './decision-api.js'
import { startGrpcServer, type GrpcServerHandle } from './grpc.js'
import { createMetrics, type SidecarMetrics } from './metrics.js'
import { createSidecarNode, libp2pTransport, type SidecarNode, type TransportFactory } from './node.js'
import { createStallWatch, type StallWatch } from './stalls.js'

export interface SidecarInit {
  /**
   * Settings (see loadConfig for files, flags and environment variables).
   * @default DEFAULT_CONFIG
   */
  config?: SidecarConfig
  /**
   * Connects the node to its mesh.
   * @default libp2p when config.network listens, bootstraps or uses mDNS; else the node runs alone
   */
  transport?: TransportFactory
  /**
   * Logger.
   * @default pino JSON lines on standard error at config.log.level
   */
  logger?: Logger
  /** Extra admin routes (policy pushes...). */
  adminRoutes?: AdminRoute[]
  /** Time source. @default a coarse wall clock */
  clock?: Clock
}

export interface Sidecar {
  readonly node: SidecarNode
  readonly gate: Gate
  readonly metrics: SidecarMetrics
  readonly logger: Logger
  /** Base URL of the decision API, e.g. "http://127.0.0.1:8080". */
  readonly httpUrl: string
  /** "host:port" of the gRPC service, when enabled. */
  readonly grpcAddress: string | undefined
  /** Base URL of the admin API, when enabled. */
  readonly adminUrl: string | undefined
  /** The admin bearer token (generated when none was configured). */
  readonly adminToken: string | undefined
  close(): Promise<void>
}

async function listen (server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  return (server.address() as AddressInfo).port
}

async function closeServer (server: Server): Promise<void> {
  await new Promise<void>(resolve => {
    server.close(() => { resolve() })
    server.closeIdleConnections()
    // Keep-alive clients in mid-request get a moment, then are cut.
    setTimeout(() => { server.closeAllConnections() }, 1000).unref()
  })
}

const urlHost = (h: string): string => (h.includes(':') ? `[${h}]` : h)

/**
 * Starts a sidecar: a mesh node, the decision API with /metrics, /healthz and /readyz,
 * the Envoy rate limit service over gRPC, and the admin API.
 */
export async function startSidecar (init: SidecarInit = {}): Promise<Sidecar> {
  const config = init.config ?? DEFAULT_CONFIG
  const logger = init.logger ?? createLogger({ level: config.log.level })
  let decisionLog: ReturnType<typeof createDecisionLog> | undefined
  let metrics: SidecarMetrics | undefined
  const transport = init.transport ?? (joinsMesh(config)
    ? libp2pTransport({
        listen: config.network.listen.length > 0 ? config.network.listen : undefined,
        bootstrap: config.network.bootstrap,
        pskFile: config.network.pskFile,
        allowNoPsk: config.network.allowNoPsk,
        identityFile: config.network.identityFile,
        mdns: config.network.mdns
      })
    : undefined)
  const node = await createSidecarNode({
    policies: config.policies,
    transport,
    trustedKeys: config.policy.trustedKeys.length > 0 ? config.policy.trustedKeys : undefined,
    logger: logger.child({ component: 'mesh' }),
    mesh: config.mesh,
    region: config.region,
    clock: init.clock,
    flushIntervalMs: config.limiter.flushIntervalMs,
    maxKeys: config.limiter.maxKeys,
    hashSeed: config.limiter.hashSeed,
    blocklist: config.blocklist,
    escalation: config.escalation.enabled ? config.escalation : false,
    onBlockChange: e => {
      decisionLog?.blockChange(e)
      metrics?.blockChange(e)
    }
  })
  const servers: Server[] = []
  let grpcServer: GrpcServerHandle | undefined
  let stalls: StallWatch | undefined
  let closing = false
  try {
    const log = logger.child({ node: node.id, region: node.region })
    decisionLog = createDecisionLog({ logger: log, node: node.id, region: node.region, sampleEvery: config.log.sampleEvery })
    stalls = config.metrics.stallWatchMs > 0 ? createStallWatch({ thresholdMs: config.metrics.stallWatchMs }) : undefined
    metrics = createMetrics({ limiter: node.limiter, blocklist: node.blocklist, escalation: node.escalation, mesh: node.mesh, stalls })
    const headers = createRateLimitHeaders({ ...config.headers, policies: node.limiter, clock: node.clock })
    const observers: GateObserver[] = [metrics, decisionLog]
    const gate = createGate({ limiter: node.limiter, blocklist: node.blocklist, escalation: node.escalation, headers, observers, clock: node.clock })

    const api = createServer({ keepAliveTimeout: 65_000 }, createDecisionApi({ gate, metrics, logger: log, maxBodyBytes: config.http.maxBodyBytes, ready: () => !closing }))
    servers.push(api)
    const httpPort = await listen(api, config.http.host, config.http.port)
    const httpUrl = `http://${urlHost(config.http.host)}:${httpPort}`

    let grpcAddress: string | undefined
    if (config.grpc.enabled) {
      grpcServer = await startGrpcServer({ gate, logger: log, host: config.grpc.host, port: config.grpc.port, maxConcurrentStreams: config.grpc.maxConcurrentStreams, youngStreamTables: config.grpc.youngStreamTables })
      grpcAddress = `${urlHost(config.grpc.host)}:${grpcServer.port}`
    }

    let adminUrl: string | undefined
    let adminToken: string | undefined
    if (config.admin.enabled) {
      adminToken = config.admin.token ?? randomBytes(24).toString('base64url')
      const admin = createServer(createAdminApi({
        token: adminToken,
        blocklist: node.blocklist,
        routes: [...(node.meshNode?.policy === undefined ? [] : policyAdminRoutes(node.meshNode.policy.manager)), ...(init.adminRoutes ?? [])],
        logger: log,
        maxBodyBytes: config.admin.maxBodyBytes,
        status: () => ({
          node: node.id,
          region: node.region,
          peers: node.mesh.peers(),
          multiaddrs: node.multiaddrs(),
          members: node.meshNode?.membership.members().map(m => ({ peer: m.peerId, region: m.region, state: m.state, policyVersion: m.policyVersion })) ?? [],
          gossipLagMs: node.mesh.lagMs() ?? null,
          policyVersion: node.limiter.policies.version,
          policies: node.limiter.policies.policies.map(p => p.id),
          limiter: node.limiter.stats(),
          blocklist: node.blocklist.stats(),
          escalation: node.escalation?.stats() ?? null
        })
      }))
      servers.push(admin)
      const adminPort = await listen(admin, config.admin.host, config.admin.port)
      adminUrl = `http://${urlHost(config.admin.host)}:${adminPort}`
    }
    log.info({ event: 'start', http: httpUrl, grpc: grpcAddress, admin: adminUrl, multiaddrs: node.multiaddrs(), policyVersion: node.limiter.policies.version }, 'meshlimit sidecar started')

    return {
      node,
      gate,
      metrics,
      logger,
      httpUrl,
      grpcAddress,
      adminUrl,
      adminToken,
      async close () {
        if (closing) return
        closing = true
        await Promise.all([...servers.map(closeServer), grpcServer?.close()])
        stalls?.stop()
        await node.close()
        log.info({ event: 'stop' }, 'meshlimit sidecar stopped')
        logger.flush()
      }
    }
  } catch (err) {
    closing = true
    stalls?.stop()
    await Promise.all([...servers.map(s => (s.listening ? closeServer(s) : undefined)), grpcServer?.close()])
    await node.close()
    throw err
  }
}

/** DEFAULT_CONFIG with some sections replaced (tests, the demo). */
export function configWith (over: { [K in keyof SidecarConfig]?: SidecarConfig[K] extends object ? Partial<SidecarConfig[K]> : SidecarConfig[K] }): SidecarConfig {
  const out = structuredClone(DEFAULT_CONFIG) as unknown as Record<string, unknown>
  for (const [k, v] of Object.entries(over)) {
    const cur = out[k]
    out[k] = typeof cur === 'object' && cur !== null && typeof v === 'object' ? { ...cur, ...v } : v
  }
  return out as unknown as SidecarConfig
}

export { loadConfig, DEFAULT_CONFIG, EXAMPLE_POLICIES, type SidecarConfig } from './config.js'
export { joinsMesh } from './config.js'
export { createSidecarNode, libp2pTransport, loopbackTransport, type Libp2pFactoryInit, measureLag, type SidecarNode, type SidecarNodeInit, type TransportFactory, type MeshHandle, type TransportContext } from './node.js'
export type { MeshInfo, SidecarMetrics } from './metrics.js'
