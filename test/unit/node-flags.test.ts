// How the roles' Node processes are started for their footprint: the V8 flags every way of running
// them passes (npm start, the supervisor's children, the container image), and the compile cache
// the supervisor gives children that run the TypeScript sources.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import { childV8Flags, compileCacheEnv, V8_FLAGS } from '../../src/runtime/node-flags.ts'

const root = new URL('../../', import.meta.url)

describe('V8 flags of the roles', () => {
  it('are passed by npm start and by the container image alike', () => {
    const scripts = (JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> }).scripts
    const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8')
    for (const flag of V8_FLAGS) {
      assert.ok(scripts.start?.includes(flag), `npm start passes ${flag}`)
      assert.match(dockerfile, new RegExp(`^ENV NODE_OPTIONS=.*${flag}`, 'm'), `the image passes ${flag}`)
    }
  })

  it('reach the supervisor’s children as given to the supervisor, else as the defaults', () => {
    assert.deepEqual(childV8Flags(undefined, []), V8_FLAGS)
    assert.deepEqual(childV8Flags('', ['--max-semi-space-size=4']), ['--max-semi-space-size=4'])
    assert.deepEqual(childV8Flags(undefined, ['--max_semi_space_size=8']), ['--max_semi_space_size=8'], 'V8 takes underscores too')
    assert.deepEqual(childV8Flags(undefined, ['--max-semi-space-size', '2']), ['--max-semi-space-size', '2'], 'a value as the next argument')
  })

  it('are left to NODE_OPTIONS when it sets them: the child reads it from its environment', () => {
    assert.deepEqual(childV8Flags('--max-semi-space-size=16 --enable-source-maps', ['--max-semi-space-size=1']), [])
    assert.deepEqual(childV8Flags('--enable-source-maps', []), V8_FLAGS)
  })
})

describe('compile cache of the supervisor’s children', () => {
  it('is in the project’s node_modules/.cache for children that run the sources, not in the shared temporary directory', () => {
    assert.deepEqual(compileCacheEnv({}, true, '/srv/app'), { NODE_COMPILE_CACHE: join('/srv/app', 'node_modules', '.cache', 'node-compile-cache') })
  })

  it('is not set for the build, nor over the user’s own choice', () => {
    assert.deepEqual(compileCacheEnv({}, false, '/srv/app'), {}, 'compiled JavaScript has no types to strip')
    assert.deepEqual(compileCacheEnv({ NODE_COMPILE_CACHE: '/elsewhere' }, true, '/srv/app'), {}, 'the child inherits the user’s directory')
    assert.deepEqual(compileCacheEnv({ NODE_DISABLE_COMPILE_CACHE: '1' }, true, '/srv/app'), {})
  })
})

describe('npm start', () => {
  it('runs the sources through bin/start.js, with the project’s compile cache on in its own process', () => {
    const scripts = (JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> }).scripts
    assert.match(scripts.start ?? '', / bin\/start\.js$/)
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_DEBUG_NATIVE: 'COMPILE_CACHE' }
    delete env.NODE_COMPILE_CACHE
    delete env.NODE_DISABLE_COMPILE_CACHE
    const run = spawnSync(process.execPath, [fileURLToPath(new URL('bin/start.js', root)), '--help'], { env, encoding: 'utf8' })
    assert.equal(run.status, 0, run.stderr)
    assert.match(run.stdout, /registry/, 'the CLI ran')
    const cache = join(fileURLToPath(root), 'node_modules', '.cache', 'node-compile-cache')
    assert.ok(run.stderr.includes(`[compile cache] resolved path ${cache}`), `the cache is the project's: ${run.stderr.split('\n')[0]}`)
    assert.match(run.stderr, /for StrippedTypeScript file:\/\/.*\/src\/cli\.ts/, 'the TypeScript sources go through it')
  })
})
