import { readFile, writeFile } from 'node:fs/promises'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { ErrorCode, MeshlimitError } from '../errors.js'
import { POLICY_ADMIN_PATH } from '../policy/admin.js'
import { encodeBundle, exportPrivateKey, generateOperatorKey, loadPrivateKey, openBundle, parseBundle, signBundle, trustedKeyMap, contentHash, type OperatorKey } from '../policy/bundle.js'
import { diffPolicies } from '../policy/diff.js'
import type { EnvoyConvertInit } from '../policy/envoy.js'
import { readPolicyText, type LoadedPolicy } from '../policy/load.js'
import type { PolicyDocument } from '../policy/types.js'
import { validatePolicies } from '../policy/validate.js'
import type { CliCommand, CliIO } from './types.js'

/**
 * `meshlimit policy ...` and `meshlimit keygen`. Every command prints its result as
 * one JSON object on the last line of stdout; messages go to stderr. Exit codes: 0
 * done, 1 refused or failed (the JSON says why), 2 bad usage.
 */

const POLICY_USAGE = `Usage: meshlimit policy <command> [options]

Commands:
  validate <file>        check a policy document, Envoy configuration or signed bundle offline
  sign <file>            sign a document as a bundle (prints it, or writes --out)
  push <file>            sign (unless already a bundle) and send it to a node's admin API
  show                   print the version a node runs
  diff <old> <new>       what changes between two documents or bundles

Options:
  --key <file>           operator private key (or MESHLIMIT_OPERATOR_KEY_FILE, or the PEM in MESHLIMIT_OPERATOR_KEY)
  --version <n>          bundle version (default: the document's; push: the node's version + 1)
  --out <file>           sign: write the bundle here instead of stdout
  --url <url>            push/show: admin URL of a node (or MESHLIMIT_ADMIN_URL)
  --token <token>        push/show: admin bearer token (or MESHLIMIT_ADMIN_TOKEN)
  --trusted-key <key>    validate: check a bundle's signature against this public key (repeatable, or MESHLIMIT_TRUSTED_KEYS, comma-separated)
  --domain-field <name>  Envoy files: descriptor field that must equal the domain
  --sliding              Envoy files: sliding windows instead of Envoy's fixed windows
  --timeout-ms <ms>      push/show: give up after this long (default 10000)
`

const KEYGEN_USAGE = `Usage: meshlimit keygen [--out <prefix>] [--force]

Makes an operator key pair for signing policy bundles. With --out, writes <prefix>.key
(private, PKCS#8 PEM, mode 0600) and <prefix>.pub (the public key line nodes trust);
without it, prints the private key PEM to stdout. Give the public key
("ed25519:...") to every node's trustedKeys; keep the private key where bundles are signed.
`

const OPTIONS: ParseArgsConfig['options'] = {
  key: { type: 'string' },
  version: { type: 'string' },
  out: { type: 'string' },
  url: { type: 'string' },
  token: { type: 'string' },
  'trusted-key': { type: 'string', multiple: true },
  'domain-field': { type: 'string' },
  sliding: { type: 'boolean' },
  'timeout-ms': { type: 'string' },
  force: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' }
}

type Values = Record<string, string | boolean | string[] | undefined>

class UsageError extends Error {}

function summary (io: CliIO, obj: Record<string, unknown>): void {
  io.out(JSON.stringify(obj))
}

/** Reports a failure: the message on stderr, the JSON summary on stdout; exit code 1. */
function failure (io: CliIO, err: unknown, extra: Record<string, unknown> = {}): number {
  const e = err instanceof MeshlimitError ? err : undefined
  const message = err instanceof Error ? err.message : String(err)
  io.err(`meshlimit: ${e === undefined ? '' : `${e.code}${e.field === undefined ? '' : ` at ${e.field}`}: `}${message}`)
  summary(io, { ok: false, ...extra, code: e?.code ?? null, field: e?.field ?? null, message })
  return 1
}

function parse (args: string[]): { values: Values, positionals: string[] } {
  try {
    const r = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true })
    return { values: r.values as Values, positionals: r.positionals }
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err))
  }
}

function versionOption (v: Values): number | undefined {
  if (v.version === undefined) return undefined
  const n = Number(v.version)
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`--version must be an integer >= 1, got ${String(v.version)}`)
  return n
}

function envoyOptions (v: Values): EnvoyConvertInit {
  return { domainField: v['domain-field'] as string | undefined, algorithm: v.sliding === true ? 'sliding-window' : 'fixed-window' }
}

async function readText (path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    throw new MeshlimitError(ErrorCode.SOURCE_UNREADABLE, `cannot read ${path}: ${err instanceof Error ? err.message : String(err)}. Fix: check the path`, 'file', path)
  }
}

async function load (path: string, v: Values): Promise<LoadedPolicy> {
  return readPolicyText(await readText(path), path, envoyOptions(v))
}

/** The operator key from --key, MESHLIMIT_OPERATOR_KEY_FILE or MESHLIMIT_OPERATOR_KEY. */
async function operatorKey (v: Values, io: CliIO): Promise<OperatorKey> {
  const file = (v.key as string | undefined) ?? io.env.MESHLIMIT_OPERATOR_KEY_FILE
  if (file !== undefined && file !== '') return loadPrivateKey(await readText(file), file)
  const pem = io.env.MESHLIMIT_OPERATOR_KEY
  if (pem !== undefined && pem !== '') return loadPrivateKey(pem, 'MESHLIMIT_OPERATOR_KEY')
  throw new MeshlimitError(ErrorCode.KEY_INVALID, 'no operator key given. Fix: pass --key <file> (from `meshlimit keygen`), or set MESHLIMIT_OPERATOR_KEY_FILE or MESHLIMIT_OPERATOR_KEY', 'key')
}

function adminUrl (v: Values, io: CliIO): string {
  const raw = (v.url as string | undefined) ?? io.env.MESHLIMIT_ADMIN_URL
  if (raw === undefined || raw === '') throw new UsageError('--url (or MESHLIMIT_ADMIN_URL) is required: the admin URL of a node, e.g. http://127.0.0.1:9091')
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    throw new UsageError(`--url ${raw} is not a URL`)
  }
  if (u.pathname === '/' || u.pathname === '') u.pathname = POLICY_ADMIN_PATH
  return u.toString()
}

function timeoutOption (v: Values): number {
  const n = Number(v['timeout-ms'] ?? 10_000)
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--timeout-ms must be a positive number, got ${String(v['timeout-ms'])}`)
  return n
}

/** Calls the admin API; a non-2xx answer becomes a MeshlimitError with its code (and HTTP status). */
async function admin (url: string, v: Values, io: CliIO, init: { method: string, body?: Uint8Array }): Promise<{ status: number, body: Record<string, unknown> }> {
  const token = (v.token as string | undefined) ?? io.env.MESHLIMIT_ADMIN_TOKEN
  const headers: Record<string, string> = { accept: 'application/json' }
  if (token !== undefined && token !== '') headers.authorization = `Bearer ${token}`
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  let res: Response
  try {
    res = await fetch(url, { method: init.method, headers, body: init.body, signal: AbortSignal.timeout(timeoutOption(v)) })
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : ''
    throw new MeshlimitError(ErrorCode.SOURCE_UNREADABLE, `cannot reach ${url} (${err instanceof Error ? err.message : String(err)}${cause}). Fix: check --url and that the node's admin server listens there`, 'url', url)
  }
  const text = await res.text()
  let body: Record<string, unknown>
  try {
    body = JSON.parse(text) as Record<string, unknown>
  } catch {
    body = { detail: text.slice(0, 200) }
  }
  if (!res.ok) {
    const code = typeof body.code === 'string' ? body.code as ErrorCode : ErrorCode.STATE_INVALID
    const fix = res.status === 401 || (res.status === 403 && body.code === undefined) ? ' Fix: pass the admin token with --token or MESHLIMIT_ADMIN_TOKEN' : ''
    const detail = typeof body.detail === 'string' ? body.detail : `HTTP ${res.status}`
    const err = new MeshlimitError(code, `${url} answered ${res.status}: ${detail}${fix}`, typeof body.field === 'string' ? body.field : undefined)
    Object.assign(err, { status: res.status })
    throw err
  }
  return { status: res.status, body }
}

// --- commands --------------------------------------------------------------------

async function validate (positionals: string[], v: Values, io: CliIO): Promise<number> {
  const file = positionals[0]
  if (file === undefined) throw new UsageError('validate needs a file')
  try {
    const loaded = await load(file, v)
    if (loaded.kind === 'bundle') {
      const keys = [...(v['trusted-key'] as string[] | undefined ?? []), ...(io.env.MESHLIMIT_TRUSTED_KEYS ?? '').split(',').map(k => k.trim()).filter(k => k !== '')]
      const parsed = parseBundle(loaded.bytes)
      const set = keys.length > 0 ? openBundle(loaded.bytes, trustedKeyMap(keys)).set : validatePolicies(parsed.content)
      if (keys.length === 0) io.err(`meshlimit: ${file}: signature not checked (pass --trusted-key to check it)`)
      summary(io, { ok: true, file, format: 'bundle', version: parsed.version, hash: parsed.hash, keyId: parsed.keyId, verified: keys.length > 0, policies: set.policies.length, limits: set.policies.reduce((n, p) => n + p.limits.length, 0), warnings: [] })
      return 0
    }
    for (const w of loaded.warnings) io.err(`meshlimit: warning: ${w}`)
    const set = validatePolicies(loaded.document)
    summary(io, { ok: true, file, format: loaded.format, version: loaded.document.version ?? null, hash: contentHash(loaded.document), keyId: null, verified: null, policies: set.policies.length, limits: set.policies.reduce((n, p) => n + p.limits.length, 0), warnings: loaded.warnings })
    return 0
  } catch (err) {
    return failure(io, err, { file })
  }
}

/** Signs the loaded document (or passes a bundle through); `version` falls back to `nextVersion()`. */
async function toBundle (loaded: LoadedPolicy, v: Values, io: CliIO, nextVersion?: () => Promise<number>): Promise<Uint8Array> {
  if (loaded.kind === 'bundle') {
    if (v.version !== undefined) throw new UsageError('--version cannot change a signed bundle: sign the document again')
    return loaded.bytes
  }
  for (const w of loaded.warnings) io.err(`meshlimit: warning: ${w}`)
  const key = await operatorKey(v, io)
  let version = versionOption(v) ?? loaded.document.version
  if ((version === undefined || version === 0) && nextVersion !== undefined) version = await nextVersion()
  return encodeBundle(signBundle(loaded.document as PolicyDocument, key, version === 0 ? undefined : version), v.out === undefined ? undefined : 2)
}

async function sign (positionals: string[], v: Values, io: CliIO): Promise<number> {
  const file = positionals[0]
  if (file === undefined) throw new UsageError('sign needs a file')
  try {
    const loaded = await load(file, v)
    if (loaded.kind === 'bundle') throw new UsageError(`${file} is already a signed bundle`)
    const bytes = await toBundle(loaded, v, io)
    const b = parseBundle(bytes)
    const out = v.out as string | undefined
    if (out === undefined) {
      io.err(`meshlimit: signed ${file} as version ${b.version} (hash ${b.hash.slice(0, 12)}, key ${b.keyId})`)
      // The bundle itself is the JSON result.
      io.out(new TextDecoder().decode(bytes))
      return 0
    }
    await writeFile(out, bytes)
    summary(io, { ok: true, file, out, version: b.version, hash: b.hash, keyId: b.keyId })
    return 0
  } catch (err) {
    if (err instanceof UsageError) throw err
    return failure(io, err, { file })
  }
}

async function push (positionals: string[], v: Values, io: CliIO): Promise<number> {
  const file = positionals[0]
  if (file === undefined) throw new UsageError('push needs a file')
  const url = adminUrl(v, io)
  try {
    const loaded = await load(file, v)
    const bytes = await toBundle(loaded, v, io, async () => {
      // No version given: one above what the node runs (a rollback is just a push of old content).
      const cur = await admin(url, v, io, { method: 'GET' })
      return (typeof cur.body.version === 'number' ? cur.body.version : 0) + 1
    })
    const b = parseBundle(bytes)
    const r = await admin(url, v, io, { method: 'POST', body: bytes })
    io.err(`meshlimit: ${url}: ${String(r.body.status)} version ${b.version} (hash ${b.hash.slice(0, 12)})`)
    summary(io, { ok: true, file, url, status: r.body.status, version: b.version, hash: b.hash, keyId: b.keyId, previousVersion: r.body.previousVersion ?? null })
    return 0
  } catch (err) {
    if (err instanceof UsageError) throw err
    return failure(io, err, { file, url, status: (err as { status?: number }).status ?? null })
  }
}

async function show (_positionals: string[], v: Values, io: CliIO): Promise<number> {
  const url = adminUrl(v, io)
  try {
    const r = await admin(url, v, io, { method: 'GET' })
    summary(io, { ok: true, url, ...r.body })
    return 0
  } catch (err) {
    return failure(io, err, { url, status: (err as { status?: number }).status ?? null })
  }
}

async function diff (positionals: string[], v: Values, io: CliIO): Promise<number> {
  const [a, b] = positionals
  if (a === undefined || b === undefined) throw new UsageError('diff needs two files')
  try {
    const docOf = async (f: string): Promise<unknown> => {
      const l = await load(f, v)
      return l.kind === 'bundle' ? parseBundle(l.bytes).content : l.document
    }
    const d = diffPolicies(validatePolicies(await docOf(a)), validatePolicies(await docOf(b)))
    for (const line of d.lines) io.err(line)
    summary(io, { ok: true, from: a, to: b, ...d.summary })
    return 0
  } catch (err) {
    return failure(io, err, { from: a, to: b })
  }
}

const SUBCOMMANDS: Record<string, (p: string[], v: Values, io: CliIO) => Promise<number>> = { validate, sign, push, show, diff }

async function runPolicy (args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    ;(sub === undefined ? io.err : io.out)(POLICY_USAGE)
    return sub === undefined ? 2 : 0
  }
  const fn = SUBCOMMANDS[sub]
  if (fn === undefined) {
    io.err(`meshlimit policy: unknown command "${sub}"\n\n${POLICY_USAGE}`)
    return 2
  }
  try {
    const { values, positionals } = parse(rest)
    if (values.help === true) {
      io.out(POLICY_USAGE)
      return 0
    }
    return await fn(positionals, values, io)
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`meshlimit policy ${sub}: ${err.message}\n\n${POLICY_USAGE}`)
      return 2
    }
    return failure(io, err)
  }
}

async function runKeygen (args: string[], io: CliIO): Promise<number> {
  let values: Values
  try {
    values = parse(args).values
  } catch (err) {
    io.err(`meshlimit keygen: ${(err as Error).message}\n\n${KEYGEN_USAGE}`)
    return 2
  }
  if (values.help === true) {
    io.out(KEYGEN_USAGE)
    return 0
  }
  const key = generateOperatorKey()
  const pem = exportPrivateKey(key)
  const out = values.out as string | undefined
  if (out === undefined) {
    io.err('meshlimit: the private key follows on stdout; store it as a secret. The public key for trustedKeys is in the last line.')
    io.out(pem.trimEnd())
    summary(io, { ok: true, keyId: key.keyId, publicKey: key.text })
    return 0
  }
  const flag = values.force === true ? 'w' : 'wx'
  try {
    await writeFile(`${out}.key`, pem, { mode: 0o600, flag })
    await writeFile(`${out}.pub`, key.text + '\n', { flag })
  } catch (err) {
    const exists = (err as { code?: string }).code === 'EEXIST'
    return failure(io, new MeshlimitError(ErrorCode.KEY_INVALID, `cannot write ${out}.key / ${out}.pub: ${exists ? 'the file exists' : (err as Error).message}. Fix: ${exists ? 'choose another --out, or pass --force to replace the key' : 'check the directory'}`, 'out', out))
  }
  io.err(`meshlimit: wrote ${out}.key (keep it secret) and ${out}.pub (give it to every node's trustedKeys)`)
  summary(io, { ok: true, keyId: key.keyId, publicKey: key.text, privateKeyFile: `${out}.key`, publicKeyFile: `${out}.pub` })
  return 0
}

export const commands: Record<string, CliCommand> = {
  policy: {
    summary: 'validate, sign, push, show and diff policy bundles',
    usage: POLICY_USAGE,
    run: runPolicy
  },
  keygen: {
    summary: 'make an operator key pair for signing policy bundles',
    usage: KEYGEN_USAGE,
    run: runKeygen
  }
}
