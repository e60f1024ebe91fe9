import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { createLoopbackNetwork } from '../../gossip/loopback.js'
import { createLimiter, VirtualClock } from '../../src/index.js'
import { encodeBundle, generateOperatorKey, signBundle } from '../../src/policy/bundle.js'
import { createPolicyDistributor } from '../../src/policy/distribute.js'
import { createPolicyManager } from '../../src/policy/manager.js'
import { registerPolicyMetrics } from '../../src/policy/metrics.js'
import type { PolicyDocument } from '../../src/policy/types.js'

const OPERATOR = generateOperatorKey()

function shadowDoc (version: number, window: string): PolicyDocument {
  return { version, policies: [{ id: 'dark', key: 'user', shadow: true, limits: [{ id: 'm', limit: 1, window }] }] }
}

/** The value of one sample line of the exposition text, or undefined. */
function sample (text: string, line: string): number | undefined {
  const hit = text.split('\n').find(l => l.startsWith(line + ' '))
  return hit === undefined ? undefined : Number(hit.slice(line.length + 1))
}

describe('policy metrics', () => {
  it('exports the running version, installs, rejections by code, shadow would-denials and pulls', async () => {
    const clock = new VirtualClock(1_800_000_000_000)
    const limiter = createLimiter({ clock, policies: { policies: [] } })
    const manager = createPolicyManager({ trustedKeys: [OPERATOR.text], limiter, clock })
    const distributor = createPolicyDistributor({ transport: createLoopbackNetwork().connect('a'), clock, manager, topic: 't' })
    const registry = new Registry()
    registerPolicyMetrics({ registry, manager, limiter, distributor })
    let text = await registry.metrics()
    expect(sample(text, 'meshlimit_policy_version')).toBe(0)
    manager.offer(encodeBundle(signBundle(shadowDoc(2, '1m'), OPERATOR)), 'admin')
    manager.offer(encodeBundle(signBundle(shadowDoc(1, '1m'), OPERATOR)), 'gossip')
    manager.offer(new Uint8Array([1]), 'gossip')
    for (let i = 0; i < 4; i++) expect(limiter.check({ user: 'u' }).allowed).toBe(true)
    text = await registry.metrics()
    expect(sample(text, 'meshlimit_policy_version')).toBe(2)
    expect(sample(text, 'meshlimit_policy_installed_at_seconds')).toBe(1_800_000_000)
    expect(sample(text, 'meshlimit_policy_bundles_installed_total')).toBe(1)
    expect(sample(text, 'meshlimit_policy_bundles_rejected_total{code="MESHLIMIT_BUNDLE_STALE"}')).toBe(1)
    expect(sample(text, 'meshlimit_policy_bundles_rejected_total{code="MESHLIMIT_BUNDLE_MALFORMED"}')).toBe(1)
    expect(sample(text, 'meshlimit_policy_shadow_denied_total{limit="dark/m"}')).toBe(3)
    expect(sample(text, 'meshlimit_policy_pulls_total{result="failed"}')).toBe(0)
    // A layout change keeps the count; a repeated scrape does not double it.
    manager.offer(encodeBundle(signBundle(shadowDoc(3, '2m'), OPERATOR)), 'admin')
    limiter.check({ user: 'u' })
    await registry.metrics()
    text = await registry.metrics()
    expect(sample(text, 'meshlimit_policy_shadow_denied_total{limit="dark/m"}')).toBe(4)
  })
})
