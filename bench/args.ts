import { parseArgs } from 'node:util'

type Value = number | boolean | string | undefined
type Kind = 'number' | 'boolean' | 'string'

const kebab = (name: string): string => name.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)

/**
 * A benchmark's flags, on node:util's parseArgs: every key of `defaults` is a flag in
 * kebab case (`libp2pNodes` -> `--libp2p-nodes`) of its default's type; a boolean that
 * defaults to true is switched off by `--no-<flag>`. Keys whose default is undefined
 * take their type from `types`. Numbers must parse as finite numbers. An unknown flag
 * or a bad value throws an error that ends with the bench's usage line.
 */
export function benchArgs<T extends Record<string, Value>> (bench: string, argv: string[], defaults: T, types: Partial<Record<keyof T, Kind>> = {}): T {
  const kinds = Object.keys(defaults).map(k => [k, types[k] ?? typeof defaults[k]] as [string, Kind])
  const flagOf = (k: string, kind: Kind): string => kind === 'boolean' && defaults[k] === true ? `no-${kebab(k)}` : kebab(k)
  const usage = `usage: ${bench} -- ` + kinds.map(([k, kind]) => kind === 'boolean' ? `[--${flagOf(k, kind)}]` : `[--${kebab(k)} ${kind === 'number' ? 'N' : 'VALUE'}]`).join(' ')
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      args: argv,
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
      out[k] = n
    }
  }
  return out as T
}
