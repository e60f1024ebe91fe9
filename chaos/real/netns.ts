import { execFileSync } from 'node:child_process'

/**
 * Network namespaces standing in for data centres (Linux, root). Every name starts with
 * `mlr<parent pid>-`, so a run only ever touches namespaces it created; nothing is
 * configured in the namespace the harness runs in.
 *
 *   <p>core                    the WAN: routes between regions (ip_forward)
 *     r<R>  <-veth->  wan      one link per region, 10.78.R.1/30 (core) - .2 (region)
 *   <p>r<R>                    a data centre: bridge br0 10.77.(R+1).254/24, ip_forward
 *     n<I>  <-veth->  eth0     one port per node
 *   <p>n<I>                    a host: eth0 10.77.(R+1).(K+1)/24, default via the bridge
 *
 * Partitions are routing rules: a cut along region boundaries is a pair of blackhole
 * rules per region pair in the core (the WAN drops the traffic, hosts see nothing); any
 * other cut is a blackhole route per peer address in each host. Packets are dropped,
 * so established TCP connections stall as they would across a real cut.
 */

export interface NetnsTopology {
  /** Prefix of every namespace of this run. */
  readonly prefix: string
  /** The IPv4 address of node `i`. */
  addressOf(i: number): string
  /** Namespace of node `i`. */
  namespaceOf(i: number): string
  /** Creates node `i`'s namespace in its region (idempotent); a cut in force applies to it. */
  addNode(i: number): void
  /** Cuts the fleet into sides: `side[i]` for every node index ever planned. */
  cut(side: Int32Array): void
  /** Removes every cut. */
  heal(): void
  /** Deletes every namespace of the run (their links go with them). */
  destroy(): void
  /** Commands run so far, for the run's log. */
  readonly log: string[]
}

const PREFIX_RE = /^mlr(\d+)-/

function ip (args: string[], input?: string): void {
  try {
    execFileSync('ip', args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'], input })
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? ''
    throw new Error(`ip ${args.join(' ')} failed: ${stderr === '' ? (err as Error).message : stderr}`)
  }
}

function listNamespaces (): string[] {
  const out = execFileSync('ip', ['netns', 'list'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString()
  return out.split('\n').map(l => l.trim().split(/\s+/)[0]).filter(n => n !== undefined && n !== '')
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Deletes namespaces left by runs whose process is gone (a run killed before its cleanup). */
export function removeStaleNamespaces (): string[] {
  const removed: string[] = []
  for (const ns of listNamespaces()) {
    const m = PREFIX_RE.exec(ns)
    if (m === null || Number(m[1]) === process.pid || alive(Number(m[1]))) continue
    try {
      ip(['netns', 'del', ns])
      removed.push(ns)
    } catch {}
  }
  return removed
}

/**
 * Why this process cannot run the network-namespace mode, or undefined when it can
 * (it creates and deletes a probe namespace to find out).
 */
export function netnsUnavailable (): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`
  if (process.getuid?.() !== 0) return 'network namespaces need root (run as root, or use the gater mode)'
  const probe = `mlr${process.pid}-probe`
  try {
    ip(['netns', 'add', probe])
  } catch (err) {
    return `cannot create a network namespace: ${(err as Error).message}`
  }
  try {
    ip(['-n', probe, 'link', 'add', 'name', 'a', 'type', 'veth', 'peer', 'name', 'b'])
    ip(['-n', probe, 'link', 'add', 'name', 'br0', 'type', 'bridge'])
  } catch (err) {
    return `cannot create veth pairs or bridges in a namespace: ${(err as Error).message}`
  } finally {
    try { ip(['netns', 'del', probe]) } catch {}
  }
  return undefined
}

/** Creates the core and one namespace per region; nodes are added with addNode. */
export function createNetns (regionOf: Int32Array, regions: number): NetnsTopology {
  if (regions > 50) throw new RangeError(`the namespace mode supports at most 50 regions, not ${regions}`)
  const prefix = `mlr${process.pid}-`
  const log: string[] = []
  const run = (args: string[], input?: string): void => {
    log.push(`ip ${args.join(' ')}${input === undefined ? '' : ` <<< ${JSON.stringify(input)}`}`)
    ip(args, input)
  }
  const core = `${prefix}core`
  const regionNs = (r: number): string => `${prefix}r${r}`
  const nodeNs = (i: number): string => `${prefix}n${i}`
  const created: string[] = []
  const addNs = (name: string): void => {
    run(['netns', 'add', name])
    created.push(name)
    run(['-n', name, 'link', 'set', 'dev', 'lo', 'up'])
  }
  const forward = (name: string): void => {
    log.push(`ip netns exec ${name} sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'`)
    execFileSync('ip', ['netns', 'exec', name, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward'], { stdio: 'ignore' })
  }
  // Index of each node within its region, in index order (the host part of its address).
  const hostOf = new Int32Array(regionOf.length)
  const perRegion = new Array<number>(regions).fill(0)
  for (let i = 0; i < regionOf.length; i++) {
    hostOf[i] = ++perRegion[regionOf[i]]
    if (hostOf[i] > 250) throw new RangeError(`the namespace mode supports at most 250 nodes per region, not ${hostOf[i]}`)
  }
  const addressOf = (i: number): string => `10.77.${regionOf[i] + 1}.${hostOf[i]}`
  const subnet = (r: number): string => `10.77.${r + 1}.0/24`
  const nodes = new Set<number>()
  let sides: Int32Array | undefined
  let rules: string[][] = []
  /** Blackhole routes per node namespace: the peer addresses it cannot reach. */
  const routes = new Map<number, string[]>()

  try {
    addNs(core)
    forward(core)
    for (let r = 0; r < regions; r++) {
      const ns = regionNs(r)
      addNs(ns)
      forward(ns)
      run(['-n', core, 'link', 'add', 'name', `r${r}`, 'type', 'veth', 'peer', 'name', 'wan', 'netns', ns])
      run(['-n', core, 'addr', 'add', `10.78.${r}.1/30`, 'dev', `r${r}`])
      run(['-n', core, 'link', 'set', 'dev', `r${r}`, 'up'])
      run(['-n', ns, 'addr', 'add', `10.78.${r}.2/30`, 'dev', 'wan'])
      run(['-n', ns, 'link', 'set', 'dev', 'wan', 'up'])
      run(['-n', ns, 'link', 'add', 'name', 'br0', 'type', 'bridge'])
      run(['-n', ns, 'addr', 'add', `10.77.${r + 1}.254/24`, 'dev', 'br0'])
      run(['-n', ns, 'link', 'set', 'dev', 'br0', 'up'])
      run(['-n', ns, 'route', 'add', 'default', 'via', `10.78.${r}.1`])
      run(['-n', core, 'route', 'add', subnet(r), 'via', `10.78.${r}.2`])
    }
  } catch (err) {
    for (const ns of created.reverse()) try { ip(['netns', 'del', ns]) } catch {}
    throw err
  }

  /** Blackhole routes of node i towards every node on another side (one `ip -batch` per namespace). */
  const applyRoutes = (i: number): void => {
    if (sides === undefined) return
    const cut: string[] = []
    for (const j of nodes) if (j !== i && sides[j] !== sides[i]) cut.push(addressOf(j))
    if (cut.length === 0) return
    run(['-n', nodeNs(i), '-batch', '-'], cut.map(a => `route add blackhole ${a}/32`).join('\n') + '\n')
    routes.set(i, cut)
  }

  const topology: NetnsTopology = {
    prefix,
    log,
    addressOf,
    namespaceOf: nodeNs,
    addNode (i) {
      if (nodes.has(i)) return
      const r = regionOf[i]
      const ns = nodeNs(i)
      addNs(ns)
      run(['-n', regionNs(r), 'link', 'add', 'name', `n${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
      run(['-n', regionNs(r), 'link', 'set', 'dev', `n${i}`, 'master', 'br0'])
      run(['-n', regionNs(r), 'link', 'set', 'dev', `n${i}`, 'up'])
      run(['-n', ns, 'addr', 'add', `${addressOf(i)}/24`, 'dev', 'eth0'])
      run(['-n', ns, 'link', 'set', 'dev', 'eth0', 'up'])
      run(['-n', ns, 'route', 'add', 'default', 'via', `10.77.${r + 1}.254`])
      nodes.add(i)
      // A node-level cut in force reaches the newcomer, both ways.
      if (sides !== undefined && rules.length === 0) {
        for (const j of nodes) {
          if (j === i || sides[j] === sides[i]) continue
          run(['-n', nodeNs(j), 'route', 'add', 'blackhole', `${addressOf(i)}/32`])
          routes.set(j, [...(routes.get(j) ?? []), addressOf(i)])
        }
        applyRoutes(i)
      }
    },
    cut (side) {
      topology.heal()
      sides = side.slice()
      // Along region boundaries when every region lies on one side: cut the WAN.
      const regionSide = new Array<number | undefined>(regions).fill(undefined)
      let aligned = true
      for (let i = 0; i < side.length; i++) {
        const r = regionOf[i]
        if (regionSide[r] === undefined) regionSide[r] = side[i]
        else if (regionSide[r] !== side[i]) aligned = false
      }
      if (aligned) {
        for (let a = 0; a < regions; a++) {
          for (let b = 0; b < regions; b++) {
            if (a === b || regionSide[a] === undefined || regionSide[a] === regionSide[b]) continue
            const rule = ['from', subnet(a), 'to', subnet(b), 'blackhole']
            run(['-n', core, 'rule', 'add', ...rule])
            rules.push(rule)
          }
        }
        return
      }
      for (const i of nodes) applyRoutes(i)
    },
    heal () {
      for (const rule of rules) run(['-n', core, 'rule', 'del', ...rule])
      rules = []
      for (const [i, cut] of routes) run(['-n', nodeNs(i), '-batch', '-'], cut.map(a => `route del blackhole ${a}/32`).join('\n') + '\n')
      routes.clear()
      sides = undefined
    },
    destroy () {
      for (const ns of created.reverse()) {
        try {
          ip(['netns', 'del', ns])
        } catch {}
      }
      created.length = 0
    }
  }
  return topology
}
