import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, describe, it } from 'node:test'
import { migrate, openDatabase, type Database } from '../../src/db/database.ts'
import { RegistryClient } from '../../src/discovery/registry-client.ts'
import { Resolver } from '../../src/discovery/resolver.ts'
import { ServiceClient } from '../../src/discovery/service-client.ts'
import { buildApp, type App } from '../../src/http/app.ts'
import { buildRegistryApp, type RegistryApp } from '../../src/registry/server.ts'
import { ProductClient } from '../../src/services/order/product-client.ts'
import { orderMigrations, OrderRepository, type OrderDatabase } from '../../src/services/order/repository.ts'
import { registerOrderRoutes } from '../../src/services/order/routes.ts'
import { silentLogger } from '../helpers/logger.ts'
import { waitFor } from '../helpers/wait.ts'

type Behaviour = 'ok' | 'not_found' | 'error_500' | 'hang' | 'bad_json' | 'wrong_shape' | 'unavailable'

const PRODUCT_ID = '11111111-1111-4111-8111-111111111111'

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

describe('order routes against a product service', () => {
  const dir = mkdtempSync(join(tmpdir(), 'msa-order-'))
  let behaviour: Behaviour = 'ok'
  let price: unknown = 0.1
  let database: Database<OrderDatabase>
  let registry: RegistryApp
  let registryUrl: string
  let productServer: Server
  let productUrl: string
  let app: App
  let client: ServiceClient
  let registryClient: RegistryClient
  let resolver: Resolver

  before(async () => {
    productServer = createServer((_request, response) => {
      if (behaviour === 'hang') return // never answers: the client's timeout must fire
      const send = (status: number, body: string, type = 'application/json') => {
        response.writeHead(status, { 'content-type': type })
        response.end(body)
      }
      const product = { id: PRODUCT_ID, name: 'Pencil', description: null, price, created_at: new Date().toISOString() }
      switch (behaviour) {
        case 'ok':
          return send(200, JSON.stringify(product))
        case 'not_found':
          return send(404, JSON.stringify({ code: 'PRODUCT_NOT_FOUND' }), 'application/problem+json')
        case 'error_500':
          return send(500, 'boom', 'text/plain')
        case 'bad_json':
          return send(200, '{"id":')
        case 'wrong_shape':
          return send(200, JSON.stringify({ id: PRODUCT_ID, price: 'free' }))
        case 'unavailable':
          return send(503, 'draining', 'text/plain')
      }
    })
    productUrl = await listen(productServer)

    registry = buildRegistryApp({ logger: silentLogger(), ttlMs: 60_000 })
    await registry.app.listen({ host: '127.0.0.1', port: 0 })
    registryUrl = `http://127.0.0.1:${(registry.app.server.address() as AddressInfo).port}`

    database = openDatabase<OrderDatabase>({ name: 'order', dataDir: dir, databaseUrl: undefined })
    await migrate(database, 'order', orderMigrations)
    const logger = silentLogger()
    registryClient = new RegistryClient({ urls: [registryUrl] })
    resolver = new Resolver({ client: registryClient, logger, waitMs: 30_000 })
    client = new ServiceClient({ resolver, logger, timeoutMs: 300, connectTimeoutMs: 300 })
    app = buildApp({ logger })
    registerOrderRoutes(app, new OrderRepository(database.db), new ProductClient(client))
  })

  beforeEach(async () => {
    behaviour = 'ok'
    price = 0.1
    await registry.store.register({ service_name: 'product', url: productUrl })
  })

  after(async () => {
    await app.close()
    resolver.close()
    await client.close()
    await registryClient.close()
    await registry.app.close()
    productServer.closeAllConnections()
    await new Promise((resolve) => productServer.close(resolve))
    await database.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const place = (payload: object) => app.inject({ method: 'POST', url: '/orders', payload })

  it('prices an order exactly from the product service and stores it', async () => {
    const response = await place({ product_id: PRODUCT_ID, quantity: 3 })
    assert.equal(response.statusCode, 201)
    const order = response.json()
    assert.equal(order.unit_price, 0.1)
    assert.equal(order.total_price, 0.3)
    assert.equal(response.headers.location, `/orders/${order.id}`)
    assert.deepEqual((await app.inject({ method: 'GET', url: `/orders/${order.id}` })).json(), order)
    assert.ok((await app.inject({ method: 'GET', url: '/orders' })).json().items.some((o: { id: string }) => o.id === order.id))
  })

  it('multiplies without floating-point error', async () => {
    price = 19.99
    const response = await place({ product_id: PRODUCT_ID, quantity: 7 })
    assert.equal(response.statusCode, 201)
    assert.equal(response.json().total_price, 139.93)
  })

  const failures: Array<[Behaviour, number, string]> = [
    ['not_found', 422, 'UNKNOWN_PRODUCT'],
    ['error_500', 502, 'UPSTREAM_FAILED'],
    ['bad_json', 502, 'UPSTREAM_FAILED'],
    ['wrong_shape', 502, 'UPSTREAM_FAILED'],
    ['unavailable', 503, 'UPSTREAM_UNAVAILABLE'],
    ['hang', 504, 'UPSTREAM_TIMEOUT'],
  ]
  for (const [mode, status, code] of failures) {
    it(`answers ${status} ${code} when the product service ${mode.replace('_', ' ')}s`, async () => {
      behaviour = mode
      const response = await place({ product_id: PRODUCT_ID, quantity: 1 })
      assert.equal(response.statusCode, status)
      assert.equal(response.json().code, code)
    })
  }

  it('answers 503 NO_HEALTHY_INSTANCE when no product instance is registered', async () => {
    await registry.store.deregister({ service_name: 'product', url: productUrl })
    // The client serves its cached list while it refreshes in the background: poll.
    const response = await waitFor(
      async () => {
        const r = await place({ product_id: PRODUCT_ID, quantity: 1 })
        return r.statusCode !== 201 && r
      },
      { what: 'the client to see that no instance is left' },
    )
    assert.equal(response.statusCode, 503)
    assert.equal(response.json().code, 'NO_HEALTHY_INSTANCE')
  })

  it('answers 503 when the only product instance refuses connections', async () => {
    await registry.store.deregister({ service_name: 'product', url: productUrl })
    const dead = createServer()
    const deadUrl = await listen(dead)
    await new Promise((resolve) => dead.close(resolve))
    await registry.store.register({ service_name: 'product', url: deadUrl })
    const response = await waitFor(
      async () => {
        const r = await place({ product_id: PRODUCT_ID, quantity: 1 })
        return r.json().code !== 'NO_HEALTHY_INSTANCE' && r.statusCode !== 201 && r
      },
      { what: 'the client to see the dead instance' },
    )
    assert.equal(response.statusCode, 503)
    assert.equal(response.json().code, 'UPSTREAM_UNAVAILABLE')
    await registry.store.deregister({ service_name: 'product', url: deadUrl })
  })

  const badOrders: Array<[string, unknown]> = [
    ['no product_id', { quantity: 1 }],
    ['product_id not a uuid', { product_id: 'abc', quantity: 1 }],
    ['quantity zero', { product_id: PRODUCT_ID, quantity: 0 }],
    ['quantity negative', { product_id: PRODUCT_ID, quantity: -2 }],
    ['quantity fractional', { product_id: PRODUCT_ID, quantity: 1.5 }],
    ['quantity as a string', { product_id: PRODUCT_ID, quantity: '2' }],
    ['quantity too large', { product_id: PRODUCT_ID, quantity: 10_001 }],
    ['unknown field', { product_id: PRODUCT_ID, quantity: 1, price: 0 }],
  ]
  for (const [name, payload] of badOrders) {
    it(`refuses an order with ${name}: 400 VALIDATION_FAILED`, async () => {
      const response = await place(payload as object)
      assert.equal(response.statusCode, 400)
      assert.equal(response.json().code, 'VALIDATION_FAILED')
    })
  }

  it('honours Idempotency-Key: the same key and body return the first order, another body is 422', async () => {
    const key = { 'idempotency-key': `order-${Date.now()}` }
    const first = await app.inject({ method: 'POST', url: '/orders', headers: key, payload: { product_id: PRODUCT_ID, quantity: 4 } })
    assert.equal(first.statusCode, 201)
    assert.equal(first.headers['idempotent-replayed'], 'false')
    // Even with the product service down, a replay answers from the stored order.
    behaviour = 'error_500'
    const again = await app.inject({ method: 'POST', url: '/orders', headers: key, payload: { product_id: PRODUCT_ID, quantity: 4 } })
    assert.equal(again.statusCode, 201)
    assert.equal(again.headers['idempotent-replayed'], 'true')
    assert.deepEqual(again.json(), first.json())
    const other = await app.inject({ method: 'POST', url: '/orders', headers: key, payload: { product_id: PRODUCT_ID, quantity: 5 } })
    assert.equal(other.statusCode, 422)
    assert.equal(other.json().code, 'IDEMPOTENCY_KEY_REUSED')
    const listed = (await app.inject({ method: 'GET', url: '/orders?limit=100' })).json().items
    assert.equal(listed.filter((o: { id: string }) => o.id === first.json().id).length, 1)
  })

  it('answers concurrent requests with one key with one order', async () => {
    const headers = { 'idempotency-key': `race-${Date.now()}` }
    const responses = await Promise.all(Array.from({ length: 5 }, () => app.inject({ method: 'POST', url: '/orders', headers, payload: { product_id: PRODUCT_ID, quantity: 1 } })))
    assert.ok(responses.every((r) => r.statusCode === 201))
    assert.equal(new Set(responses.map((r) => r.json().id)).size, 1)
  })

  it('refuses a malformed Idempotency-Key with 400', async () => {
    const response = await app.inject({ method: 'POST', url: '/orders', headers: { 'idempotency-key': 'has space' }, payload: { product_id: PRODUCT_ID, quantity: 1 } })
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'VALIDATION_FAILED')
  })

  // The gateway sets X-Auth-Subject from a verified token (and strips the client's).
  const as = (subject: string) => ({ 'x-auth-subject': subject })
  const ids = (response: { json: () => { items: Array<{ id: string }> } }) => response.json().items.map((o) => o.id)

  it("records the caller's subject: a caller lists and reads only its own orders, another's is 404", async () => {
    const alice = as(`alice-${Date.now()}`)
    const bob = as(`bob-${Date.now()}`)
    const placed = await app.inject({ method: 'POST', url: '/orders', headers: alice, payload: { product_id: PRODUCT_ID, quantity: 2 } })
    assert.equal(placed.statusCode, 201)
    const order = placed.json()
    assert.deepEqual(ids(await app.inject({ method: 'GET', url: '/orders?limit=100', headers: alice })), [order.id])
    assert.deepEqual((await app.inject({ method: 'GET', url: `/orders/${order.id}`, headers: alice })).json(), order)
    assert.deepEqual(ids(await app.inject({ method: 'GET', url: '/orders?limit=100', headers: bob })), [])
    // Another caller's order is answered exactly as an unknown one.
    const hidden = await app.inject({ method: 'GET', url: `/orders/${order.id}`, headers: bob })
    const unknown = await app.inject({ method: 'GET', url: '/orders/00000000-0000-4000-8000-000000000000', headers: bob })
    assert.equal(hidden.statusCode, 404)
    assert.equal(hidden.json().code, 'ORDER_NOT_FOUND')
    assert.equal(unknown.statusCode, 404)
    assert.equal(unknown.json().code, hidden.json().code)
    // Anonymous requests (no gateway authentication) see only anonymous orders.
    assert.ok(!ids(await app.inject({ method: 'GET', url: '/orders?limit=100' })).includes(order.id))
    assert.equal((await app.inject({ method: 'GET', url: `/orders/${order.id}` })).statusCode, 404)
    const anonymous = (await place({ product_id: PRODUCT_ID, quantity: 1 })).json()
    assert.ok(ids(await app.inject({ method: 'GET', url: '/orders?limit=100' })).includes(anonymous.id))
    assert.ok(!ids(await app.inject({ method: 'GET', url: '/orders?limit=100', headers: alice })).includes(anonymous.id))
  })

  it('scopes Idempotency-Key per caller: the same key from two callers makes two orders', async () => {
    const key = `shared-${Date.now()}`
    const payload = { product_id: PRODUCT_ID, quantity: 1 }
    const alice = await app.inject({ method: 'POST', url: '/orders', headers: { ...as('alice'), 'idempotency-key': key }, payload })
    const bob = await app.inject({ method: 'POST', url: '/orders', headers: { ...as('bob'), 'idempotency-key': key }, payload: { ...payload, quantity: 2 } })
    const anonymous = await app.inject({ method: 'POST', url: '/orders', headers: { 'idempotency-key': key }, payload })
    assert.deepEqual(
      [alice, bob, anonymous].map((r) => [r.statusCode, r.headers['idempotent-replayed']]),
      [
        [201, 'false'],
        [201, 'false'],
        [201, 'false'],
      ],
    )
    assert.equal(new Set([alice, bob, anonymous].map((r) => r.json().id)).size, 3)
    const again = await app.inject({ method: 'POST', url: '/orders', headers: { ...as('bob'), 'idempotency-key': key }, payload: { ...payload, quantity: 2 } })
    assert.equal(again.headers['idempotent-replayed'], 'true')
    assert.equal(again.json().id, bob.json().id)
  })

  it('refuses a malformed X-Auth-Subject with 400 rather than serving it as anonymous', async () => {
    for (const subject of ['', 'two words', 'x'.repeat(256)]) {
      const response = await app.inject({ method: 'GET', url: '/orders', headers: as(subject) })
      assert.equal(response.statusCode, 400, JSON.stringify(subject))
      assert.equal(response.json().code, 'VALIDATION_FAILED')
    }
  })

  it('answers 404 ORDER_NOT_FOUND for an unknown order', async () => {
    const response = await app.inject({ method: 'GET', url: '/orders/00000000-0000-4000-8000-000000000000' })
    assert.equal(response.statusCode, 404)
    assert.equal(response.json().code, 'ORDER_NOT_FOUND')
  })
})
