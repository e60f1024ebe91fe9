import { parseArgs } from 'node:util'

type Value = number | boolean | string | undefined
type Kind = 'number' | 'boolean' | 'string'

const kebab = (name: string): string => name.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)

/**
 * A benchmark's flags, on node:util's parseArgs: every key of `defaults` is a flag in
 * kebab case (`libp2pNodes` -> `--libp2p-nodes`) of its default's type; a boolean that
 * defaults to true is switched off by `--no-<flag>`. Keys whose default is undefined
 * take their type from `types`. Numbers must parse as finite numbers (and be above 0 for
 * the keys in `positive`). An unknown flag or a bad value throws an error that ends with
 * the bench's usage line.
 */
export function benchArgs<T extends Record<string, Value>> (bench: string, argv: string[], defaults: T, types: Partial<Record<keyof T, Kind>> = {}, positive: ReadonlyArray<keyof T> = []): T {
  const kinds = Object.keys(defaults).map(k => {
    const kind = types[k] ?? typeof defaults[k]
    if (kind !== 'number' && kind !== 'boolean' && kind !== 'string') throw new Error(`benchArgs(${bench}): "${k}" has no default; give its type`)
    return [k, kind] as [string, Kind]
  })
  const flagOf = (k: string, kind: Kind): string => kind === 'boolean' && defaults[k] === true ? `no-${kebab(k)}` : kebab(k)
  const usage = `usage: ${bench} -- ` + kinds.map(([k, kind]) => kind === 'boolean' ? `[--${flagOf(k, kind)}]` : `[--${kebab(k)} ${kind === 'number' ? 'N' : 'VALUE'}]`).join(' ')
  // A flag that takes a value takes the next argument even when it starts with a dash
  // (`--sidecar-node-args "--single-threaded-gc"`), which parseArgs alone calls ambiguous.
  const valued = new Set(kinds.filter(([, kind]) => kind !== 'boolean').map(([k]) => `--${kebab(k)}`))
  const args: string[] = []
  for (let i = 0; i < argv.length; i++) {
    if (valued.has(argv[i]) && i + 1 < argv.length) args.push(`${argv[i]}=${argv[++i]}`)
    else args.push(argv[i])
  }
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(kinds.map(([k, kind]) => [flagOf(k, kind), { type: kind === 'boolean' ? 'boolean' : 'string' }]))
    }).values as Record<string, string | boolean | undefined>
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}; ${usage}`)
  }
  const out: Record<string, Value> = { ...defaults }
  for (const [k, kind] of kinds) {
    const v = values[flagOf(k, kind)]
    if (v === undefined) continue
    if (kind === 'boolean') out[k] = defaults[k] === true ? false : true
    else if (kind === 'string') out[k] = v as string
    else {
      const n = Number(v)
      if (v === '' || !Number.isFinite(n)) throw new Error(`--${kebab(k)} must be a number, got ${String(v)}; ${usage}`)
      if (positive.includes(k) && !(n > 0)) throw new Error(`--${kebab(k)} needs a positive number, got ${String(v)}; ${usage}`)
      out[k] = n
    }
  }
  return out as T
}
