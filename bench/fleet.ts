import { fork, type ChildProcess } from 'node:child_process'

type Message = Record<string, unknown>

/**
 * A benchmark's node processes on loopback. Each speaks: start -> ready {multiaddr},
 * connect {addrs} -> connected, stop; anything else is the bench's own.
 */
export interface Fleet {
  children: ChildProcess[]
  /** Multiaddrs of the nodes, in order. */
  addrs: string[]
  /** The next message of `type` from any node (kept if it came before it was asked for). */
  next(type: string): Promise<Message>
  /** Sends every node 'stop', gives them a second, then kills them. */
  stop(): Promise<void>
}

export interface FleetInit {
  /** Names the fleet in errors. */
  what: string
  /** Arguments of each forked process. @default [] */
  args?: string[]
  /** The start message of node `index`, bootstrapping from `bootstrap` (the first node's address, none for it). */
  start: (index: number, bootstrap: string[]) => Message
  /** Sees every message first; true when it consumed it (it is then not kept for next()). */
  onMessage?: (m: Message) => boolean
  /** @default 60_000 */
  timeoutMs?: number
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Forks `nodes` processes of `script`, starts them one by one, connects every pair and lets the mesh settle 2 s. */
export async function startFleet (script: string, nodes: number, init: FleetInit): Promise<Fleet> {
  const timeoutMs = init.timeoutMs ?? 60_000
  const children: ChildProcess[] = []
  const inbox = new Map<string, Message[]>()
  const waiting = new Map<string, () => void>()
  const next = async (type: string): Promise<Message> => {
    for (;;) {
      const q = inbox.get(type)
      if (q !== undefined && q.length > 0) return q.shift() as Message
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error(`${init.what}: no "${type}" from a node within ${timeoutMs / 1000} s`)) }, timeoutMs)
        waiting.set(type, () => { clearTimeout(timer); resolve() })
      })
    }
  }
  const stop = async (): Promise<void> => {
    for (const c of children) if (c.connected) c.send({ type: 'stop' })
    await sleep(1000)
    for (const c of children) c.kill()
  }
  const addrs: string[] = []
  try {
    for (let i = 0; i < nodes; i++) {
      const c = fork(script, init.args ?? [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
      c.on('message', (raw: unknown) => {
        const m = raw as Message
        if (init.onMessage?.(m) === true) return
        const type = m.type as string
        inbox.set(type, [...(inbox.get(type) ?? []), m])
        const w = waiting.get(type)
        waiting.delete(type)
        w?.()
      })
      children.push(c)
      c.send(init.start(i, addrs.slice(0, 1)))
      addrs.push((await next('ready')).multiaddr as string)
    }
    for (const c of children) c.send({ type: 'connect', addrs })
    for (let i = 0; i < nodes; i++) await next('connected')
    await sleep(2000)
  } catch (err) {
    await stop()
    throw err
  }
  return { children, addrs, next, stop }
}
