// What each role loads when it starts: real processes, each run with an import hook that writes
// every module it loaded when it exits (test/helpers/record-modules.ts). A role must not carry
// what it does not use: the registry no SQL driver or query builder, no role the Swagger UI
// package (loaded by the first request for /docs) or pino-pretty (in JSON log mode). The hook is
// the test's own (NODE_OPTIONS): the roles expose nothing of it.
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import { startRole } from '../helpers/process.ts'
import { waitFor } from '../helpers/wait.ts'

const RECORDER = fileURLToPath(new URL('../helpers/record-modules.ts', import.meta.url))
const work = mkdtempSync(join(tmpdir(), 'msa-lazy-'))
let runs = 0

/** The packages (under node_modules) a process loaded, from the recorder's list. */
function packagesIn(file: string): Set<string> {
  const packages = new Set<string>()
  for (const url of readFileSync(file, 'utf8').split('\n')) {
    const name = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1]
    if (name) packages.add(name)
  }
  return packages
}

/** Starts `role` with the recorder, lets `use` exercise it, stops it, and returns what it loaded. */
async function loadedBy(role: string, env: Record<string, string>, use: (url: string) => Promise<void> = async () => {}): Promise<Set<string>> {
  const file = join(work, `modules-${role}-${++runs}.txt`)
  const pretty = env.LOG_FORMAT === 'pretty'
  const process = await startRole(role, {
    env: { NODE_OPTIONS: `--import ${RECORDER}`, RECORD_MODULES_FILE: file, DATA_DIR: join(work, `data-${runs}`), ...env },
    // Pretty lines are not JSON: wait for the line that says it listens instead.
    waitForListening: !pretty,
  })
  try {
    if (pretty) await waitFor(() => process.output.some((line) => line.includes('listening on')), { what: `${role} to listen` })
    else await use(process.url)
  } finally {
    const { code } = await process.stop()
    assert.equal(code, 0, `${role} stopped cleanly`)
  }
  return packagesIn(file)
}

const missing = (loaded: Set<string>, names: readonly string[]) => names.filter((name) => loaded.has(name))

describe('what a role loads at start', () => {
  after(() => rmSync(work, { recursive: true, force: true }))

  it('the registry in JSON log mode loads no SQL driver, query builder, Swagger UI or pretty-printer', async () => {
    const loaded = await loadedBy('registry', { LOG_FORMAT: 'json' })
    assert.ok(loaded.has('fastify') && loaded.has('pino'), 'the recorder saw what the registry does load')
    assert.deepEqual(missing(loaded, ['pg', 'kysely', '@fastify/swagger-ui', '@fastify/static', 'pino-pretty', 'etcd3', 'undici']), [])
  })

  it('loads Swagger UI with the first request for /docs, and serves the page', async () => {
    const loaded = await loadedBy('registry', { LOG_FORMAT: 'json' }, async (url) => {
      const page = await http('GET', `${url}/docs`)
      assert.equal(page.status, 200)
      assert.match(page.text, /swagger-ui/i)
      const missingAsset = await http('GET', `${url}/docs/static/no-such-file.js`)
      assert.equal(missingAsset.status, 404)
      assert.equal(missingAsset.body?.code, 'ROUTE_NOT_FOUND', 'an unknown asset is a problem like any unknown route')
      const forbidden = await http('GET', `${url}/docs/static//`)
      assert.ok(forbidden.status >= 400 && forbidden.status < 500, `a path the UI refuses is a 4xx (got ${forbidden.status})`)
      assert.match(forbidden.headers.get('content-type') ?? '', /^application\/problem\+json/, 'and a problem, as every error')
    })
    assert.ok(loaded.has('@fastify/swagger-ui'), 'the UI package was loaded once asked for')
  })

  it('loads pino-pretty only when the log format is pretty', async () => {
    const loaded = await loadedBy('registry', { LOG_FORMAT: 'pretty' })
    assert.ok(loaded.has('pino-pretty'))
  })

  it('the product service on SQLite loads no PostgreSQL driver; the gateway no database code, nor a JWT library with authentication off', async () => {
    const product = await loadedBy('product', { LOG_FORMAT: 'json', REGISTRY_URL: 'http://127.0.0.1:9' })
    assert.ok(product.has('kysely'), 'SQLite goes through the query builder')
    assert.deepEqual(missing(product, ['pg', 'pg-pool', '@fastify/swagger-ui', 'pino-pretty', 'etcd3']), [])
    const gateway = await loadedBy('gateway', { LOG_FORMAT: 'json', REGISTRY_URL: 'http://127.0.0.1:9' })
    assert.deepEqual(missing(gateway, ['pg', 'kysely', '@fastify/swagger-ui', 'pino-pretty', 'etcd3', 'jose']), [])
  })
})
