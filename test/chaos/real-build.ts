import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import ts from 'typescript'

const ROOT = join(import.meta.dirname, '..', '..')
const TREES = ['src', 'crdt', 'gossip', 'membership', 'chaos']

function sources (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap(e => {
    const p = join(dir, e.name)
    if (e.isDirectory()) return sources(p)
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : []
  })
}

/**
 * Real-mode node processes are plain Node.js programs, and tests run from the
 * TypeScript sources: transpile the source trees (no type check; `npm test` type-checks)
 * into a temporary folder whose node_modules is the project's. Takes a second or two.
 */
export function buildChild (): { childModule: string, remove: () => void } {
  const out = mkdtempSync(join(tmpdir(), 'meshlimit-real-build-'))
  writeFileSync(join(out, 'package.json'), '{ "type": "module" }\n')
  symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'), 'dir')
  for (const file of TREES.flatMap(t => sources(join(ROOT, t)))) {
    const js = ts.transpileModule(readFileSync(file, 'utf8'), {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true }
    }).outputText
    const target = join(out, relative(ROOT, file)).replace(/\.ts$/, '.js')
    mkdirSync(dirname(target), { recursive: true })
    writeFileSync(target, js)
  }
  return { childModule: join(out, 'chaos', 'real', 'child.js'), remove: () => { rmSync(out, { recursive: true, force: true }) } }
}
