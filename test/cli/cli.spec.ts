import { describe, expect, it } from 'vitest'
import { main } from '../../src/cli/index.js'
import type { CliCommand, CliIO } from '../../src/cli/types.js'
import { loadConfig, DEFAULT_CONFIG, EXAMPLE_POLICIES } from '../../src/sidecar/config.js'

function io (env: Record<string, string> = {}): CliIO & { outLines: string[], errLines: string[] } {
  const outLines: string[] = []
  const errLines: string[] = []
  return { outLines, errLines, out: l => { outLines.push(l) }, err: l => { errLines.push(l) }, env }
}

describe('meshlimit command line', () => {
  it('lists commands, prints usage, refuses unknown commands', async () => {
    const a = io()
    expect(await main(['--help'], a)).toBe(0)
    expect(a.outLines.join('\n')).toMatch(/start\s+run a mesh node/)
    expect(a.outLines.join('\n')).toMatch(/demo\s+run a 3-node mesh/)
    const b = io()
    expect(await main(['start', '--help'], b)).toBe(0)
    expect(b.outLines.join('\n')).toContain('MESHLIMIT_ADMIN_TOKEN')
    const c = io()
    expect(await main(['nope'], c)).toBe(2)
    expect(c.errLines[0]).toContain('unknown command "nope"')
  })

  it('dispatches to merged command records (as the policy commands will be)', async () => {
    const extra: CliCommand = { summary: 'x', usage: 'x', run: async (args, o) => { o.out(args.join(',')); return 7 } }
    const a = io()
    expect(await main(['policy', 'validate', 'f.yaml'], a, { policy: extra })).toBe(7)
    expect(a.outLines).toEqual(['validate,f.yaml'])
  })

  it('start runs a node with no arguments but free ports, prints a ready line, stops after --duration', async () => {
    const a = io({ MESHLIMIT_PORT: '0', MESHLIMIT_GRPC_PORT: '0', MESHLIMIT_ADMIN_PORT: '0', MESHLIMIT_LOG_LEVEL: 'silent' })
    const run = main(['start', '--duration', '2500ms'], a)
    // Bounded wait for the ready line (10 s), then the node stays up 2.5 s.
    for (let i = 0; i < 1000 && a.outLines.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 10))
    const ready = JSON.parse(a.outLines[0])
    expect(ready).toMatchObject({ event: 'ready', node: 'local' })
    // The example policy is in force: per-client, 100 per 10 s.
    const r = await fetch(`${ready.http as string}/v1/check`, { method: 'POST', body: JSON.stringify({ descriptor: { ip: '203.0.113.1' } }) })
    expect(((await r.json()) as { decision: { policy: string, limit: number } }).decision).toMatchObject({ policy: 'per-client', limit: 100 })
    expect(await run).toBe(0)
    expect(a.errLines.some(l => l.includes('admin token (generated'))).toBe(true)
  })

  it('start refuses bad settings with exit code 2 and the fix', async () => {
    const a = io()
    expect(await main(['start', '--port', 'eighty'], a)).toBe(2)
    expect(a.errLines[0]).toMatch(/--port is "eighty": must be an integer from 0 to 65535\. Fix:/)
  })

  it('demo runs a 3-node mesh non-interactively and ends with a JSON summary of converged nodes', async () => {
    const a = io()
    expect(await main(['demo', '--duration', '2s', '--rate', '200', '--quiet'], a)).toBe(0)
    const summary = JSON.parse(a.outLines[a.outLines.length - 1])
    expect(summary).toMatchObject({ event: 'demo-summary', nodes: 3, failed: 0, converged: true, transport: 'libp2p-tcp' })
    expect(summary.requests).toBeGreaterThan(100)
    // alice wants 140/s against 100 per 10 s: she is denied, on every node.
    expect(summary.denied).toBeGreaterThan(0)
    expect(summary.remainingByNode.alice).toEqual([0, 0, 0])
    expect(summary.perNode.every((n: { denied: number }) => n.denied > 0)).toBe(true)
  })
})

describe('sidecar configuration', () => {
  const files: Record<string, string> = {
    'c.yaml': 'mesh: prod\nhttp:\n  port: 9000\nheaders:\n  resetFormat: epoch-seconds\npolicies: p.yaml\n',
    'p.yaml': 'policies: [ { id: x, limits: [ { limit: 1, window: 1s } ] } ]',
    'typo.yaml': 'htp:\n  port: 1\n',
    'badport.yaml': 'http: { port: 70000 }'
  }
  const readFile = (p: string): string => {
    if (!(p in files)) throw new Error(`ENOENT: ${p}`)
    return files[p]
  }

  it('defaults run a single local node with the example policy', () => {
    const c = loadConfig({ args: [], env: {}, readFile })
    expect(c).toEqual({ ...DEFAULT_CONFIG, policies: EXAMPLE_POLICIES })
  })

  it('layers file < environment < flags, and reads the policy file', () => {
    const c = loadConfig({ args: ['--config', 'c.yaml', '--port', '9002', '--no-grpc'], env: { MESHLIMIT_PORT: '9001', MESHLIMIT_REGION: 'eu' }, readFile })
    expect(c.mesh).toBe('prod')
    expect(c.region).toBe('eu')
    expect(c.http.port).toBe(9002)
    expect(c.grpc.enabled).toBe(false)
    expect(c.headers.resetFormat).toBe('epoch-seconds')
    expect(c.policies).toBe(files['p.yaml'])
    expect(loadConfig({ args: [], env: { MESHLIMIT_CONFIG: 'c.yaml' }, readFile }).http.port).toBe(9000)
    // Young stream tables are on unless switched off by flag or environment.
    expect(c.grpc.youngStreamTables).toBe(true)
    expect(loadConfig({ args: ['--no-grpc-young-stream-tables'], env: {}, readFile }).grpc.youngStreamTables).toBe(false)
    expect(loadConfig({ args: [], env: { MESHLIMIT_GRPC_YOUNG_STREAM_TABLES: 'false' }, readFile }).grpc.youngStreamTables).toBe(false)
  })

  it('joins a libp2p mesh with listen and bootstrap lists from flags, environment or the file, and requires a key', () => {
    const c = loadConfig({ args: ['--listen', '/ip4/0.0.0.0/tcp/4001', '--psk', 'mesh.key'], env: { MESHLIMIT_BOOTSTRAP: '/ip4/10.0.0.1/tcp/4001/p2p/a, /ip4/10.0.0.2/tcp/4001/p2p/b' }, readFile })
    expect(c.network).toMatchObject({ listen: ['/ip4/0.0.0.0/tcp/4001'], bootstrap: ['/ip4/10.0.0.1/tcp/4001/p2p/a', '/ip4/10.0.0.2/tcp/4001/p2p/b'], pskFile: 'mesh.key' })
    files['net.yaml'] = 'network:\n  bootstrap: [/ip4/10.0.0.3/tcp/4001/p2p/c]\n  pskFile: k\npolicy:\n  trustedKeys: [ "ed25519:x" ]\n'
    expect(loadConfig({ args: ['--config', 'net.yaml'], env: {}, readFile })).toMatchObject({ network: { bootstrap: ['/ip4/10.0.0.3/tcp/4001/p2p/c'] }, policy: { trustedKeys: ['ed25519:x'] } })
    expect(() => loadConfig({ args: ['--listen', '/ip4/0.0.0.0/tcp/4001'], env: {}, readFile })).toThrow(expect.objectContaining({ field: 'network.pskFile', message: expect.stringMatching(/meshlimit psk/) }))
    expect(loadConfig({ args: ['--listen', '/ip4/127.0.0.1/tcp/0', '--allow-no-psk'], env: {}, readFile }).network.allowNoPsk).toBe(true)
    expect(() => loadConfig({ args: ['--trusted-keys', 'ed25519:x'], env: {}, readFile })).toThrow(expect.objectContaining({ field: 'policy.trustedKeys' }))
    files['badlist.yaml'] = 'network: { listen: [ 4001 ] }'
    expect(() => loadConfig({ args: ['--config', 'badlist.yaml'], env: {}, readFile })).toThrow(expect.objectContaining({ field: 'network.listen' }))
  })

  it('names the bad field, the value and the fix', () => {
    expect(() => loadConfig({ args: ['--config', 'typo.yaml'], env: {}, readFile })).toThrow(expect.objectContaining({ code: 'MESHLIMIT_OPTION_INVALID', field: 'htp' }))
    expect(() => loadConfig({ args: ['--config', 'badport.yaml'], env: {}, readFile })).toThrow(expect.objectContaining({ field: 'http.port' }))
    expect(() => loadConfig({ args: ['--bogus', '1'], env: {}, readFile })).toThrow(/--bogus.*not a flag/)
    expect(() => loadConfig({ args: ['--config', 'missing.yaml'], env: {}, readFile })).toThrow(/cannot be read/)
    expect(() => loadConfig({ args: [], env: { MESHLIMIT_LOG_LEVEL: 'loud' }, readFile })).toThrow(expect.objectContaining({ field: 'MESHLIMIT_LOG_LEVEL' }))
  })
})
