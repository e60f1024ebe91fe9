import { Counter, Gauge, type Registry } from 'prom-client'
import type { LimiterStats } from '../limiter.js'
import type { PolicyDistributor } from './distribute.js'
import type { PolicyManager } from './manager.js'

export interface PolicyMetricsInit {
  registry: Registry
  manager: PolicyManager
  /** The limiter whose shadow would-denials are exported. @default none */
  limiter?: { stats(): LimiterStats }
  distributor?: PolicyDistributor
  /**
   * Prefix of every metric name.
   * @default "meshlimit_"
   */
  prefix?: string
}

/**
 * Registers Prometheus metrics of the policy machinery. Every value is read from
 * counters the manager, distributor and limiter keep anyway, at scrape time: nothing
 * runs on the request path.
 *
 * - `meshlimit_policy_version`, `meshlimit_policy_installed_at_seconds`: the running bundle (0 while the fallback runs)
 * - `meshlimit_policy_bundles_installed_total`
 * - `meshlimit_policy_bundles_rejected_total{code}`: by error code
 * - `meshlimit_policy_shadow_denied_total{limit}`: requests a shadow policy would have denied
 * - `meshlimit_policy_pulls_total{result}`, `meshlimit_policy_messages_rejected_total`: distribution
 */
export function registerPolicyMetrics (init: PolicyMetricsInit): void {
  const p = init.prefix ?? 'meshlimit_'
  const registers = [init.registry]
  const { manager, limiter, distributor } = init
  new Gauge({
    name: `${p}policy_version`,
    help: 'Version of the running policy bundle (0: the fallback policies run)',
    registers,
    collect () { this.set(manager.version) }
  })
  new Gauge({
    name: `${p}policy_installed_at_seconds`,
    help: 'When the running policy bundle was installed (Unix time)',
    registers,
    collect () { this.set((manager.current?.installedAtMs ?? 0) / 1000) }
  })
  new Counter({
    name: `${p}policy_bundles_installed_total`,
    help: 'Policy bundles installed',
    registers,
    collect () {
      this.reset()
      this.inc(manager.stats.installed)
    }
  })
  new Counter({
    name: `${p}policy_bundles_rejected_total`,
    help: 'Policy bundles rejected, by error code (malformed, unsigned, untrusted key, bad signature, stale, too large, invalid)',
    labelNames: ['code'],
    registers,
    collect () {
      this.reset()
      for (const [code, n] of Object.entries(manager.stats.rejected)) this.inc({ code }, n)
    }
  })
  if (limiter !== undefined) {
    // Runtimes are replaced when a limit is removed, so totals are kept here across scrapes.
    const seen = new Map<string, number>()
    const totals = new Map<string, number>()
    new Counter({
      name: `${p}policy_shadow_denied_total`,
      help: 'Requests a shadow-mode limit would have denied (they were allowed)',
      labelNames: ['limit'],
      registers,
      collect () {
        for (const l of limiter.stats().limits) {
          const last = seen.get(l.name) ?? 0
          // A smaller count means the limit's counters were rebuilt: count from zero again.
          const delta = l.shadowDenied >= last ? l.shadowDenied - last : l.shadowDenied
          seen.set(l.name, l.shadowDenied)
          totals.set(l.name, (totals.get(l.name) ?? 0) + delta)
        }
        this.reset()
        for (const [name, n] of totals) if (n > 0) this.inc({ limit: name }, n)
      }
    })
  }
  if (distributor !== undefined) {
    new Counter({
      name: `${p}policy_pulls_total`,
      help: 'Policy bundle pulls from peers, by result',
      labelNames: ['result'],
      registers,
      collect () {
        this.reset()
        const s = distributor.stats
        this.inc({ result: 'ok' }, s.pulls - s.pullFailures)
        this.inc({ result: 'failed' }, s.pullFailures)
      }
    })
    new Counter({
      name: `${p}policy_messages_rejected_total`,
      help: 'Policy topic messages rejected as malformed, forged or invalid',
      registers,
      collect () {
        this.reset()
        this.inc(distributor.stats.rejected)
      }
    })
  }
}
