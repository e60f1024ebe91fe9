import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseScenario, type Scenario } from '../../chaos/scenario.js'

/** A shipped scenario by name. */
export function scenario (name: string): Scenario {
  return parseScenario(readFileSync(join(import.meta.dirname, '../../chaos/scenarios', `${name}.yaml`), 'utf8'))
}
