// The layer rules (biome.json, run by `npm test`) are executable: in a scratch tree with the same
// folders and the project's own configuration, each forbidden edge and each cycle is reported,
// and the edges the layers allow are not.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import { tempDir } from '../helpers/system.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const BIOME = join(ROOT, 'node_modules', '.bin', 'biome')

/** Lints a tree of `{ path: source }` with the project's biome.json; returns the rules that fired per file. */
function lint(files: Record<string, string>): Map<string, string[]> {
  const dir = tempDir('layers')
  try {
    copyFileSync(join(ROOT, 'biome.json'), join(dir.path, 'biome.json'))
    for (const [path, source] of Object.entries(files)) {
      mkdirSync(dirname(join(dir.path, path)), { recursive: true })
      writeFileSync(join(dir.path, path), source)
    }
    const result = spawnSync(BIOME, ['lint', '--vcs-enabled=false', '--reporter=json', '--max-diagnostics=none', 'src'], { cwd: dir.path, encoding: 'utf8' })
    const report = JSON.parse(result.stdout) as { diagnostics: Array<{ category: string; location: { path: string } }> }
    const fired = new Map<string, string[]>()
    for (const diagnostic of report.diagnostics) {
      const file = diagnostic.location.path
      fired.set(file, [...(fired.get(file) ?? []), diagnostic.category])
    }
    return fired
  } finally {
    dir.remove()
  }
}

const importing = (specifier: string) => `import { value } from '${specifier}'\nexport const used = value\n`
const exporting = 'export const value = 1\n'

describe('layer rules', () => {
  it('report an import that points up, sideways between services, or round in a cycle', () => {
    const forbidden: Record<string, string> = {
      'src/discovery/client.ts': '../http/app.ts', // the client library on the app platform
      'src/discovery/other.ts': '../registry/store.ts', // the client on the server
      'src/http/app.ts': '../db/errors.ts', // the platform on a database
      'src/http/health.ts': '../services/product/routes.ts', // the platform on a service
      'src/services/order/routes.ts': '../product/routes.ts', // a service on another
      'src/gateway/routes.ts': '../services/order/routes.ts',
      'src/runtime/service.ts': '../config/index.ts', // the runtime on the configuration
      'src/lib/backoff.ts': '../protocol/registry.ts',
    }
    const files: Record<string, string> = {
      'src/db/errors.ts': exporting,
      'src/registry/store.ts': exporting,
      'src/services/product/routes.ts': exporting,
      'src/services/order/other.ts': exporting,
      'src/config/index.ts': exporting,
      'src/protocol/registry.ts': exporting,
      'src/lib/a.ts': "import { b } from './b.ts'\nexport const a = b\n",
      'src/lib/b.ts': "import { a } from './a.ts'\nexport const b = () => a\n",
    }
    for (const [path, specifier] of Object.entries(forbidden)) files[path] = importing(specifier)
    const fired = lint(files)
    for (const path of Object.keys(forbidden)) {
      assert.ok(fired.get(path)?.includes('lint/style/noRestrictedImports'), `${path} -> ${forbidden[path]} is reported`)
    }
    assert.ok(fired.get('src/lib/a.ts')?.includes('lint/suspicious/noImportCycles'), 'the cycle is reported')
  })

  it('accept the edges the layers allow', () => {
    const allowed: Record<string, string> = {
      'src/services/order/routes.ts': '../../contracts/product.ts',
      'src/services/product/routes.ts': '../../runtime/service.ts',
      'src/gateway/routes.ts': '../runtime/upstream.ts',
      'src/registry/routes.ts': '../protocol/registry.ts',
      'src/runtime/upstream.ts': '../discovery/client.ts',
      'src/http/app.ts': '../lib/errors.ts',
      'src/discovery/client.ts': '../protocol/registry.ts',
      'src/config/index.ts': '../gateway/routing.ts',
    }
    const files: Record<string, string> = {
      'src/contracts/product.ts': exporting,
      'src/runtime/service.ts': exporting,
      'src/protocol/registry.ts': exporting,
      'src/lib/errors.ts': exporting,
      'src/gateway/routing.ts': exporting,
    }
    for (const [path, specifier] of Object.entries(allowed)) files[path] = importing(specifier)
    const fired = lint(files)
    assert.deepEqual(Object.fromEntries(fired), {})
  })
})
