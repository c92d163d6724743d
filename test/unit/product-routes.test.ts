import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { migrate, openDatabase, type Database } from '../../src/db/database.ts'
import { buildApp, type App } from '../../src/http/app.ts'
import { classifyDatabaseError } from '../../src/runtime/database.ts'
import { productMigrations, ProductRepository, type ProductDatabase } from '../../src/services/product/repository.ts'
import { registerProductRoutes } from '../../src/services/product/routes.ts'
import { silentLogger } from '../helpers/logger.ts'

describe('product routes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'msa-product-'))
  let database: Database<ProductDatabase>
  let app: App

  before(async () => {
    database = openDatabase<ProductDatabase>({ name: 'product', dataDir: dir, databaseUrl: undefined })
    await migrate(database, 'product', productMigrations)
    app = buildApp({ logger: silentLogger() })
    registerProductRoutes(app, new ProductRepository(database.db))
  })

  after(async () => {
    await app.close()
    await database.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('creates a product with 201, Location and an exact price', async () => {
    const response = await app.inject({ method: 'POST', url: '/products', payload: { name: 'Pen', price: '19.90', description: 'Blue' } })
    assert.equal(response.statusCode, 201)
    const product = response.json()
    assert.equal(response.headers.location, `/products/${product.id}`)
    assert.equal(product.price, 19.9)
    assert.equal(product.description, 'Blue')
    const fetched = await app.inject({ method: 'GET', url: `/products/${product.id}` })
    assert.deepEqual(fetched.json(), product)
  })

  it('answers 404 PRODUCT_NOT_FOUND for an unknown id and 400 for a malformed one', async () => {
    const unknown = await app.inject({ method: 'GET', url: '/products/00000000-0000-4000-8000-000000000000' })
    assert.equal(unknown.statusCode, 404)
    assert.equal(unknown.json().code, 'PRODUCT_NOT_FOUND')
    const malformed = await app.inject({ method: 'GET', url: '/products/abc' })
    assert.equal(malformed.statusCode, 400)
    assert.equal(malformed.json().code, 'VALIDATION_FAILED')
  })

  it('pages through the list with a bounded limit and a cursor', async () => {
    for (let i = 0; i < 7; i++) await app.inject({ method: 'POST', url: '/products', payload: { name: `Item ${i}`, price: i } })
    const seen = new Set<string>()
    let cursor: string | null = null
    let pages = 0
    do {
      const url: string = cursor ? `/products?limit=3&cursor=${cursor}` : '/products?limit=3'
      const page = (await app.inject({ method: 'GET', url })).json()
      assert.ok(page.items.length <= 3)
      for (const item of page.items) {
        assert.ok(!seen.has(item.id), 'no product twice')
        seen.add(item.id)
      }
      cursor = page.next_cursor
      pages++
    } while (cursor && pages < 10)
    assert.equal(seen.size, 8)
    assert.equal((await app.inject({ method: 'GET', url: '/products' })).json().items.length, 8)
  })

  const badBodies: Array<[string, unknown]> = [
    ['missing price', { name: 'x' }],
    ['missing name', { price: 1 }],
    ['empty name', { name: '', price: 1 }],
    ['name of spaces only', { name: '   ', price: 1 }],
    ['name of Unicode spaces only', { name: '\u00a0\u3000\u2003', price: 1 }],
    ['name too long', { name: 'x'.repeat(201), price: 1 }],
    ['negative price', { name: 'x', price: -1 }],
    ['three decimals', { name: 'x', price: 1.005 }],
    ['price as words', { name: 'x', price: 'ten' }],
    ['price too large', { name: 'x', price: 1e12 }],
    ['price null', { name: 'x', price: null }],
    ['unknown field', { name: 'x', price: 1, colour: 'red' }],
    ['description not a string', { name: 'x', price: 1, description: 5 }],
  ]
  for (const [name, payload] of badBodies) {
    it(`refuses a product with ${name}: 400 VALIDATION_FAILED`, async () => {
      const response = await app.inject({ method: 'POST', url: '/products', payload: payload as object })
      assert.equal(response.statusCode, 400)
      assert.equal(response.json().code, 'VALIDATION_FAILED')
    })
  }

  it('keeps a name with spaces around or inside its words as sent', async () => {
    const response = await app.inject({ method: 'POST', url: '/products', payload: { name: '  Blue  pen ', price: 1 } })
    assert.equal(response.statusCode, 201)
    assert.equal(response.json().name, '  Blue  pen ')
  })

  for (const query of ['limit=0', 'limit=101', 'limit=abc', 'cursor=%%%', 'cursor=bm90LWEtY3Vyc29y']) {
    it(`refuses GET /products?${query} with 400`, async () => {
      const response = await app.inject({ method: 'GET', url: `/products?${query}` })
      assert.equal(response.statusCode, 400)
      assert.equal(response.json().code, 'VALIDATION_FAILED')
    })
  }
})

describe('product service OpenAPI document', () => {
  it('is generated from the schemas that validate the requests', async () => {
    const { buildApp: build } = await import('../../src/http/app.ts')
    const dir = mkdtempSync(join(tmpdir(), 'msa-openapi-'))
    const database = openDatabase<ProductDatabase>({ name: 'product', dataDir: dir, databaseUrl: undefined })
    const app = build({ logger: silentLogger(), openapi: { title: 'product service', description: 'test' } })
    await app.register(async (scoped) => registerProductRoutes(scoped as unknown as App, new ProductRepository(database.db)))
    try {
      const response = await app.inject({ method: 'GET', url: '/openapi.json' })
      assert.equal(response.statusCode, 200)
      const document = response.json()
      assert.equal(document.openapi, '3.1.0')
      const create = document.paths['/products'].post
      const schema = create.requestBody.content['application/json'].schema
      assert.deepEqual(schema.required, ['name', 'price'])
      assert.equal(schema.properties.name.maxLength, 200)
      assert.equal(schema.additionalProperties, false)
      assert.ok(create.responses['201'])
      assert.equal(document.paths['/products'].get.parameters.find((p: { name: string }) => p.name === 'limit').schema.maximum, 100)
      assert.ok(!response.body.includes('"~'))
      assert.equal(document.paths['/metrics'], undefined)
      assert.equal((await app.inject({ method: 'GET', url: '/docs/' })).statusCode, 200)
    } finally {
      await app.close()
      await database.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('product routes without a database', () => {
  it('answer 503 DATABASE_UNAVAILABLE, and readiness names the failing check', async () => {
    const { registerHealthRoutes } = await import('../../src/http/health.ts')
    // Nothing listens on port 1: every query is refused.
    const database = openDatabase<ProductDatabase>({ name: 'product', dataDir: tmpdir(), databaseUrl: 'postgres://postgres@127.0.0.1:1/none' })
    const app = buildApp({ logger: silentLogger(), classifyError: classifyDatabaseError })
    registerProductRoutes(app, new ProductRepository(database.db))
    const database_ = async () => {
      await database.ping()
      return true as const
    }
    registerHealthRoutes(app, { checks: { database: database_ }, isDraining: () => false })
    try {
      const list = await app.inject({ method: 'GET', url: '/products' })
      assert.equal(list.statusCode, 503)
      assert.equal(list.json().code, 'DATABASE_UNAVAILABLE')
      const create = await app.inject({ method: 'POST', url: '/products', payload: { name: 'x', price: 1 } })
      assert.equal(create.statusCode, 503)
      const ready = await app.inject({ method: 'GET', url: '/health/ready' })
      assert.equal(ready.statusCode, 503)
      assert.equal(ready.json().status, 'not_ready')
      assert.notEqual(ready.json().checks.database, 'ok')
      assert.equal((await app.inject({ method: 'GET', url: '/health/live' })).statusCode, 200)
    } finally {
      await app.close()
      await database.close()
    }
  })
})
