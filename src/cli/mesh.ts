import { writeSwarmKey } from '../../gossip/psk.js'
import type { CliCommand } from './types.js'

/** Mesh commands of the `meshlimit` CLI. */
export const commands: Record<string, CliCommand> = {
  psk: {
    summary: 'make a private-network key (every node of a mesh needs the same one)',
    usage: 'meshlimit psk <file>\n\nWrites a fresh libp2p swarm key to <file> (mode 0600; refuses to overwrite).\nGive the same file to every node of the mesh with --psk <file> or MESHLIMIT_PSK_FILE.',
    async run (args, io) {
      const file = args[0]
      if (file === undefined || file.startsWith('-') || args.length !== 1) {
        io.err('usage: meshlimit psk <file>')
        return 2
      }
      try {
        await writeSwarmKey(file)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        io.err(code === 'EEXIST' ? `${file} already exists: refusing to overwrite a key nodes may be using; pick another path` : `cannot write ${file}: ${(err as Error).message}`)
        return 1
      }
      io.out(file)
      return 0
    }
  }
}
