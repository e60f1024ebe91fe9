import { MeshlimitError } from '../errors.js'
import { createLogger } from '../log.js'
import { loadConfig, settingsHelp } from '../sidecar/config.js'
import { startSidecar } from '../sidecar/index.js'
import { durationFlag, runUntilStopped } from './args.js'
import type { CliCommand } from './types.js'

export const start: CliCommand = {
  summary: 'run a mesh node: decision API, Envoy rate limit service (gRPC), metrics, admin API',
  usage: `meshlimit start [--config FILE] [flags]

Runs one node. With no arguments: a single local node with an example policy, the
decision API and metrics on 127.0.0.1:8080, gRPC on :8081, the admin API on :8082.
With --listen or --bootstrap it joins a libp2p mesh (give every node the same --psk
file from \`meshlimit psk\`): the first node listens, the others bootstrap from the
address it prints.
Settings come from defaults, then the config file (--config or MESHLIMIT_CONFIG),
then environment variables, then flags. Boolean flags take --no-NAME to switch off.
When it is up, one JSON line with the addresses is printed on standard output.

  --config FILE      MESHLIMIT_CONFIG           YAML or JSON config file (see docs/sidecar.md)
  --duration TIME                               stop after TIME (e.g. 30s); default: until Ctrl-C
${settingsHelp()}`,
  async run (argv, io) {
    const args = [...argv]
    let durationMs: number | undefined
    let sidecar
    let generatedToken = false
    try {
      durationMs = durationFlag(args, '--duration')
      const config = loadConfig({ args, env: io.env })
      generatedToken = config.admin.enabled && config.admin.token === undefined
      sidecar = await startSidecar({ config, logger: createLogger({ level: config.log.level }) })
    } catch (err) {
      if (err instanceof MeshlimitError) {
        io.err(`meshlimit start: ${err.message}`)
        return 2
      }
      io.err(`meshlimit start: ${(err as Error).message}`)
      return 1
    }
    if (generatedToken && sidecar.adminToken !== undefined) {
      io.err(`admin token (generated; set MESHLIMIT_ADMIN_TOKEN to choose one): ${sidecar.adminToken}`)
    }
    io.err(`meshlimit node ${sidecar.node.id} up: decisions ${sidecar.httpUrl}/v1/check, metrics ${sidecar.httpUrl}/metrics${sidecar.grpcAddress === undefined ? '' : `, gRPC ${sidecar.grpcAddress}`}${sidecar.adminUrl === undefined ? '' : `, admin ${sidecar.adminUrl}`}. Ctrl-C stops.`)
    const addrs = sidecar.node.multiaddrs()
    if (addrs.length > 0) io.err(`mesh: peers join with --bootstrap ${addrs[0]}`)
    io.out(JSON.stringify({ event: 'ready', node: sidecar.node.id, http: sidecar.httpUrl, grpc: sidecar.grpcAddress ?? null, admin: sidecar.adminUrl ?? null, multiaddrs: addrs }))
    await runUntilStopped(durationMs)
    await sidecar.close()
    io.err('meshlimit node stopped')
    return 0
  }
}
