import { parse as parseYaml } from 'yaml'
import { ErrorCode, MeshlimitError } from '../errors.js'
import { looksLikeBundle } from './bundle.js'
import { envoyToPolicies, isEnvoyConfig, parseEnvoyYaml, type EnvoyConvertInit } from './envoy.js'
import type { PolicyDocument } from './types.js'
import { validatePolicies } from './validate.js'

/** What a policy file holds, recognised by its content. */
export type LoadedPolicy =
  | { kind: 'bundle', bytes: Uint8Array }
  | { kind: 'document', format: 'meshlimit' | 'envoy', document: PolicyDocument, warnings: string[] }

const utf8 = new TextEncoder()

/**
 * Reads policy text: a signed bundle (JSON naming the bundle format), an
 * envoyproxy/ratelimit configuration (YAML with `domain`), or a meshlimit policy
 * document (YAML or JSON). Documents are validated; bundles are checked when offered.
 */
export function readPolicyText (text: string, source = 'policy file', envoy: EnvoyConvertInit = {}): LoadedPolicy {
  if (looksLikeBundle(text)) return { kind: 'bundle', bytes: utf8.encode(text) }
  let doc: unknown
  try {
    doc = parseYaml(text, { prettyErrors: true, uniqueKeys: true, maxAliasCount: 100 })
  } catch (err) {
    const detail = err instanceof Error ? err.message.split('\n')[0] : String(err)
    // Several YAML documents in one file: Envoy domains (a meshlimit document is one).
    if (/multiple documents/i.test(detail)) {
      const docs = parseEnvoyYaml(text, source)
      if (isEnvoyConfig(docs)) {
        const { document, warnings } = envoyToPolicies(docs, envoy)
        return { kind: 'document', format: 'envoy', document, warnings }
      }
    }
    throw new MeshlimitError(ErrorCode.POLICY_PARSE, `${source} is not valid YAML or JSON: ${detail}. Fix: correct the syntax at the position shown`, 'document')
  }
  if (isEnvoyConfig(doc)) {
    // Envoy's reader is YAML 1.1 and reads several domains per file: parse again its way.
    const { document, warnings } = envoyToPolicies(parseEnvoyYaml(text, source), envoy)
    return { kind: 'document', format: 'envoy', document, warnings }
  }
  const document = (Array.isArray(doc) ? { policies: doc } : doc) as PolicyDocument
  validatePolicies(document)
  return { kind: 'document', format: 'meshlimit', document, warnings: [] }
}
