/** The command line of bench:sidecar (see bench/sidecar.ts for what each flag does). */

/** bench:sidecar's settings. */
export interface Args { json: boolean, durationS: number, httpRate: number, grpcRate: number, connections: number, rateConnections: number, users: number, redis: boolean, only: string | undefined, pin: boolean, httpPaced: boolean, sidecarNodeArgs: string[], sidecarCli: string | undefined, stallWatchMs: number, grpcMaxStreams: number, generator: 'node' | 'h2load', h2loadKeys: number, h2loadProcesses: number, h2loadGrpcClients: number | undefined, h2loadPacing: 'rps' | 'script', h2loadStreams: number, h2loadHttpClients: number | undefined }

export function parseArgs (argv: string[]): Args {
  const a: Args = { json: false, durationS: 10, httpRate: 20_000, grpcRate: 10_000, connections: 64, rateConnections: 16, users: 10_000, redis: true, only: undefined, pin: false, httpPaced: false, sidecarNodeArgs: [], sidecarCli: undefined, stallWatchMs: 0, grpcMaxStreams: 0, generator: 'node', h2loadKeys: 1, h2loadProcesses: 4, h2loadGrpcClients: undefined, h2loadPacing: 'rps', h2loadStreams: 256, h2loadHttpClients: undefined }
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i]
    const num = (): number => {
      const n = Number(argv[++i])
      if (!(n > 0)) throw new Error(`${v} needs a positive number`)
      return n
    }
    if (v === '--json') a.json = true
    else if (v === '--duration') a.durationS = num()
    else if (v === '--http-rate') a.httpRate = num()
    else if (v === '--grpc-rate') a.grpcRate = num()
    else if (v === '--connections') a.connections = num()
    else if (v === '--rate-connections') a.rateConnections = num()
    else if (v === '--users') a.users = num()
    else if (v === '--no-redis') a.redis = false
    else if (v === '--only') a.only = argv[++i]
    else if (v === '--pin') a.pin = true
    else if (v === '--http-paced') a.httpPaced = true
    else if (v === '--sidecar-cli') a.sidecarCli = argv[++i]
    else if (v === '--stall-watch') a.stallWatchMs = num()
    else if (v === '--grpc-max-streams') a.grpcMaxStreams = num()
    else if (v === '--generator') {
      const g = argv[++i]
      if (g !== 'node' && g !== 'h2load') throw new Error(`--generator is node or h2load, got ${String(g)}`)
      a.generator = g
    } else if (v === '--h2load-keys') a.h2loadKeys = num()
    else if (v === '--h2load-processes') a.h2loadProcesses = num()
    else if (v === '--h2load-grpc-clients') a.h2loadGrpcClients = num()
    else if (v === '--h2load-pacing') {
      const p = argv[++i]
      if (p !== 'rps' && p !== 'script') throw new Error(`--h2load-pacing is rps or script, got ${String(p)}`)
      a.h2loadPacing = p
    } else if (v === '--h2load-streams') a.h2loadStreams = num()
    else if (v === '--h2load-http-clients') a.h2loadHttpClients = num()
    else if (v === '--sidecar-node-args') a.sidecarNodeArgs = argv[++i].split(' ').filter(x => x !== '')
    else throw new Error(`unknown argument ${v}; usage: bench:sidecar -- [--json] [--duration S] [--http-rate N] [--grpc-rate N] [--connections N] [--rate-connections N] [--users N] [--no-redis] [--only grpc|http|redis] [--pin] [--http-paced] [--sidecar-cli PATH] [--sidecar-node-args "ARGS"] [--stall-watch MS] [--grpc-max-streams N] [--generator node|h2load] [--h2load-keys K] [--h2load-processes P] [--h2load-pacing rps|script] [--h2load-grpc-clients N] [--h2load-streams N] [--h2load-http-clients N]`)
  }
  return a
}
