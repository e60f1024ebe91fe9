import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, type WriteStream } from 'node:fs'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import type { NetnsTopology } from './netns.js'
import { REPORT_FD, type Command, type NodeInit, type Report } from './protocol.js'

/** How a node process ended. */
export interface NodeExit {
  code: number | null
  signal: NodeJS.Signals | null
  /** Whether the harness asked for it (a SIGKILL of a crash event, or a stop). */
  expected: boolean
}

export interface FleetInit {
  /** Folder for the nodes' logs (node-<i>.log, every incarnation appended). */
  dir: string
  /** The node program (chaos/real/child.js, or a transpiled copy in tests). */
  childModule: string
  /** Node.js options of the node processes. */
  execArgv: string[]
  /** When set, node `i` runs inside its namespace. */
  netns: NetnsTopology | undefined
  onReport(i: number, r: Report): void
  onExit(i: number, exit: NodeExit): void
}

/** The node processes of a run, one slot per node index; a restart reuses the slot. */
export interface Fleet {
  spawn(i: number, init: NodeInit): void
  send(i: number, cmd: Command): void
  /** SIGKILL: no flush, no goodbye. */
  kill(i: number): void
  /** Asks for a graceful stop (flush, leave); SIGKILL after `graceMs`. */
  stop(i: number, graceMs?: number): Promise<void>
  running(i: number): boolean
  pid(i: number): number | undefined
  /** Kills every node process still running (SIGKILL) and waits for them to exit. */
  killAll(): Promise<void>
}

interface Slot {
  child: ChildProcess
  expected: boolean
  exited: Promise<void>
  log: WriteStream
}

export function createFleet (init: FleetInit): Fleet {
  const slots = new Map<number, Slot>()

  const readReports = (i: number, stream: Readable): void => {
    let rest = ''
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => {
      rest += chunk
      let nl = rest.indexOf('\n')
      while (nl >= 0) {
        const line = rest.slice(0, nl)
        rest = rest.slice(nl + 1)
        if (line !== '') init.onReport(i, JSON.parse(line) as Report)
        nl = rest.indexOf('\n')
      }
    })
  }

  const fleet: Fleet = {
    spawn (i, nodeInit) {
      if (slots.has(i)) throw new Error(`node ${i} is already running`)
      const node = [...init.execArgv, init.childModule]
      const [cmd, args] = init.netns === undefined
        ? [process.execPath, node]
        : ['ip', ['netns', 'exec', init.netns.namespaceOf(i), process.execPath, ...node]]
      const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc', 'pipe'] })
      const log = createWriteStream(join(init.dir, `node-${i}.log`), { flags: 'a' })
      log.write(`--- incarnation started at ${new Date().toISOString()} (pid ${child.pid ?? '?'})\n`)
      child.stdout?.pipe(log, { end: false })
      child.stderr?.pipe(log, { end: false })
      readReports(i, child.stdio[REPORT_FD] as Readable)
      const slot: Slot = {
        child,
        expected: false,
        log,
        exited: new Promise(resolve => {
          child.once('exit', (code, signal) => {
            // Reports still in the pipe are read before the slot is freed.
            const reports = child.stdio[REPORT_FD] as Readable
            const done = (): void => {
              slots.delete(i)
              log.end(`--- exited: code ${code ?? '-'} signal ${signal ?? '-'}\n`)
              init.onExit(i, { code, signal, expected: slot.expected })
              resolve()
            }
            if (reports.readableEnded || reports.destroyed) done()
            else reports.once('close', done)
          })
        })
      }
      child.on('error', err => { log.write(`spawn error: ${err.message}\n`) })
      slots.set(i, slot)
      child.send(nodeInit)
    },
    send (i, cmd) {
      const s = slots.get(i)
      if (s === undefined || !s.child.connected) return
      s.child.send(cmd, err => { if (err != null) s.log.write(`send failed: ${err.message}\n`) })
    },
    kill (i) {
      const s = slots.get(i)
      if (s === undefined) return
      s.expected = true
      s.child.kill('SIGKILL')
    },
    async stop (i, graceMs = 5000) {
      const s = slots.get(i)
      if (s === undefined) return
      s.expected = true
      fleet.send(i, { t: 'stop' })
      const timer = setTimeout(() => { s.child.kill('SIGKILL') }, graceMs)
      await s.exited
      clearTimeout(timer)
    },
    running: i => slots.has(i),
    pid: i => slots.get(i)?.child.pid,
    async killAll () {
      const all = [...slots.values()]
      for (const s of all) {
        s.expected = true
        s.child.kill('SIGKILL')
      }
      await Promise.all(all.map(async s => await s.exited))
    }
  }
  return fleet
}
