/**
 * meshlimit: a distributed API rate limiter with no central store.
 *
 * @packageDocumentation
 */
// First: libp2p's dependencies need Promise.withResolvers, which Node 20 lacks.
import './polyfill.js'

export { createLimiter, MAX_COST } from './limiter.js'
export type { Limiter, LimiterInit, LimiterStats, LimitStats, KeyCounters } from './limiter.js'
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
