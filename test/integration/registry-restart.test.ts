// The registry keeps its state in memory. When it dies and a new one starts on the same port, the
// instances find out from their next heartbeat (404) and register again, with the same ids, and
// the system keeps working.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import type { RunningProcess } from '../helpers/process.ts'
import { discover, startRoles, startTracked, stopAll, tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const TTL_SECONDS = 3
const HEARTBEAT_SECONDS = 0.3
// Heartbeats are jittered by up to +10 %; allow scheduling noise on a busy machine on top.
const BACK_WITHIN_MS = 2 * HEARTBEAT_SECONDS * 1.1 * 1000 + 600

describe('registry restart: instances re-register on their next heartbeat', () => {
  const dataDir = tempDir('registry-restart')
  const started: RunningProcess[] = []
  let registry: RunningProcess | undefined
  let product: RunningProcess | undefined
  let order: RunningProcess | undefined

  before(async () => {
    registry = await startTracked(started, 'registry', { env: { REGISTRY_TTL_SECONDS: String(TTL_SECONDS) } })
    const env = { REGISTRY_URL: registry.url, DATA_DIR: dataDir.path, HEARTBEAT_INTERVAL_SECONDS: String(HEARTBEAT_SECONDS) }
    ;[product, order] = await startRoles(started, ['product', { env }], ['order', { env }])
  })

  after(async () => {
    await stopAll(started)
    dataDir.remove()
  })

  it('has both instances back in discovery within two heartbeat intervals of the new registry, and orders still work', async (t) => {
    assert.ok(registry && product && order)
    const first = registry
    const before = await waitFor(
      async () => {
        const [products, orders] = await Promise.all([discover(first.url, 'product'), discover(first.url, 'order')])
        return products.length === 1 && orders.length === 1 ? { product: products[0]!, order: orders[0]! } : undefined
      },
      { what: 'the product and order instances in discovery' },
    )
    assert.equal(before.product.url, product.url)
    assert.equal(before.order.url, order.url)

    const created = await http('POST', `${product.url}/products`, { name: 'Lamp', price: 19.99 })
    assert.equal(created.status, 201)
    const warm = await http('POST', `${order.url}/orders`, { product_id: created.body.id, quantity: 1 })
    assert.equal(warm.status, 201)

    // Kill the registry outright and start an empty one on the same port.
    const port = first.port
    await first.stop('SIGKILL')
    const logsBefore = { product: product.logs.length, order: order.logs.length }
    registry = await startTracked(started, 'registry', { env: { PORT: String(port), REGISTRY_TTL_SECONDS: String(TTL_SECONDS) } })
    assert.equal(registry.port, port)
    const second = registry
    const listening = second.logs.find((line) => line.event === 'listening')
    const listeningAt = Date.parse(String(listening?.time))
    assert.ok(Number.isFinite(listeningAt))

    const after = await waitFor(
      async () => {
        const [products, orders] = await Promise.all([discover(second.url, 'product'), discover(second.url, 'order')])
        return products.length === 1 && orders.length === 1 ? { product: products[0]!, order: orders[0]!, at: Date.now() } : undefined
      },
      { timeoutMs: 10_000, intervalMs: 20, what: 'both instances back in the new registry' },
    )
    const backAfterMs = after.at - listeningAt
    t.diagnostic(`both instances back ${backAfterMs} ms after the new registry listened`)
    assert.ok(backAfterMs <= BACK_WITHIN_MS, `back in discovery ${backAfterMs} ms after the new registry listened (limit ${BACK_WITHIN_MS} ms)`)

    // Same instances, same ids: the id derives from (service_name, url).
    assert.equal(after.product.url, product.url)
    assert.equal(after.product.id, before.product.id)
    assert.equal(after.order.url, order.url)
    assert.equal(after.order.id, before.order.id)

    // They came back because a heartbeat was answered 404, not because they were restarted.
    // (Their log lines may trail the registry's answer by a moment: poll for them.)
    for (const [instance, from] of [
      [product, logsBefore.product],
      [order, logsBefore.order],
    ] as const) {
      const newer = () => instance.logs.slice(from)
      await waitFor(() => newer().some((line) => line.event === 'heartbeat_unknown'), { timeoutMs: 2000, what: `${instance.role} to be told by a heartbeat that it is unknown` })
      await waitFor(() => newer().some((line) => line.event === 'registered'), { timeoutMs: 2000, what: `${instance.role} to log its new registration` })
      assert.equal(instance.child.exitCode, null, `${instance.role} kept running`)
    }

    // And the system works through the new registry.
    const placed = await http('POST', `${order.url}/orders`, { product_id: created.body.id, quantity: 3 })
    assert.equal(placed.status, 201)
    assert.equal(placed.body.total_price, 59.97)
    const fresh = await http('POST', `${product.url}/products`, { name: 'Bulb', price: '0.05' })
    assert.equal(fresh.status, 201)
    const placedFresh = await http('POST', `${order.url}/orders`, { product_id: fresh.body.id, quantity: 7 })
    assert.equal(placedFresh.status, 201)
    assert.equal(placedFresh.body.total_price, 0.35)
  })
})
