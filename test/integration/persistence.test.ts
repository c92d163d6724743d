// Products and orders outlive the processes that wrote them, on SQLite (DATA_DIR) and on
// PostgreSQL (DATABASE_URL); and replicas that start together on an empty database both come up
// (their migrations do not trip over each other) and share their data.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { after, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { discover, openFiles, startRoles, startTracked, stopAll, tempDir, type TempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const HEARTBEAT_SECONDS = 0.3
// Far below SQLite's busy timeout in the services (5 s), far above how long a failing open takes.
const HOLD_LOCK_MS = 500

describe('persistence across restarts and concurrent start-up', () => {
  const started: RunningProcess[] = []
  const dirs: TempDir[] = []
  const databases: TestDatabase[] = []

  after(async () => {
    await stopAll(started)
    for (const dir of dirs) dir.remove()
    await Promise.all(databases.map((db) => db.drop()))
  })

  const start = (role: string, env: Record<string, string>) => startTracked(started, role, { env })
  const startTogether = (...specs: Array<[role: string, env: Record<string, string>]>) =>
    startRoles(started, ...specs.map(([role, env]): [string, { env: Record<string, string> }] => [role, { env }]))

  /** A registry of its own for each scenario, so that no scenario discovers another's instances. */
  async function storage(kind: 'sqlite' | 'postgres'): Promise<Record<string, string>> {
    const registry = await start('registry', { REGISTRY_TTL_SECONDS: '3' })
    // A short drain: these tests stop instances gracefully several times.
    const common = { REGISTRY_URL: registry.url, HEARTBEAT_INTERVAL_SECONDS: String(HEARTBEAT_SECONDS), DRAIN_SECONDS: '0.2' }
    if (kind === 'postgres') {
      const database = await createTestDatabase('msa_persist')
      databases.push(database)
      // DATA_DIR points at an empty directory so that a fallback to SQLite would lose the data.
      const dir = tempDir('persist-unused')
      dirs.push(dir)
      return { ...common, DATABASE_URL: database.url, DATA_DIR: dir.path }
    }
    const dir = tempDir('persist')
    dirs.push(dir)
    return { ...common, DATA_DIR: dir.path }
  }

  async function stopGracefully(...procs: RunningProcess[]): Promise<void> {
    const exits = await Promise.all(procs.map((p) => p.stop('SIGTERM')))
    for (const [i, exit] of exits.entries()) assert.deepEqual(exit, { code: 0, signal: null }, `${procs[i]!.role} exits 0`)
  }

  async function survivesRestart(kind: 'sqlite' | 'postgres'): Promise<void> {
    const env = await storage(kind)
    const [product, order] = (await startTogether(['product', env], ['order', env])) as [RunningProcess, RunningProcess]
    const registryUrl = env.REGISTRY_URL!
    await waitFor(async () => (await discover(registryUrl, 'product')).some((i) => i.url === product.url), { what: 'the product instance in discovery' })
    const created = await http('POST', `${product.url}/products`, { name: 'Kettle', price: '24.90', description: 'Steel, 1.7 l' })
    assert.equal(created.status, 201)
    const placed = await http('POST', `${order.url}/orders`, { product_id: created.body.id, quantity: 3 })
    assert.equal(placed.status, 201)
    assert.equal(placed.body.total_price, 74.7)
    await stopGracefully(product, order)

    const [product2, order2] = (await startTogether(['product', env], ['order', env])) as [RunningProcess, RunningProcess]
    // Nothing was migrated again: the schema was already there.
    for (const p of [product2, order2]) {
      const ready = p.logs.find((line) => line.event === 'database_ready')
      assert.ok(ready, `${p.role} logged database_ready`)
      assert.equal(ready.dialect, kind)
      assert.deepEqual(ready.migrations_applied, [])
    }
    const product3 = await http('GET', `${product2.url}/products/${created.body.id}`)
    assert.equal(product3.status, 200)
    assert.deepEqual(product3.body, created.body)
    const order3 = await http('GET', `${order2.url}/orders/${placed.body.id}`)
    assert.equal(order3.status, 200)
    assert.deepEqual(order3.body, placed.body)
    const products = await http('GET', `${product2.url}/products`)
    assert.deepEqual(products.body.items, [created.body])
    const orders = await http('GET', `${order2.url}/orders`)
    assert.deepEqual(orders.body.items, [placed.body])

    // The restarted order service prices from the restarted product service.
    await waitFor(async () => (await discover(registryUrl, 'product')).some((i) => i.url === product2.url), { what: 'the new product instance in discovery' })
    const again = await http('POST', `${order2.url}/orders`, { product_id: created.body.id, quantity: 2 })
    assert.equal(again.status, 201)
    assert.equal(again.body.total_price, 49.8)
    await stopGracefully(product2, order2)
  }

  async function replicasStartTogether(kind: 'sqlite' | 'postgres'): Promise<void> {
    const env = await storage(kind)
    const [a, b] = (await startTogether(['product', env], ['product', env])) as [RunningProcess, RunningProcess]
    for (const p of [a, b]) {
      // Ready means: database usable and registered with the registry (which follows `listening`).
      await waitFor(async () => (await http('GET', `${p.url}/health/ready`)).status === 200, { what: 'each replica to be ready' })
      assert.ok(!p.logs.some((line) => line.event === 'database_unavailable'), 'no replica had to retry its start-up')
    }
    // The schema was created exactly once between them.
    const applied = [a, b].flatMap((p) => (p.logs.find((line) => line.event === 'database_ready')?.migrations_applied as string[] | undefined) ?? ['<none>'])
    assert.deepEqual(applied, ['0001_products'])

    const fromA = await http('POST', `${a.url}/products`, { name: 'From A', price: 1 })
    const fromB = await http('POST', `${b.url}/products`, { name: 'From B', price: 2 })
    assert.equal(fromA.status, 201)
    assert.equal(fromB.status, 201)
    assert.deepEqual((await http('GET', `${b.url}/products/${fromA.body.id}`)).body, fromA.body)
    assert.deepEqual((await http('GET', `${a.url}/products/${fromB.body.id}`)).body, fromB.body)
    for (const p of [a, b]) {
      const listed = await http('GET', `${p.url}/products`)
      assert.deepEqual(listed.body.items.map((item: { id: string }) => item.id).sort(), [fromA.body.id, fromB.body.id].sort())
    }
    await stopGracefully(a, b)
  }

  it('brings up a replica that opens the new SQLite database while another process holds its write lock', async () => {
    // Replicas starting together on an empty DATA_DIR race to create product.db and switch it to
    // WAL; the loser must wait for the lock (the busy timeout is 5 s), not give up. The race is
    // made deterministic here: this process creates the file and holds its write lock, as the
    // other replica does for a moment while it sets the database up, until the replica has
    // opened the file and a while longer, then lets go.
    const env = await storage('sqlite')
    const path = join(env.DATA_DIR!, 'product.db')
    const holder = new DatabaseSync(path)
    holder.exec('BEGIN IMMEDIATE')
    let held = true
    const release = () => {
      if (!held) return
      held = false
      holder.exec('COMMIT')
      holder.close()
    }
    try {
      const replica = await startRole('product', { env, waitForListening: false })
      started.push(replica)
      const pid = replica.child.pid!
      const failed = () => (replica.child.exitCode !== null ? `the replica exited with ${replica.child.exitCode}:\n${replica.output.join('\n')}` : undefined)
      await waitFor(() => failed() !== undefined || openFiles(pid).includes(path), { what: 'the replica to open product.db' })
      // A replica that does not wait for the lock fails within milliseconds of opening the file.
      const early = await waitFor(failed, { timeoutMs: HOLD_LOCK_MS, intervalMs: 10 }).catch(() => undefined)
      assert.equal(early, undefined, 'the replica waits for the lock instead of exiting')
      release()
      const listening = await waitFor(() => failed() === undefined && replica.logs.find((line) => line.event === 'listening'), {
        timeoutMs: 20_000,
        what: 'the replica to come up once the lock is released',
      }).catch((error: unknown) => {
        throw new Error(failed() ?? String(error))
      })
      const created = await http('POST', `http://127.0.0.1:${listening.port}/products`, { name: 'Late', price: 1 })
      assert.equal(created.status, 201)
      await stopGracefully(replica)
    } finally {
      release()
    }
  })

  it('keeps products and orders across a restart on SQLite', () => survivesRestart('sqlite'))
  it('keeps products and orders across a restart on PostgreSQL', () => survivesRestart('postgres'))
  it('brings up two product replicas started together on an empty SQLite DATA_DIR', () => replicasStartTogether('sqlite'))
  it('brings up two product replicas started together on an empty PostgreSQL database', () => replicasStartTogether('postgres'))
})
