import { describe, expect, it } from 'vitest'
import { benchArgs } from '../../bench/args.js'

const defaults = { json: false, baseline: true, nodes: 10, libp2pNodes: 3, meshDegree: undefined as number | undefined, duration: undefined as string | undefined }
const types = { meshDegree: 'number', duration: 'string' } as const

describe('benchArgs', () => {
  it('returns the defaults without flags', () => {
    expect(benchArgs('bench:x', [], defaults, types)).toEqual(defaults)
  })

  it('maps kebab-case flags to keys by type, and --no-<flag> switches a true default off', () => {
    const a = benchArgs('bench:x', ['--json', '--no-baseline', '--nodes', '3', '--libp2p-nodes=5', '--mesh-degree', '2', '--duration', '10s'], defaults, types)
    expect(a).toEqual({ json: true, baseline: false, nodes: 3, libp2pNodes: 5, meshDegree: 2, duration: '10s' })
  })

  it('refuses unknown flags and non-numbers with the usage line', () => {
    expect(() => benchArgs('bench:x', ['--bogus'], defaults, types)).toThrow(/bogus.*usage: bench:x -- \[--json\] \[--no-baseline\] \[--nodes N\]/)
    expect(() => benchArgs('bench:x', ['--nodes', 'ten'], defaults, types)).toThrow(/--nodes must be a number, got ten; usage/)
    expect(() => benchArgs('bench:x', ['--baseline'], defaults, types)).toThrow(/usage/)
  })

  it('gives a valued flag the next argument even when it starts with a dash', () => {
    const d = { json: false, nodeArgs: '', seed: 1 }
    expect(benchArgs('bench:x', ['--node-args', '--single-threaded-gc', '--json'], d)).toEqual({ json: true, nodeArgs: '--single-threaded-gc', seed: 1 })
    expect(benchArgs('bench:x', ['--seed', '-3'], d).seed).toBe(-3)
  })

  it('refuses a flag without a default or a type (a mistake in the bench)', () => {
    expect(() => benchArgs('bench:x', [], { seed: undefined as number | undefined })).toThrow(/"seed" has no default; give its type/)
  })

  it('holds the keys named positive above 0 when given', () => {
    expect(benchArgs('bench:x', ['--nodes', '2'], defaults, types, ['nodes']).nodes).toBe(2)
    expect(() => benchArgs('bench:x', ['--nodes', '0'], defaults, types, ['nodes'])).toThrow(/--nodes needs a positive number, got 0/)
    expect(benchArgs('bench:x', ['--libp2p-nodes', '0'], defaults, types, ['nodes']).libp2pNodes).toBe(0)
  })
})
