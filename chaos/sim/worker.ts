/**
 * A worker thread of a parallel run (chaos/sim/parallel.ts): validates the scenario
 * again from its plain input, runs its units in a Host and answers the coordinator's
 * window and finish messages.
 */
import '../../src/polyfill.js'
import { parentPort, workerData } from 'node:worker_threads'
import { validateScenario } from '../scenario.js'
import type { Envelope } from './exchange.js'
import { Host } from './host.js'

export interface WorkerInit {
  input: unknown
  name: string
  seed?: number
  durationMs?: number
  units: number[]
}

export type ToWorker =
  | { t: 'step', target: number, inboxes: Envelope[][], notes: number[][] }
  | { t: 'finish' }

const init = workerData as WorkerInit
const port = parentPort
if (port === null) throw new Error('chaos/sim/worker.js runs as a worker thread of a parallel run')
const host = new Host(validateScenario(init.input, init.name), { seed: init.seed, durationMs: init.durationMs }, init.units)
port.on('message', (m: ToWorker) => {
  if (m.t === 'step') {
    host.step(m.target, m.inboxes, m.notes).then(out => { port.postMessage({ t: 'out', out }) }, (err: unknown) => { throw err })
  } else port.postMessage({ t: 'facts', facts: host.finish() })
})
