// The seed README's curl examples and the system it describes, driven over HTTP against real
// processes: a registry, two product instances and one order instance.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { waitFor } from '../helpers/wait.ts'

describe('the seed system end to end', () => {
  let registry: RunningProcess
  let products: RunningProcess[] = []
  let order: RunningProcess
  const dataDir = mkdtempSync(join(tmpdir(), 'msa-seed-'))

  before(async () => {
    registry = await startRole('registry', { env: { REGISTRY_TTL_SECONDS: '5' } })
    const env = { REGISTRY_URL: registry.url, DATA_DIR: dataDir, HEARTBEAT_INTERVAL_SECONDS: '1' }
    products = await Promise.all([startRole('product', { env }), startRole('product', { env })])
    order = await startRole('order', { env })
  })

  after(async () => {
    await Promise.all([...products, order].filter(Boolean).map((p) => p.stop()))
    await registry?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('registers a service with the seed curl example', async () => {
    const response = await http('POST', `${registry.url}/register`, '{"service_name": "product", "url": "http://product:8081"}', {
      'Content-Type': 'application/json',
    })
    assert.equal(response.status, 201)
    assert.equal(response.body.service_name, 'product')
    assert.equal(response.body.url, 'http://product:8081')
    assert.equal(response.body.status, 'up')
    assert.match(response.body.id, /^product-/)
  })

  it('discovers it with the seed curl example, next to the self-registered instances', async () => {
    const response = await http('GET', `${registry.url}/discover/product`)
    assert.equal(response.status, 200)
    const urls = response.body.instances.map((i: { url: string }) => i.url).sort()
    assert.deepEqual(urls, ['http://product:8081', ...products.map((p) => p.url)].sort())
  })

  it('accepts the seed heartbeat example and never duplicates an instance', async () => {
    const beat = await http('POST', `${registry.url}/heartbeat`, '{"service_name": "product", "url": "http://product:8081"}', {
      'Content-Type': 'application/json',
    })
    assert.equal(beat.status, 200)
    const again = await http('POST', `${registry.url}/register`, { service_name: 'product', url: 'http://product:8081' })
    assert.equal(again.status, 200)
    assert.equal(again.body.id, beat.body.id)
    const listed = await http('GET', `${registry.url}/discover/product`)
    assert.equal(listed.body.instances.filter((i: { url: string }) => i.url === 'http://product:8081').length, 1)
  })

  it('has two product instances and one order instance registered by themselves', async () => {
    const services = await waitFor(
      async () => {
        const response = await http('GET', `${registry.url}/services`)
        const byName = Object.fromEntries(response.body.services.map((s: { service_name: string; instances: unknown[] }) => [s.service_name, s.instances]))
        return byName.order?.length === 1 ? byName : undefined
      },
      { what: 'the order instance in /services' },
    )
    const productUrls = services.product.map((i: { url: string }) => i.url)
    for (const p of products) assert.ok(productUrls.includes(p.url), `${p.url} registered`)
    assert.equal(services.order[0].url, order.url)
  })

  it('prices an order across services, exactly', async () => {
    // The fake seed registration points at a host that does not exist; remove it first.
    await http('POST', `${registry.url}/deregister`, { service_name: 'product', url: 'http://product:8081' })
    const created = await http('POST', `${products[0]!.url}/products`, { name: 'Pencil', price: 0.1, description: 'HB' })
    assert.equal(created.status, 201)
    assert.equal(created.headers.get('location'), `/products/${created.body.id}`)
    assert.equal(created.body.price, 0.1)

    // The other replica sees the same data.
    const fetched = await http('GET', `${products[1]!.url}/products/${created.body.id}`)
    assert.equal(fetched.status, 200)
    assert.deepEqual(fetched.body, created.body)

    const placed = await http('POST', `${order.url}/orders`, { product_id: created.body.id, quantity: 3 })
    assert.equal(placed.status, 201)
    assert.equal(placed.body.unit_price, 0.1)
    assert.equal(placed.body.total_price, 0.3)
    assert.equal(placed.body.quantity, 3)
    assert.equal(placed.body.status, 'confirmed')
    assert.equal(placed.headers.get('location'), `/orders/${placed.body.id}`)

    const got = await http('GET', `${order.url}/orders/${placed.body.id}`)
    assert.deepEqual(got.body, placed.body)
    const listed = await http('GET', `${order.url}/orders`)
    assert.ok(listed.body.items.some((o: { id: string }) => o.id === placed.body.id))
  })

  it('answers 422 for an order of an unknown product', async () => {
    const response = await http('POST', `${order.url}/orders`, { product_id: '00000000-0000-4000-8000-000000000000', quantity: 1 })
    assert.equal(response.status, 422)
    assert.equal(response.body.code, 'UNKNOWN_PRODUCT')
    assert.match(response.headers.get('content-type') ?? '', /application\/problem\+json/)
  })
})
