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

  it('gives a valued flag the next argument even when it starts with a dash', () => {
    const d = { json: false, nodeArgs: '', seed: 1 }
    expect(benchArgs('bench:x', ['--node-args', '--single-threaded-gc', '--json'], d)).toEqual({ json: true, nodeArgs: '--single-threaded-gc', seed: 1 })
    expect(benchArgs('bench:x', ['--seed', '-3'], d).seed).toBe(-3)
  })

  it('holds the keys named positive above 0 when given', () => {
    expect(benchArgs('bench:x', ['--nodes', '2'], defaults, {}, ['nodes']).nodes).toBe(2)
    expect(() => benchArgs('bench:x', ['--nodes', '0'], defaults, {}, ['nodes'])).toThrow(/--nodes needs a positive number, got 0/)
    expect(benchArgs('bench:x', ['--libp2p-nodes', '0'], defaults, {}, ['nodes']).libp2pNodes).toBe(0)
  })
})
