/**
 * The Redis baseline of bench:sidecar: the same decision API (POST /v1/check with a
 * descriptor and a cost) answered by a token bucket in Redis, one Lua script per
 * decision, as a central-store rate limiter does it. Started by bench/sidecar.ts.
 *
 *   node dist/bench/redis-baseline.js REDIS_PORT
 *
 * Prints one JSON line {"http": url} on standard output when it listens.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Redis } from 'ioredis'

/** Token bucket: refill from the Redis clock, take `cost` when it fits; returns {allowed, tokens left}. */
const TOKEN_BUCKET = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(s[1]) or burst
local ts = tonumber(s[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return { allowed, math.floor(tokens) }
`

const RATE = 100
const BURST = 100

async function main (): Promise<void> {
  const port = Number(process.argv[2])
  const redis = new Redis({ host: '127.0.0.1', port, enableAutoPipelining: true })
  redis.defineCommand('tokenBucket', { numberOfKeys: 1, lua: TOKEN_BUCKET })
  const bucket = redis as unknown as { tokenBucket: (key: string, rate: number, burst: number, cost: number) => Promise<[number, number]> }
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      let user: string
      let cost: number
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { descriptor: { user: string }, cost?: number }
        user = body.descriptor.user
        cost = body.cost ?? 1
        if (typeof user !== 'string') throw new Error('descriptor.user must be a string')
      } catch (err) {
        res.statusCode = 400
        res.end(JSON.stringify({ detail: (err as Error).message }))
        return
      }
      bucket.tokenBucket(`tb:${user}`, RATE, BURST, cost).then(([allowed, left]) => {
        const text = JSON.stringify({ allowed: allowed === 1, status: allowed === 1 ? 200 : 429, remaining: left })
        res.setHeader('Content-Type', 'application/json')
        res.end(text)
      }, (err: Error) => {
        res.statusCode = 500
        res.end(JSON.stringify({ detail: err.message }))
      })
    })
  })
  server.keepAliveTimeout = 65_000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  process.stdout.write(JSON.stringify({ http: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }) + '\n')
  process.on('SIGTERM', () => {
    server.close()
    redis.disconnect()
    process.exit(0)
  })
}

main().catch((err: unknown) => {
  process.stderr.write(`redis-baseline: ${String(err)}\n`)
  process.exit(1)
})
