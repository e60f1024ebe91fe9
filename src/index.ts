/**
 * meshlimit: a distributed API rate limiter with no central store.
 *
 * @packageDocumentation
 */
// First: libp2p's dependencies need Promise.withResolvers, which Node 20 lacks.
import './polyfill.js'

export { createLimiter, MAX_COST } from './limiter.js'
export type { Limiter, LimiterInit, LimiterStats, LimitStats } from './limiter.js'
export { Decision, LimitStatus } from './decision.js'
export type { Lease } from './decision.js'
export { MeshlimitError, ErrorCode } from './errors.js'
export { parsePolicies, validatePolicies, isPolicySet, POLICY_DEFAULTS } from './policy/validate.js'
export type { Algorithm, Scope, Descriptor, LimitSpec, MatchSpec, PolicySpec, PolicyDocument, Limit, Policy, PolicySet, Condition } from './policy/types.js'
export { ipKey } from './policy/ip.js'
export { systemClock, coarseClock, VirtualClock } from '../membership/clock.js'
export type { Clock, CoarseClock, CoarseClockInit } from '../membership/clock.js'
export { seededRandom } from '../membership/random.js'
export type { Random } from '../membership/random.js'
export { createLoopbackNetwork } from '../gossip/loopback.js'
export type { LoopbackInit, LoopbackNetwork, LoopbackStats } from '../gossip/loopback.js'
export type { Transport, Verdict, MessageHandler, RequestHandler } from '../gossip/transport.js'
export { topicsOf } from '../gossip/topics.js'
export type { Topics } from '../gossip/topics.js'
export type { ReplicaId } from '../crdt/replica.js'
export { createPolicyManager, DENY_ALL_POLICIES } from './policy/manager.js'
export type { PolicyManager, PolicyManagerInit, PolicyManagerStats, PolicyMetrics, PolicySource, PolicyTarget, BundleInfo, OfferResult } from './policy/manager.js'
export { createPolicyDistributor } from './policy/distribute.js'
export type { PolicyDistributor, PolicyDistributorInit, PolicyDistributorStats, StartupOutcome } from './policy/distribute.js'
export { watchPolicyFile } from './policy/file-source.js'
export type { PolicyFileSource, PolicyFileSourceInit, FileSourceResult } from './policy/file-source.js'
export { policyAdminRoutes, POLICY_ADMIN_PATH } from './policy/admin.js'
export type { AdminRoute } from './http/route.js'
export {
  BUNDLE_FORMAT, DEFAULT_BUNDLE_LIMITS, canonicalJson, contentHash, compareBundles, encodeBundle, exportPrivateKey,
  generateOperatorKey, loadPrivateKey, loadPublicKey, openBundle, parseBundle, signBundle, trustedKeyMap
} from './policy/bundle.js'
export type { BundleLimits, OperatorKey, ParsedBundle, SignedBundle, TrustedKey, VerifiedBundle } from './policy/bundle.js'
export { envoyToPolicies, isEnvoyConfig } from './policy/envoy.js'
export type { EnvoyConvertInit, EnvoyConversion } from './policy/envoy.js'
export { readPolicyText } from './policy/load.js'
export type { LoadedPolicy } from './policy/load.js'
export { diffPolicies } from './policy/diff.js'
export type { PolicyDiff, PolicyChange, LimitChange } from './policy/diff.js'
export { registerPolicyMetrics } from './policy/metrics.js'
export type { PolicyMetricsInit } from './policy/metrics.js'
