// Products and orders outlive the processes that wrote them, on SQLite (DATA_DIR) and on
// PostgreSQL (DATABASE_URL); and replicas that start together on an empty database both come up
// (their migrations do not trip over each other) and share their data.
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { discover, tempDir, type TempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const HEARTBEAT_SECONDS = 0.3

describe('persistence across restarts and concurrent start-up', () => {
  const started: RunningProcess[] = []
  const dirs: TempDir[] = []
  const databases: TestDatabase[] = []

  after(async () => {
    await Promise.all(started.map((p) => p.stop('SIGKILL')))
    for (const dir of dirs) dir.remove()
    await Promise.all(databases.map((db) => db.drop()))
  })

  async function start(role: string, env: Record<string, string>): Promise<RunningProcess> {
    const proc = await startRole(role, { env })
    started.push(proc)
    return proc
  }

  /** A registry of its own for each scenario, so that no scenario discovers another's instances. */
  async function storage(kind: 'sqlite' | 'postgres'): Promise<Record<string, string>> {
    const registry = await start('registry', { REGISTRY_TTL_SECONDS: '3' })
    const common = { REGISTRY_URL: registry.url, HEARTBEAT_INTERVAL_SECONDS: String(HEARTBEAT_SECONDS) }
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
    const [product, order] = await Promise.all([start('product', env), start('order', env)])
    const registryUrl = env.REGISTRY_URL!
    await waitFor(async () => (await discover(registryUrl, 'product')).some((i) => i.url === product.url), { what: 'the product instance in discovery' })
    const created = await http('POST', `${product.url}/products`, { name: 'Kettle', price: '24.90', description: 'Steel, 1.7 l' })
    assert.equal(created.status, 201)
    const placed = await http('POST', `${order.url}/orders`, { product_id: created.body.id, quantity: 3 })
    assert.equal(placed.status, 201)
    assert.equal(placed.body.total_price, 74.7)
    await stopGracefully(product, order)

    const [product2, order2] = await Promise.all([start('product', env), start('order', env)])
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
    const [a, b] = await Promise.all([start('product', env), start('product', env)])
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

  it('keeps products and orders across a restart on SQLite', () => survivesRestart('sqlite'))
  it('keeps products and orders across a restart on PostgreSQL', () => survivesRestart('postgres'))
  it('brings up two product replicas started together on an empty SQLite DATA_DIR', () => replicasStartTogether('sqlite'))
  it('brings up two product replicas started together on an empty PostgreSQL database', () => replicasStartTogether('postgres'))
})
