#!/usr/bin/env node
// First: libp2p's dependencies need Promise.withResolvers, which Node 20 lacks.
import '../polyfill.js'
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { demo } from './demo.js'
import { commands as meshCommands } from './mesh.js'
import { commands as policyCommands } from './policy.js'
import { start } from './start.js'
import type { CliCommand, CliIO } from './types.js'

/** The commands of the `meshlimit` binary; other modules' records are merged in here. */
export const commands: Record<string, CliCommand> = { start, demo, ...policyCommands, ...meshCommands }

function help (all: Record<string, CliCommand>): string {
  const names = Object.keys(all).sort()
  const width = Math.max(...names.map(n => n.length))
  return `meshlimit: a distributed API rate limiter with no central store

Usage: meshlimit <command> [arguments]

Commands:
${names.map(n => `  ${n.padEnd(width)}  ${all[n].summary}`).join('\n')}

Run "meshlimit <command> --help" for a command's usage.`
}

/** Runs the `meshlimit` command line; resolves to the exit code. */
export async function main (argv: string[], io: CliIO, all: Record<string, CliCommand> = commands): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined
    if (topic !== undefined && Object.hasOwn(all, topic)) io.out(all[topic].usage)
    else io.out(help(all))
    return name === undefined ? 2 : 0
  }
  if (!Object.hasOwn(all, name)) {
    io.err(`meshlimit: unknown command ${JSON.stringify(name)}\n\n${help(all)}`)
    return 2
  }
  const cmd = all[name]
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(cmd.usage)
    return 0
  }
  return await cmd.run(rest, io)
}

const processIO: CliIO = {
  out: line => { process.stdout.write(line + '\n') },
  err: line => { process.stderr.write(line + '\n') },
  env: process.env
}

function isEntryPoint (): boolean {
  const argv1 = process.argv[1]
  if (argv1 === undefined) return false
  try { return realpathSync(argv1) === realpathSync(fileURLToPath(import.meta.url)) } catch { return false }
}

if (isEntryPoint()) {
  main(process.argv.slice(2), processIO).then(code => {
    process.exitCode = code
  }, (err: unknown) => {
    process.stderr.write(`meshlimit: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exitCode = 1
  })
}
