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

  it('a database that goes silent on open connections costs a 503 within the query timeout, then new connections serve', async () => {
    // Its own product instance and proxy, with a 1 s query timeout.
    const silentProxy = await startTcpProxy(5432)
    const url = new URL(database.url)
    url.port = String(silentProxy.port)
    const silent = await startRole('product', { env: { REGISTRY_URL: registry.url, DATABASE_URL: url.toString(), DATABASE_QUERY_TIMEOUT_SECONDS: '1' } })
    try {
      await waitFor(async () => (await http('GET', `${silent.url}/health/ready`)).status === 200, { what: 'ready' })
      const created = await http('POST', `${silent.url}/products`, { name: 'Through silence', price: 4 })
      assert.equal(created.status, 201)
      // Every open connection now goes unanswered, as a lost database host leaves them; new
      // connections go through (the database is back, or failed over).
      silentProxy.silenceOpen()
      const answers: number[] = []
      await waitFor(
        async () => {
          const started = Date.now()
          const answer = await http('GET', `${silent.url}/products/${created.body.id}`)
          const took = Date.now() - started
          assert.ok(took < 4000, `answered in ${took} ms, not held until TCP gives up`)
          assert.ok(answer.status === 200 || (answer.status === 503 && answer.body.code === 'DATABASE_UNAVAILABLE'), `${answer.status} ${answer.text}`)
          answers.push(answer.status)
          return answers.length >= 2 && answers.at(-1) === 200 && answers.at(-2) === 200
        },
        { timeoutMs: 20_000, intervalMs: 50, what: 'two answers in a row from new connections' },
      )
      // The first request got an open connection (the pool hands out the one released last) and
      // timed out; each stuck connection was dropped, not handed out again.
      assert.equal(answers[0], 503, `answers: ${answers.join(' ')}`)
      assert.ok(answers.filter((status) => status === 503).length <= 10, `no more 503s than the pool has connections: ${answers.join(' ')}`)
      assert.equal(answers.at(-1), 200)
      assert.ok(
        silent.logs.some((line) => line.event === 'database_connection_lost'),
        'the dropped connection is logged',
      )
      assert.equal(silent.child.exitCode, null)
    } finally {
      await silent.stop()
      await silentProxy.close()
    }
  })
})
