import { describe, expect, it } from 'vitest'
import { benchArgs } from '../../bench/args.js'

const defaults = { json: false, baseline: true, nodes: 10, libp2pNodes: 3, meshDegree: undefined as number | undefined, duration: undefined as string | undefined }

describe('benchArgs', () => {
  it('returns the defaults without flags', () => {
    expect(benchArgs('bench:x', [], defaults, { meshDegree: 'number', duration: 'string' })).toEqual(defaults)
  })

  it('maps kebab-case flags to keys by type, and --no-<flag> switches a true default off', () => {
    const a = benchArgs('bench:x', ['--json', '--no-baseline', '--nodes', '3', '--libp2p-nodes=5', '--mesh-degree', '2', '--duration', '10s'], defaults, { meshDegree: 'number', duration: 'string' })
    expect(a).toEqual({ json: true, baseline: false, nodes: 3, libp2pNodes: 5, meshDegree: 2, duration: '10s' })
  })

  it('refuses unknown flags and non-numbers with the usage line', () => {
    expect(() => benchArgs('bench:x', ['--bogus'], defaults)).toThrow(/bogus.*usage: bench:x -- \[--json\] \[--no-baseline\] \[--nodes N\]/)
    expect(() => benchArgs('bench:x', ['--nodes', 'ten'], defaults)).toThrow(/--nodes must be a number, got ten; usage/)
    expect(() => benchArgs('bench:x', ['--baseline'], defaults)).toThrow(/usage/)
  })
})
