/** The command line of bench:sidecar (see bench/sidecar.ts for what each flag does). */
import { benchArgs } from './args.js'

/** bench:sidecar's settings. */
export interface Args { json: boolean, saturation: boolean, durationS: number, httpRate: number, grpcRate: number, connections: number, rateConnections: number, users: number, redis: boolean, floor: boolean, only: string | undefined, pin: boolean, httpPaced: boolean, sidecarNodeArgs: string[], sidecarCli: string | undefined, stallWatchMs: number, grpcMaxStreams: number, generator: 'node' | 'h2load', h2loadKeys: number, h2loadProcesses: number, h2loadGrpcClients: number | undefined, h2loadPacing: 'rps' | 'script', h2loadStreams: number, h2loadHttpClients: number | undefined }

/** One of `allowed`, or an error naming the flag. */
function oneOf<T extends string> (flag: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v)) throw new Error(`--${flag} is ${allowed.join(' or ')}, got ${v}`)
  return v as T
}

export function parseArgs (argv: string[]): Args {
  const f = benchArgs('bench:sidecar', argv, {
    json: false,
    saturation: true,
    duration: 10,
    httpRate: 20_000,
    grpcRate: 10_000,
    connections: 64,
    rateConnections: 16,
    users: 10_000,
    redis: true,
    floor: true,
    only: undefined as string | undefined,
    pin: false,
    httpPaced: false,
    sidecarCli: undefined as string | undefined,
    sidecarNodeArgs: '',
    stallWatch: 0,
    grpcMaxStreams: 0,
    generator: 'node',
    h2loadKeys: 1,
    h2loadProcesses: 4,
    h2loadGrpcClients: undefined as number | undefined,
    h2loadPacing: 'rps',
    h2loadStreams: 256,
    h2loadHttpClients: undefined as number | undefined
  }, { only: 'string', sidecarCli: 'string', h2loadGrpcClients: 'number', h2loadHttpClients: 'number' },
  ['duration', 'httpRate', 'grpcRate', 'connections', 'rateConnections', 'users', 'stallWatch', 'grpcMaxStreams', 'h2loadKeys', 'h2loadProcesses', 'h2loadGrpcClients', 'h2loadStreams', 'h2loadHttpClients'])
  return {
    json: f.json,
    saturation: f.saturation,
    durationS: f.duration,
    httpRate: f.httpRate,
    grpcRate: f.grpcRate,
    connections: f.connections,
    rateConnections: f.rateConnections,
    users: f.users,
    redis: f.redis,
    floor: f.floor,
    only: f.only,
    pin: f.pin,
    httpPaced: f.httpPaced,
    sidecarNodeArgs: f.sidecarNodeArgs.split(' ').filter(x => x !== ''),
    sidecarCli: f.sidecarCli,
    stallWatchMs: f.stallWatch,
    grpcMaxStreams: f.grpcMaxStreams,
    generator: oneOf('generator', f.generator, ['node', 'h2load'] as const),
    h2loadKeys: f.h2loadKeys,
    h2loadProcesses: f.h2loadProcesses,
    h2loadGrpcClients: f.h2loadGrpcClients,
    h2loadPacing: oneOf('h2load-pacing', f.h2loadPacing, ['rps', 'script'] as const),
    h2loadStreams: f.h2loadStreams,
    h2loadHttpClients: f.h2loadHttpClients
  }
}
