/**
 * The few Structured Field Values (RFC 9651, formerly RFC 8941) serialisations the
 * rate-limit headers need: lists of String items with Integer and String parameters.
 */

/** Largest magnitude of an sf-integer: 15 decimal digits. */
export const SF_MAX_INTEGER = 999_999_999_999_999

/** sf-string: printable ASCII in double quotes, with `"` and `\` escaped. */
export function sfString (s: string): string {
  let out = '"'
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c > 0x7e) throw new RangeError(`sf-string: character ${c} at ${i} of ${JSON.stringify(s)} is not printable ASCII`)
    if (c === 0x22 || c === 0x5c) out += '\\'
    out += s[i]
  }
  return out + '"'
}

/** sf-integer: a whole number clamped to the 15-digit range (fractions are floored). */
export function sfInteger (n: number): string {
  return String(sfIntegerValue(n))
}

/** The number sfInteger writes (for writers that print numbers themselves). */
export function sfIntegerValue (n: number): number {
  if (Number.isNaN(n)) throw new RangeError('sf-integer: NaN')
  return n >= SF_MAX_INTEGER ? SF_MAX_INTEGER : n <= -SF_MAX_INTEGER ? -SF_MAX_INTEGER : Math.floor(n)
}

/** sf-key: lowercase letter or `*`, then lowercase letters, digits, `_ - . *`. */
const KEY = /^[a-z*][a-z0-9_\-.*]*$/

/** One list member: an sf-string item with parameters (integers or strings) in order. */
export function sfItem (value: string, params: ReadonlyArray<readonly [string, number | string]>): string {
  let out = sfString(value)
  for (const [k, v] of params) {
    if (!KEY.test(k)) throw new RangeError(`sf-key: ${JSON.stringify(k)} is not a valid key`)
    out += ';' + k + '=' + (typeof v === 'number' ? sfInteger(v) : sfString(v))
  }
  return out
}

/** An sf-list: members joined by a comma and one space. */
export function sfList (members: readonly string[]): string {
  return members.join(', ')
}
