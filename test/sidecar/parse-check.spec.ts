import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseCheckRequest } from '../../src/sidecar/decision-api.js'

// The parser as it was before it stopped copying (Object.keys, a copy into Object.create(null)):
// the rewrite must give the same answer for every body.
function reference (body: unknown): { descriptor: Record<string, string>, cost: number } | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'the body must be a JSON object such as {"descriptor":{"user":"u-42"},"cost":1}'
  const b = body as Record<string, unknown>
  for (const k of Object.keys(b)) if (k !== 'descriptor' && k !== 'cost') return `unknown field ${JSON.stringify(k)}; the fields are "descriptor" and "cost"`
  const d = b.descriptor
  if (typeof d !== 'object' || d === null || Array.isArray(d)) return '"descriptor" must be an object of string fields, e.g. {"user":"u-42","route":"/v1/search"}'
  const names = Object.keys(d)
  if (names.length > 64) return `"descriptor" has ${names.length} fields; at most 64 are accepted`
  const descriptor = Object.create(null) as Record<string, string>
  for (const name of names) {
    const v = (d as Record<string, unknown>)[name]
    if (name.length > 64 || !/^[A-Za-z0-9_.-]+$/.test(name)) return `descriptor field name ${JSON.stringify(name.slice(0, 80))} must be 1-64 letters, digits, "_", "." or "-"`
    if (typeof v !== 'string') return `descriptor.${name} must be a string, got ${v === null ? 'null' : typeof v}`
    if (v.length > 4096) return `descriptor.${name} is ${v.length} characters long; at most 4096 are accepted`
    descriptor[name] = v
  }
  const cost = b.cost ?? 1
  if (typeof cost !== 'number' || !Number.isInteger(cost) || cost < 1 || cost > 2 ** 32 - 1) return `"cost" must be an integer from 1 to ${2 ** 32 - 1}, got ${JSON.stringify(cost)}`
  return { descriptor, cost }
}

const fieldName = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_.-]{1,8}$/),
  fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'bad name', '', 'x'.repeat(65)),
  fc.string({ maxLength: 4 })
)
const value = fc.oneof({ weight: 6, arbitrary: fc.string({ maxLength: 6 }) }, fc.constant('v'.repeat(4097)), fc.integer(), fc.constant(null), fc.boolean(), fc.constant({}))
const descriptorText = fc.oneof(
  { weight: 8, arbitrary: fc.array(fc.tuple(fieldName, value), { maxLength: 6 }) },
  fc.integer({ min: 60, max: 70 }).map(n => Array.from({ length: n }, (_, i) => [`f${i}`, i === 2 ? 7 : 'v'] as [string, unknown]))
).map(fields => '{' + fields.map(([k, v]) => JSON.stringify(k) + ':' + JSON.stringify(v)).join(',') + '}')
const bodyText = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(descriptorText, fc.option(fc.oneof(fc.integer({ min: -2, max: 2 ** 33 }), fc.double(), fc.constant('1')), { nil: undefined }), fc.option(fc.constantFrom('extra', 'descriptors'), { nil: undefined })) },
  fc.constant(['[1,2]', undefined, undefined] as [string, undefined, undefined])
).map(([d, cost, extra]) => d.startsWith('[') ? d : '{"descriptor":' + d + (cost !== undefined ? ',"cost":' + JSON.stringify(cost) : '') + (extra !== undefined ? ',"' + extra + '":1' : '') + '}')

describe('parseCheckRequest', () => {
  it('answers as the copying parser did, for every body (same reason, same fields, no prototype)', () => {
    fc.assert(fc.property(bodyText, text => {
      const got = parseCheckRequest(JSON.parse(text))
      const want = reference(JSON.parse(text))
      if (typeof want === 'string') {
        expect(got).toBe(want)
        return
      }
      if (typeof got === 'string') throw new Error(`refused ${text}: ${got}`)
      expect(got.cost).toBe(want.cost)
      expect(Object.getPrototypeOf(got.descriptor)).toBe(null)
      expect(Object.entries(got.descriptor)).toEqual(Object.entries(want.descriptor))
    }), { numRuns: 1000 })
  })

  it('a field named like an Object.prototype member reads as itself, an absent one as undefined', () => {
    const r = parseCheckRequest(JSON.parse('{"descriptor":{"__proto__":"p","toString":"t"}}'))
    if (typeof r === 'string') throw new Error(r)
    expect(r.descriptor.__proto__).toBe('p')
    expect(r.descriptor.toString).toBe('t')
    expect(r.descriptor.constructor).toBeUndefined()
    expect(parseCheckRequest(JSON.parse('{"descriptor":{' + Array.from({ length: 65 }, (_, i) => `"f${i}":${i === 0 ? 1 : '"v"'}`).join(',') + '}}')))
      .toBe('"descriptor" has 65 fields; at most 64 are accepted')
  })
})
