import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { BENCH_DOMAIN, H2LOAD_MAX_EVEN_RPS, checkRequestBody, decisionsOf, grpcFrame, h2loadArgs, latencyOf, pacedPlan, parseH2loadLog, parseH2loadSummary, rlsRequestBody, timingScript, type H2loadPlan } from '../../bench/h2load.js'
import { parseCheckRequest } from '../../src/sidecar/decision-api.js'
import { decodeRlsRequest } from '../../src/sidecar/rls-codec.js'

// Well-formed strings (UTF-8 cannot carry lone surrogates), short and past 127 bytes.
const user = fc.oneof(fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }), fc.string({ unit: 'binary', minLength: 130, maxLength: 300 }))

describe('h2load request bodies', () => {
  it('frames a message with gRPC\'s 5-byte prefix: uncompressed, big-endian length', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 70_000 }), m => {
      const f = grpcFrame(m)
      expect(f.length).toBe(m.length + 5)
      expect(f[0]).toBe(0)
      expect(f.readUInt32BE(1)).toBe(m.length)
      expect(f.subarray(5).equals(Buffer.from(m))).toBe(true)
    }), { numRuns: 50 })
  })

  it('posts the RateLimitRequest the node generator sends, as our RLS codec reads it', () => {
    fc.assert(fc.property(user, u => {
      const body = rlsRequestBody(u)
      expect(body[0]).toBe(0)
      expect(body.readUInt32BE(1)).toBe(body.length - 5)
      expect(decodeRlsRequest(body.subarray(5))).toEqual({ domain: BENCH_DOMAIN, descriptors: [{ entries: [{ key: 'user', value: u }], hits_addend: null }], hits_addend: 0 })
    }), { numRuns: 200 })
  })

  it('posts a /v1/check body the decision API reads as {user} at cost 1', () => {
    fc.assert(fc.property(user, u => {
      const parsed = parseCheckRequest(JSON.parse(checkRequestBody(u).toString('utf8')))
      expect(parsed).toEqual({ descriptor: Object.assign(Object.create(null), { user: u }), cost: 1 })
    }), { numRuns: 200 })
  })
})

describe('h2load command line', () => {
  const base: H2loadPlan = { url: 'http://127.0.0.1:1/x', h1: false, clients: 2, streams: 64, headers: ['te: trailers'] }

  it('asks for a set number of requests at a rate, with headers, body and log', () => {
    const args = h2loadArgs({ ...base, rpsPerClient: 2500, requests: 50_000 }, '/tmp/b', '/tmp/l')
    expect(args.join(' ')).toBe('-c 2 -m 64 -t 1 -d /tmp/b --rps 2500 -n 50000 -H te: trailers --log-file /tmp/l http://127.0.0.1:1/x')
  })

  it('runs for a duration in ms over HTTP/1.1 when asked, and refuses a plan with neither', () => {
    expect(h2loadArgs({ ...base, h1: true, durationS: 2.5 }, '/tmp/b')).toEqual(['-c', '2', '-m', '64', '-t', '1', '-d', '/tmp/b', '--h1', '-D', '2500ms', '-H', 'te: trailers', 'http://127.0.0.1:1/x'])
    expect(() => h2loadArgs(base, '/tmp/b')).toThrow(/requests or durationS/)
  })

  it('staggers connections, and takes its URIs from a timing script instead of --rps', () => {
    expect(h2loadArgs({ ...base, rpsPerClient: 100, connectPerMs: 3, requests: 10 }, '/tmp/b').join(' ')).toContain('--rps 100 -r 3 --rate-period 1ms -n 10')
    const args = h2loadArgs({ ...base, rpsPerClient: 100, timingScript: '/tmp/s', requests: 10 }, '/tmp/b')
    expect(args.join(' ')).toBe('-c 2 -m 64 -t 1 -d /tmp/b --timing-script-file /tmp/s -n 10 -H te: trailers')
  })

  it('paces a rate over connections of at most 100/s each, opened over one 10 ms tick', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 100_000 }), fc.option(fc.integer({ min: 1, max: 500 }), { nil: undefined }), (rate, clients) => {
      const p = pacedPlan(rate, clients)
      expect(p.clients * p.rpsPerClient).toBeCloseTo(rate, 6)
      if (clients !== undefined) expect(p.clients).toBe(clients)
      else {
        expect(p.rpsPerClient).toBeLessThanOrEqual(H2LOAD_MAX_EVEN_RPS)
        // One connection fewer would need more than 100/s each.
        if (p.clients > 1) expect(rate / (p.clients - 1)).toBeGreaterThan(H2LOAD_MAX_EVEN_RPS)
      }
      expect(p.connectPerMs * 10).toBeGreaterThanOrEqual(p.clients)
      expect((p.connectPerMs - 1) * 10).toBeLessThan(p.clients)
    }))
  })

  it('writes a timing script of evenly spaced sends from an offset, in groups when asked', () => {
    expect(timingScript('http://h/p', 4000, 3, 0.125)).toBe('0.125\thttp://h/p\n0.375\thttp://h/p\n0.625\thttp://h/p\n')
    const times = (t: string): number[] => t.trim().split('\n').map(l => Number(l.split('\t')[0]))
    expect(times(timingScript('u', 10_000, 12, 0, 5))).toEqual([0, 0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 1])
    // Groups keep the rate: request i goes out no later than its even time, and less than a group's span earlier.
    fc.assert(fc.property(fc.integer({ min: 100, max: 50_000 }), fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 200 }), (rate, g, n) => {
      times(timingScript('u', rate, n, 0, g)).forEach((t, i) => {
        expect(t).toBeLessThanOrEqual(i * 1000 / rate + 0.0005)
        expect(t).toBeGreaterThan(i * 1000 / rate - g * 1000 / rate - 0.0005)
      })
    }))
  })
})

// What h2load 1.52 printed at the end of a real run against the sidecar.
const SUMMARY = `starting benchmark...
spawning thread #0: 1 total client(s). 2000 total requests
Application protocol: h2c
progress: 100% done

finished in 2.01s, 996.14 req/s, 234.97KB/s
requests: 2000 total, 2000 started, 1998 done, 1997 succeeded, 3 failed, 1 errored, 2 timeout
status codes: 1997 2xx, 4 3xx, 5 4xx, 6 5xx
traffic: 471.76KB (483081) total, 9.90KB (10136) headers (space savings 96.35%), 405.17KB (414890) data
                     min         max         mean         sd        +/- sd
time for request:      768us     18.93ms      2.98ms      2.48ms    89.00%
`

describe('h2load summary', () => {
  it('reads every count and the rate', () => {
    expect(parseH2loadSummary(SUMMARY)).toEqual({ finishedS: 2.01, reqPerSec: 996.14, total: 2000, started: 2000, done: 1998, succeeded: 1997, failed: 3, errored: 1, timeout: 2, status2xx: 1997, status3xx: 4, status4xx: 5, status5xx: 6 })
    expect(parseH2loadSummary(SUMMARY.replace('2.01s', '850.5ms')).finishedS).toBe(0.8505)
  })

  it('fails on an output cut before the summary', () => {
    expect(() => parseH2loadSummary(SUMMARY.slice(0, SUMMARY.indexOf('status codes')))).toThrow(/no complete summary/)
  })
})

describe('h2load log file', () => {
  it('reads rows of several files, counting failed streams and non-2xx', () => {
    const log = parseH2loadLog(['100\t200\t50\n130\t-1\t7\n', '110\t503\t20\n120\t204\t9\textra\n'])
    expect(Array.from(log.startUs)).toEqual([100, 130, 110, 120])
    expect(Array.from(log.latencyUs)).toEqual([50, 7, 20, 9])
    expect(log.non2xx).toBe(2)
  })

  it('refuses an unreadable row', () => {
    expect(() => parseH2loadLog(['100\t200\n'])).toThrow(/unreadable row/)
    expect(() => parseH2loadLog(['100\tok\t5\n'])).toThrow(/unreadable row/)
  })

  // Rows as h2load writes them: ordered by end, not by start.
  const rows = fc.array(fc.record({ start: fc.integer({ min: 0, max: 100_000 }), lat: fc.integer({ min: 1, max: 20_000 }) }), { minLength: 1, maxLength: 300 })
    .map(rs => rs.sort((x, y) => (x.start + x.lat) - (y.start + y.lat)))
  const text = (rs: Array<{ start: number, lat: number }>): string => rs.map(r => `${1_700_000_000_000_000 + r.start}\t200\t${r.lat}\n`).join('')
  const nearestRank = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil(p * xs.length) - 1)]

  it('computes nearest-rank percentiles, max and the in-flight peak as a brute force does', () => {
    fc.assert(fc.property(rows, rs => {
      const l = latencyOf(parseH2loadLog([text(rs)]))
      const ms = rs.map(r => r.lat / 1000)
      const round = (x: number): number => Math.round(x * 1000) / 1000
      expect(l.count).toBe(rs.length)
      expect(l.p50Ms).toBe(round(nearestRank(ms, 0.5)))
      expect(l.p99Ms).toBe(round(nearestRank(ms, 0.99)))
      expect(l.p999Ms).toBe(round(nearestRank(ms, 0.999)))
      expect(l.maxMs).toBe(round(Math.max(...ms)))
      // In flight at a start: requests started no later that have not ended by then (the one starting included).
      let peak = 0
      for (const r of rs) peak = Math.max(peak, rs.filter(o => o.start <= r.start && o.start + o.lat > r.start).length)
      expect(l.maxInFlight).toBe(peak)
      const span = Math.max(...rs.map(r => r.start + r.lat)) - Math.min(...rs.map(r => r.start))
      expect(l.achievedPerSec).toBe(Math.round(rs.length / (span / 1e6)))
      expect(l.slowCalls).toBe(rs.filter(r => r.lat > 5000).length)
      const t0 = Math.min(...rs.map(r => r.start))
      const perMs = rs.map(r => rs.filter(o => Math.floor((o.start - t0) / 1000) === Math.floor((r.start - t0) / 1000)).length)
      expect(l.maxStartsPerMs).toBe(Math.max(...perMs))
    }), { numRuns: 300 })
  })

  it('finds starts held back from an even schedule and charges the lag to the scheduled latency', () => {
    // 1,000/s: a start every 1,000 us, each answered in 100 us.
    const even = Array.from({ length: 100 }, (_, k) => ({ start: k * 1000, lat: 100 }))
    const onTime = latencyOf(parseH2loadLog([text(even)]), 1000)
    expect(onTime.startLagMaxMs).toBe(0)
    expect(onTime.scheduledP99Ms).toBe(0.1)
    expect(onTime.maxInFlight).toBe(1)
    // Starts 50-59 held back to 60,000 us (a stalled connection) beside the one due then, all answered in 100 us.
    const held = even.map((r, k) => (k >= 50 && k < 60 ? { start: 60_000, lat: 100 } : r))
    const late = latencyOf(parseH2loadLog([text(held)]), 1000)
    expect(late.startLagMaxMs).toBe(10)
    expect(late.p99Ms).toBe(0.1)
    expect(late.scheduledP99Ms).toBe(9.1)
    expect(late.maxInFlight).toBe(11)
  })

  it('refuses an empty log', () => {
    expect(() => latencyOf(parseH2loadLog(['']))).toThrow(/no rows/)
  })
})

describe('sidecar decision counters', () => {
  const metrics = `# HELP meshlimit_decisions_total Admission decisions
# TYPE meshlimit_decisions_total counter
meshlimit_decisions_total{api="grpc",result="allowed"} 293
meshlimit_decisions_total{api="grpc",result="denied"} 1707
meshlimit_decisions_total{api="grpc",result="blocked"} 2
meshlimit_decisions_total{api="http",result="allowed"} 397
meshlimit_denied_total{policy="per-user"} 6110
`
  it('sums the results of one API only', () => {
    expect(decisionsOf(metrics, 'grpc')).toBe(2002)
    expect(decisionsOf(metrics, 'http')).toBe(397)
  })

  it('fails when the API has no series', () => {
    expect(() => decisionsOf(metrics, 'admin')).toThrow(/no meshlimit_decisions_total/)
  })
})
