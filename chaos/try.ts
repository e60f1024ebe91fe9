import { readFileSync } from 'node:fs'
import { parseScenario } from './scenario.js'
import { runScenario } from './sim/run.js'
const s = parseScenario(readFileSync(process.argv[2], 'utf8'))
const t0 = Date.now()
const r = await runScenario(s, { durationMs: process.argv[3] ? Number(process.argv[3]) : undefined })
console.log(JSON.stringify(r.summary, null, 1))
console.error('wall ms', Date.now() - t0)
