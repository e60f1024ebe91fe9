/**
 * A strict parser for the part of RFC 9651 the rate-limit headers use (lists of
 * items with parameters; string, integer and token bare items), written from the
 * RFC's parsing algorithm so that tests check our serialisation against the grammar,
 * not against our own serialiser.
 */
export type Bare = string | number | { token: string }
export interface Member { value: Bare, params: Array<[string, Bare]> }

export function parseList (input: string): Member[] {
  let s = input.replace(/^ +| +$/g, '')
  const out: Member[] = []
  while (s.length > 0) {
    const [m, rest] = parseItem(s)
    out.push(m)
    s = rest.replace(/^[ \t]+/, '')
    if (s.length === 0) return out
    if (s[0] !== ',') throw new SyntaxError(`expected "," at ${JSON.stringify(s)}`)
    s = s.slice(1).replace(/^[ \t]+/, '')
    if (s.length === 0) throw new SyntaxError('trailing comma')
  }
  return out
}

function parseItem (s: string): [Member, string] {
  const [value, rest] = parseBare(s)
  const params: Array<[string, Bare]> = []
  let r = rest
  while (r[0] === ';') {
    r = r.slice(1).replace(/^ +/, '')
    const k = /^[a-z*][a-z0-9_\-.*]*/.exec(r)
    if (k === null) throw new SyntaxError(`bad key at ${JSON.stringify(r)}`)
    r = r.slice(k[0].length)
    let v: Bare = 1
    if (r[0] === '=') {
      const [pv, pr] = parseBare(r.slice(1))
      v = pv
      r = pr
    }
    params.push([k[0], v])
  }
  return [{ value, params }, r]
}

function parseBare (s: string): [Bare, string] {
  if (s[0] === '"') {
    let out = ''
    for (let i = 1; i < s.length; i++) {
      const c = s[i]
      if (c === '\\') {
        const n = s[++i]
        if (n !== '"' && n !== '\\') throw new SyntaxError(`bad escape \\${n}`)
        out += n
      } else if (c === '"') return [out, s.slice(i + 1)]
      else {
        const code = c.charCodeAt(0)
        if (code < 0x20 || code > 0x7e) throw new SyntaxError(`non-printable ${code} in string`)
        out += c
      }
    }
    throw new SyntaxError('unterminated string')
  }
  const num = /^-?[0-9]{1,15}(?![0-9.])/.exec(s)
  if (num !== null) return [Number(num[0]), s.slice(num[0].length)]
  const tok = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/.exec(s)
  if (tok !== null) return [{ token: tok[0] }, s.slice(tok[0].length)]
  throw new SyntaxError(`bad bare item at ${JSON.stringify(s)}`)
}
