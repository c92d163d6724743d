// Graceful shutdown of a service instance on SIGTERM: it leaves discovery at once (not after the
// TTL), finishes what it is doing, and exits 0.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import type { RunningProcess } from '../helpers/process.ts'
import { connectionRefused, rawConnect } from '../helpers/raw-http.ts'
import { discover, startRoles, startTracked, stopAll, tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const TTL_SECONDS = 3
const HEARTBEAT_SECONDS = 0.3
const SHUTDOWN_TIMEOUT_SECONDS = 8
// After deregistering, an instance keeps serving this long for callers with a stale view.
const DRAIN_SECONDS = 0.5
// Generous for a drain that has nothing left to wait for, well below the shutdown deadline.
const EXIT_WITHIN_MS = 3000

describe('graceful shutdown of a product instance', () => {
  const dataDir = tempDir('shutdown')
  const started: RunningProcess[] = []
  let registry: RunningProcess | undefined
  let stayer: RunningProcess | undefined
  let leaver: RunningProcess | undefined
  let drainer: RunningProcess | undefined
  let keeper: RunningProcess | undefined

  before(async () => {
    registry = await startTracked(started, 'registry', { env: { REGISTRY_TTL_SECONDS: String(TTL_SECONDS) } })
    const env = {
      REGISTRY_URL: registry.url,
      DATA_DIR: dataDir.path,
      HEARTBEAT_INTERVAL_SECONDS: String(HEARTBEAT_SECONDS),
      SHUTDOWN_TIMEOUT_SECONDS: String(SHUTDOWN_TIMEOUT_SECONDS),
      DRAIN_SECONDS: String(DRAIN_SECONDS),
    }
    ;[stayer, leaver, drainer, keeper] = await startRoles(started, ['product', { env }], ['product', { env }], ['product', { env }], ['product', { env }])
    const registryUrl = registry.url
    await waitFor(async () => (await discover(registryUrl, 'product')).length === 4, { what: 'four product instances in discovery' })
  })

  after(async () => {
    await stopAll(started)
    dataDir.remove()
  })

  it('leaves discovery before it exits, exits 0 and logs its deregistration', async () => {
    assert.ok(registry && leaver && stayer)
    const signalledAt = Date.now()
    leaver.child.kill('SIGTERM')
    // It leaves discovery first and only then stops serving: gone while the process still runs.
    const registryUrl = registry.url
    const leaverUrl = leaver.url
    const goneWhileRunning = await waitFor(
      async () => ((await discover(registryUrl, 'product')).some((i) => i.url === leaverUrl) ? undefined : { running: leaver!.child.exitCode === null }),
      { intervalMs: 10, what: 'the stopping instance to leave discovery' },
    )
    assert.equal(goneWhileRunning.running, true, 'out of discovery before the process exits')
    const exit = await leaver.exited
    // Ask the registry straight after the exit: the instance must already be gone.
    const instances = await discover(registry.url, 'product')
    const checkedAfterMs = Date.now() - signalledAt
    const urls = instances.map((instance) => instance.url)
    assert.ok(!urls.includes(leaver.url), 'the stopped instance is no longer discovered')
    assert.ok(urls.includes(stayer.url), 'the other instances still are')
    // Its last heartbeat was at most one interval before the signal, so the TTL alone could not
    // have removed it this early: the instance deregistered itself.
    assert.ok(checkedAfterMs < (TTL_SECONDS - HEARTBEAT_SECONDS * 1.1) * 1000 - 200, `checked ${checkedAfterMs} ms after SIGTERM, before any TTL expiry`)

    assert.deepEqual(exit, { code: 0, signal: null })
    // (The last lines of output may be read a moment after the exit: wait for them briefly.)
    const own = await leaver.waitForLog((line) => line.event === 'deregistered', 2000)
    assert.equal(own.found, true)
    await registry.waitForLog((line) => line.event === 'deregistered' && line.url === leaverUrl, 2000)
    assert.ok(!registry.logs.some((line) => line.event === 'evicted' && line.url === leaverUrl), 'it was not left to expire')
  })

  /**
   * Sends the head of a POST /products with `Expect: 100-continue` and waits for the 100: the
   * server has read the request, so it is in flight, and its body is held back by us. Then sends
   * SIGTERM and waits until the instance has deregistered and refuses new connections.
   */
  async function holdRequestAcrossSigterm(instance: RunningProcess, body: string, extraHeaders = '') {
    const connection = await rawConnect(instance.port)
    await connection.write(
      `POST /products HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extraHeaders}Expect: 100-continue\r\n\r\n`,
    )
    const [interim] = await connection.responses(1)
    assert.equal(interim?.status, 100)
    instance.child.kill('SIGTERM')
    await instance.waitForLog((line) => line.event === 'deregistered')
    const port = instance.port
    await waitFor(() => connectionRefused(port), { what: 'the draining instance to refuse new connections' })
    assert.equal(instance.child.exitCode, null, 'the instance waits for the request in flight')
    assert.ok(!(await discover(registry!.url, 'product')).some((i) => i.url === instance.url), 'and is out of discovery meanwhile')
    return connection
  }

  /** The exit, or undefined if the process is still running after `ms`. */
  const exitWithin = (instance: RunningProcess, ms: number) =>
    Promise.race([instance.exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms).unref())])

  it('finishes a request that is in flight when SIGTERM arrives, then exits 0', async () => {
    assert.ok(drainer && stayer)
    const body = JSON.stringify({ name: 'Drained', price: 1.25 })
    const connection = await holdRequestAcrossSigterm(drainer, body, 'Connection: close\r\n')
    await connection.write(body)
    const [, answer] = await connection.responses(2)
    assert.equal(answer?.status, 201)
    const created = JSON.parse(answer.body)
    assert.equal(created.name, 'Drained')
    assert.equal(created.price, 1.25)

    assert.deepEqual(await exitWithin(drainer, EXIT_WITHIN_MS), { code: 0, signal: null })
    // The write was committed before the database was closed: another replica reads it.
    const fetched = await http('GET', `${stayer.url}/products/${created.id}`)
    assert.equal(fetched.status, 200)
    assert.deepEqual(fetched.body, created)
    connection.socket.destroy()
  })

  it('exits promptly when the client of the in-flight request keeps its connection alive', async () => {
    // HTTP/1.1 connections are persistent unless a side says otherwise, and pooling clients
    // (undici, the order service's own client, browsers) keep them open after the answer. The
    // draining instance must close the connection once the request is answered, not wait for
    // the client (or its own shutdown deadline, which ends in exit 1).
    assert.ok(keeper)
    const body = JSON.stringify({ name: 'Kept', price: 2 })
    const connection = await holdRequestAcrossSigterm(keeper, body)
    await connection.write(body)
    const [, answer] = await connection.responses(2)
    assert.equal(answer?.status, 201)
    const exit = await exitWithin(keeper, EXIT_WITHIN_MS)
    connection.socket.destroy()
    assert.deepEqual(exit, { code: 0, signal: null }, `exits 0 within ${EXIT_WITHIN_MS} ms of answering (shutdown deadline ${SHUTDOWN_TIMEOUT_SECONDS} s)`)
  })

  it('answers a request reusing the kept-alive connection during the drain with a problem code, or closes it first', async () => {
    // A pooling client reuses the connection after its answer. The draining instance either
    // marked that answer `Connection: close` (so the client opens a new connection elsewhere), or
    // answers the reused connection with an error a client can act on: a 503 problem with a
    // stable `code`, like every other error of this API.
    assert.ok(stayer)
    const body = JSON.stringify({ name: 'Last', price: 3 })
    const connection = await holdRequestAcrossSigterm(stayer, body)
    await connection.write(body)
    const [, first] = await connection.responses(2)
    assert.equal(first?.status, 201)
    if (first.headers.connection?.toLowerCase() !== 'close') {
      await connection.write('GET /products HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n')
      const [, , reused] = await connection.responses(3)
      assert.equal(reused?.status, 503)
      assert.equal(typeof JSON.parse(reused.body).code, 'string', 'the 503 carries a problem code')
    }
    const exit = await exitWithin(stayer, EXIT_WITHIN_MS)
    connection.socket.destroy()
    assert.deepEqual(exit, { code: 0, signal: null })
  })
})
