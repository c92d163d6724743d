// npm install's first screen: npm's engine warnings (about the Node that runs npm) are replaced by
// scripts/check-engines.js, which checks every locked package against the Node the project runs on.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = new URL('../../', import.meta.url)
const SCRIPT = fileURLToPath(new URL('scripts/check-engines.js', root))

/** Runs the check on a lockfile holding `packages`, on this (the project's) Node. */
function checkWith(packages: Record<string, { engines?: { node: string }; optional?: boolean }>): string {
  const lock = join(mkdtempSync(join(tmpdir(), 'check-engines-')), 'package-lock.json')
  writeFileSync(lock, JSON.stringify({ lockfileVersion: 3, packages: { '': { engines: { node: '>=99' } }, ...packages } }))
  return execFileSync(process.execPath, [SCRIPT, lock], { encoding: 'utf8' })
}

describe('the engines check after npm install', () => {
  it('runs after every install, in place of npm’s warnings about the Node that runs npm', () => {
    const scripts = (JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> }).scripts
    assert.equal(scripts.postinstall, 'node scripts/check-engines.js')
    assert.match(readFileSync(new URL('.npmrc', root), 'utf8'), /^loglevel=error$/m)
  })

  it('says in one line that every locked package supports the project’s Node', () => {
    const output = checkWith({ 'node_modules/a': { engines: { node: '>=20' } }, 'node_modules/b': { engines: { node: '^18.19.0 || >=20.6.0' } }, 'node_modules/c': {} })
    assert.equal(output, `check-engines: the 2 packages that name a Node version all support Node ${process.versions.node}, the Node the project runs on\n`)
  })

  it('names each package that does not support it (a real problem is not hidden), and still exits 0', () => {
    const output = checkWith({
      'node_modules/fine': { engines: { node: '>=20' } },
      'node_modules/@scope/future': { engines: { node: '>=99.0.0' } },
      'node_modules/x/node_modules/old': { engines: { node: '<=18' } },
      'node_modules/skipped': { engines: { node: '>=99' }, optional: true },
    })
    assert.match(output, /2 package\(s\) do not support Node/)
    assert.match(output, /^ {2}@scope\/future wants Node >=99\.0\.0$/m)
    assert.match(output, /^ {2}old wants Node <=18$/m)
    assert.doesNotMatch(output, /skipped|fine/, 'optional packages are npm’s to skip; supported ones are not listed')
  })

  it('finds every package of the real lockfile supported by the project’s Node', () => {
    assert.match(execFileSync(process.execPath, [SCRIPT], { encoding: 'utf8' }), /all support Node 24\./)
  })
})
