import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { chaosCommand } from '../../chaos/cli.js'

function io () {
  const out: string[] = []
  const err: string[] = []
  return { out, err, io: { out: (l: string) => { out.push(l) }, err: (l: string) => { err.push(l) }, env: { CHAOS_PROGRESS: '0' } } }
}

describe('npm run chaos', () => {
  it('--json: the last stdout line is the summary; the human summary goes to stderr', async () => {
    const t = io()
    const code = await chaosCommand.run(['join-churn', '--seed', '3', '--duration', '2s', '--json'], t.io)
    expect(code).toBe(0)
    expect(t.out).toHaveLength(1)
    const s = JSON.parse(t.out[0])
    for (const f of ['scenario', 'seed', 'nodes', 'regions', 'simulatedSeconds', 'overAdmissionMaxPct', 'overAdmissionMeanPct', 'boundPct', 'falseDenialPct', 'convergenceP99Ms', 'bytesPerNodePerSec', 'countsLost', 'violations']) {
      expect(s).toHaveProperty(f)
    }
    expect(s.scenario).toBe('join-churn')
    expect(s.seed).toBe(3)
    expect(s.simulatedSeconds).toBe(2.5)
    expect(t.err.join('\n')).toMatch(/over-admission max/)
  })

  it('without --json prints the human summary; --report writes Markdown and an SVG chart', async () => {
    const t = io()
    const dir = mkdtempSync(join(tmpdir(), 'chaos-report-'))
    const code = await chaosCommand.run(['split-brain', '--duration', '6s', '--report', dir], t.io)
    expect(code).toBe(0)
    expect(t.out.join('\n')).toMatch(/split-brain seed 1: 30 nodes in 3 regions/)
    const md = readFileSync(join(dir, 'split-brain-seed1.md'), 'utf8')
    expect(md).toMatch(/over-admission, max per key and window/)
    expect(md).toMatch(/!\[admitted per window vs limit\]\(split-brain-seed1\.svg\)/)
    const svg = readFileSync(join(dir, 'split-brain-seed1.svg'), 'utf8')
    expect(svg.startsWith('<svg')).toBe(true)
    // The partition marker and its label are drawn.
    expect(svg).toMatch(/split into 2 groups/)
    expect(svg).toMatch(/admitted/)
  })

  it('--threads N runs the regions as units (--threads 1 in this thread); a scenario that cannot says why and runs single-threaded', async () => {
    const t = io()
    expect(await chaosCommand.run(['hot-key-zipf', '--duration', '1s', '--threads', '1', '--set', 'network.interRegion.minMs=20', '--json'], t.io)).toBe(0)
    expect(JSON.parse(t.out[0]).scenario).toBe('hot-key-zipf')
    expect(t.err.join('\n')).not.toMatch(/single-threaded/)
    const u = io()
    expect(await chaosCommand.run(['hot-key-zipf', '--duration', '1s', '--threads', '2', '--json'], u.io)).toBe(0)
    expect(u.err[0]).toMatch(/^chaos: running single-threaded: network.interRegion has no floor/)
    for (const bad of ['0', 'x', '1.5']) {
      const v = io()
      expect(await chaosCommand.run(['hot-key-zipf', '--threads', bad], v.io)).toBe(2)
      expect(v.err[0]).toMatch(/--threads must be an integer from 1 to 64/)
    }
  })

  it('takes a scenario file by path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chaos-scn-'))
    const file = join(dir, 'tiny.json')
    writeFileSync(file, JSON.stringify({ duration: '1s', regions: [{ name: 'x', nodes: 2 }], policies: { policies: [{ id: 'p', key: 'user', limits: [{ limit: 5, window: '1s' }] }] }, workload: { clients: [{ name: 'c', ratePerSec: 50 }] } }))
    const t = io()
    expect(await chaosCommand.run([file, '--json'], t.io)).toBe(0)
    expect(JSON.parse(t.out[0]).scenario).toBe('tiny')
  })

  it('refuses bad usage and bad scenarios with exit code 2 and a reason', async () => {
    for (const args of [[], ['nope-such-scenario'], ['steady-3x30', '--seed', 'x'], ['steady-3x30', '--frobnicate'], ['steady-3x30', '--duration', '5']]) {
      const t = io()
      expect(await chaosCommand.run(args, t.io)).toBe(2)
      expect(t.err[0]).toMatch(/^chaos: /)
    }
    const dir = mkdtempSync(join(tmpdir(), 'chaos-bad-'))
    const bad = join(dir, 'bad.yaml')
    writeFileSync(bad, 'regions: []\n')
    const t = io()
    expect(await chaosCommand.run([bad], t.io)).toBe(2)
    expect(t.err[0]).toMatch(/scenario\.duration|scenario\.regions/)
    expect(existsSync(bad)).toBe(true)
  })

  it('--set overrides a scenario field before validation; a bad path or value is a usage error', async () => {
    const run = async (extra: string[]): Promise<{ code: number, sum: Record<string, unknown> | undefined, err: string }> => {
      const t = io()
      const code = await chaosCommand.run(['join-churn', '--duration', '2s', '--json', ...extra], t.io)
      return { code, sum: code === 0 ? JSON.parse(t.out[t.out.length - 1]) : undefined, err: t.err.join('\n') }
    }
    const shares = await run([])
    const simple = await run(['--set', 'limiter.localShares=false'])
    expect(simple.code).toBe(0)
    expect(JSON.stringify(simple.sum)).not.toBe(JSON.stringify(shares.sum))
    const closed = await run(['--set', 'policies.policies.0.onPartition=closed', '--set', 'seed=9'])
    expect(closed.sum?.seed).toBe(9)
    for (const bad of [['--set', 'nope'], ['--set', '__proto__.x=1'], ['--set', 'limiter.localShares=maybe'], ['--set', 'seed.x=1']]) {
      const r = await run(bad)
      expect(r.code, bad.join(' ')).toBe(2)
      expect(r.err).toMatch(/chaos: /)
    }
  })
})
