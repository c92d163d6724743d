// A product instance dies hard (kill -9) while orders are being placed: no order may fail (the
// order service retries the product lookup on the other instance), and the registry forgets the
// dead instance within its TTL and logs its eviction.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import type { RunningProcess } from '../helpers/process.ts'
import { discover, startRoles, startTracked, stopAll, tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const TTL_SECONDS = 2
const HEARTBEAT_SECONDS = 0.3
// The sweeper runs every TTL/4; allow that plus scheduling noise on a busy machine.
const SWEEP_MARGIN_MS = (TTL_SECONDS * 1000) / 4 + 500
const ORDERS = 40
const KILL_AT = 10

interface PlacedOrder {
  product_id?: string
  unit_price?: number
  total_price?: number
  code?: string
}

describe('failover: kill -9 of a product instance while orders are placed', () => {
  const dataDir = tempDir('failover')
  const started: RunningProcess[] = []
  let registry: RunningProcess | undefined
  let products: RunningProcess[] = []
  let order: RunningProcess | undefined

  before(async () => {
    registry = await startTracked(started, 'registry', { env: { REGISTRY_TTL_SECONDS: String(TTL_SECONDS) } })
    const env = { REGISTRY_URL: registry.url, DATA_DIR: dataDir.path, HEARTBEAT_INTERVAL_SECONDS: String(HEARTBEAT_SECONDS) }
    const services = await startRoles(started, ['product', { env }], ['product', { env }], ['order', { env }])
    products = services.slice(0, 2)
    order = services[2]
    const registryUrl = registry.url
    await waitFor(async () => (await discover(registryUrl, 'product')).length === 2, { what: 'both product instances in discovery' })
  })

  after(async () => {
    await stopAll(started)
    dataDir.remove()
  })

  it('places every order with the right total across the kill, and evicts the dead instance within the TTL', async (t) => {
    assert.ok(registry && order)
    const [victim, survivor] = products as [RunningProcess, RunningProcess]
    const created = await http('POST', `${survivor.url}/products`, { name: 'Widget', price: '2.35' })
    assert.equal(created.status, 201)
    const productId: string = created.body.id
    const registryUrl = registry.url
    const orderUrl = order.url

    let killedAt = 0
    let gone: Promise<number> | undefined
    const failures: string[] = []
    for (let i = 0; i < ORDERS; i++) {
      if (i === KILL_AT) {
        victim.child.kill('SIGKILL')
        killedAt = Date.now()
        // Watch discovery from the moment of the kill, while the orders go on.
        gone = waitFor(async () => ((await discover(registryUrl, 'product')).some((instance) => instance.url === victim.url) ? undefined : Date.now()), {
          timeoutMs: TTL_SECONDS * 1000 + 5000,
          intervalMs: 20,
          what: 'the killed instance to leave discovery',
        })
      }
      const quantity = (i % 5) + 1
      const placed = await http<PlacedOrder>('POST', `${orderUrl}/orders`, { product_id: productId, quantity })
      if (placed.status !== 201) {
        failures.push(`order ${i}: ${placed.status} ${placed.body.code}`)
        continue
      }
      assert.equal(placed.body.product_id, productId)
      assert.equal(placed.body.unit_price, 2.35)
      assert.equal(placed.body.total_price, (235 * quantity) / 100, `order ${i} total`)
    }
    assert.deepEqual(failures, [], 'every order is placed')

    // The kill really was in the path of the orders: the order service met the dead instance and
    // retried elsewhere (otherwise this test would prove nothing).
    const exit = await victim.exited
    assert.equal(exit.signal, 'SIGKILL')
    await order.waitForLog((line) => line.event === 'upstream_error' && line.instance_url === victim.url && line.will_retry === true, 2000)

    const goneAt = await gone!
    const goneAfterMs = goneAt - killedAt
    assert.ok(goneAfterMs <= TTL_SECONDS * 1000 + 500, `the killed instance left discovery ${goneAfterMs} ms after the kill (TTL ${TTL_SECONDS} s)`)

    const evicted = await registry.waitForLog((line) => line.event === 'evicted' && line.url === victim.url, TTL_SECONDS * 1000 + 5000)
    const evictedAfterMs = Date.parse(String(evicted.time)) - killedAt
    assert.ok(evictedAfterMs <= TTL_SECONDS * 1000 + SWEEP_MARGIN_MS, `evicted ${evictedAfterMs} ms after the kill`)
    assert.equal(evicted.service_name, 'product')
    t.diagnostic(`left discovery ${goneAfterMs} ms and evicted ${evictedAfterMs} ms after the kill`)

    // The survivor was never evicted and is still discoverable.
    assert.ok(!registry.logs.some((line) => line.event === 'evicted' && line.url === survivor.url), 'the live instance is not evicted')
    const live = await discover(registry.url, 'product')
    assert.deepEqual(
      live.map((instance) => instance.url),
      [survivor.url],
    )

    // And orders keep working with one instance left.
    const last = await http('POST', `${order.url}/orders`, { product_id: productId, quantity: 4 })
    assert.equal(last.status, 201)
    assert.equal(last.body.total_price, 9.4)
  })
})
