// A product instance whose PostgreSQL goes away: readiness says so, requests get 503, nothing
// crashes, and everything recovers when the database is back.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { startTcpProxy } from '../helpers/tcp-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

describe('database outage', () => {
  let database: TestDatabase
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>
  let registry: RunningProcess
  let product: RunningProcess

  before(async () => {
    database = await createTestDatabase()
    proxy = await startTcpProxy(5432)
    const url = new URL(database.url)
    url.port = String(proxy.port)
    registry = await startRole('registry')
    product = await startRole('product', { env: { REGISTRY_URL: registry.url, DATABASE_URL: url.toString() } })
  })

  after(async () => {
    await product?.stop()
    await registry?.stop()
    await proxy?.close()
    await database?.drop()
  })

  it('reports not ready and answers 503 while the database is unreachable, then recovers', async () => {
    await waitFor(async () => (await http('GET', `${product.url}/health/ready`)).status === 200, { what: 'ready' })
    const created = await http('POST', `${product.url}/products`, { name: 'Kept', price: 3 })
    assert.equal(created.status, 201)

    await proxy.cut()
    const notReady = await waitFor(
      async () => {
        const response = await http('GET', `${product.url}/health/ready`)
        return response.status === 503 && response
      },
      { what: 'readiness to fail' },
    )
    assert.equal(notReady.body.status, 'not_ready')
    assert.notEqual(notReady.body.checks.database, 'ok')
    assert.equal(notReady.body.checks.registry, 'ok')
    const failed = await http('GET', `${product.url}/products/${created.body.id}`)
    assert.equal(failed.status, 503)
    assert.equal(failed.body.code, 'DATABASE_UNAVAILABLE')
    assert.equal((await http('GET', `${product.url}/health/live`)).status, 200, 'still alive')

    await proxy.restore()
    await waitFor(async () => (await http('GET', `${product.url}/health/ready`)).status === 200, { what: 'ready again' })
    const back = await http('GET', `${product.url}/products/${created.body.id}`)
    assert.equal(back.status, 200)
    assert.equal(back.body.name, 'Kept')
    assert.equal(product.child.exitCode, null)
  })
})
