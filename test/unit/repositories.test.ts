// The storage layer on both dialects: SQLite (a temp file) and the PostgreSQL on this machine
// (a database made and dropped by this test run).
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { sql } from 'kysely'
import { migrate, openDatabase, type Database } from '../../src/db/database.ts'
import { type IdempotentResult, orderMigrations, OrderRepository, type OrderDatabase } from '../../src/services/order/repository.ts'
import { productMigrations, ProductRepository, type ProductDatabase } from '../../src/services/product/repository.ts'
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.ts'
import { startTcpProxy } from '../helpers/tcp-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

const execFileAsync = promisify(execFile)

type Shop = ProductDatabase & OrderDatabase

const MIGRATE_CHILD = fileURLToPath(new URL('../helpers/migrate-child.ts', import.meta.url))

async function migrateInChild(service: string, dataDir: string, databaseUrl: string | undefined, startAt: number): Promise<string[]> {
  const { stdout } = await execFileAsync(process.execPath, [MIGRATE_CHILD, service, dataDir, databaseUrl ?? '', String(startAt)], { timeout: 30_000 })
  return JSON.parse(stdout) as string[]
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`repositories on ${dialect}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'msa-repo-'))
    let pgDatabase: TestDatabase | undefined
    const open = () => openDatabase<Shop>({ name: 'shop', dataDir: dir, databaseUrl: pgDatabase?.url })
    let database: Database<Shop>

    before(async () => {
      if (dialect === 'postgres') pgDatabase = await createTestDatabase()
      database = open()
    })

    after(async () => {
      await database?.close()
      await pgDatabase?.drop()
      rmSync(dir, { recursive: true, force: true })
    })

    it('runs migrations safely when several replicas start at once', async () => {
      // Separate processes, as replicas are (node:sqlite blocks its thread while it waits for a lock).
      const startAt = Date.now() + 2000
      const applied = await Promise.all(['product', 'order', 'product', 'order', 'product'].map((service) => migrateInChild(service, dir, pgDatabase?.url, startAt)))
      // Each migration ran exactly once across the replicas.
      assert.deepEqual(applied.flat().sort(), ['0001_orders', '0001_products', '0002_order_idempotency', '0003_order_callers'])
      // Running them again is a no-op.
      assert.deepEqual(await migrate(database, 'product', productMigrations), [])
    })

    it('stores products with exact prices and reads them back', async () => {
      const products = new ProductRepository(database.db)
      const created = await products.create({ name: 'Pen', description: null, priceCents: 100_000_000_000 })
      const fetched = await products.get(created.id)
      assert.deepEqual(fetched, created)
      assert.equal(typeof fetched?.priceCents, 'number')
      assert.equal(await products.get('00000000-0000-4000-8000-000000000000'), undefined)
    })

    it('pages products in a stable order with no gaps or repeats, also for equal timestamps', async () => {
      const fixed = new Date('2026-01-01T00:00:00.000Z')
      const products = new ProductRepository(database.db, () => fixed)
      const ids = new Set<string>()
      for (let i = 0; i < 9; i++) ids.add((await products.create({ name: `P${i}`, description: 'd', priceCents: i })).id)
      const seen: string[] = []
      let after: { createdAt: string; id: string } | undefined
      for (let page = 0; page < 20; page++) {
        const result = await new ProductRepository(database.db).list(4, after)
        seen.push(...result.items.map((p) => p.id))
        if (!result.more) break
        after = result.last
      }
      assert.equal(new Set(seen).size, seen.length, 'no repeats')
      for (const id of ids) assert.ok(seen.includes(id), 'no gaps')
    })

    it('stores orders with amounts as integers', async () => {
      const orders = new OrderRepository(database.db)
      const created = await orders.create(null, {
        productId: '11111111-1111-4111-8111-111111111111',
        quantity: 10_000,
        unitPriceCents: 100_000_000_000,
        totalPriceCents: 1_000_000_000_000_000,
      })
      const fetched = await orders.get(null, created.id)
      assert.deepEqual(fetched, created)
      assert.equal(fetched?.totalPriceCents, 1_000_000_000_000_000)
      const listed = await orders.list(null, 10)
      assert.ok(listed.items.some((o) => o.id === created.id))
    })

    it('stores one order per Idempotency-Key, even when replicas race', async () => {
      // PostgreSQL: three pools, as three replicas. SQLite: one connection shared by concurrent
      // requests (node:sqlite blocks its thread on a lock, so in-process connections cannot wait
      // for each other; across processes BEGIN IMMEDIATE serialises them, as the migration test shows).
      const replicas = dialect === 'postgres' ? [database, open(), open()] : [database, database, database]
      try {
        const input = { productId: '11111111-1111-4111-8111-111111111111', quantity: 2, unitPriceCents: 150, totalPriceCents: 300 }
        const results = await Promise.all(replicas.map((replica) => new OrderRepository(replica.db).createIdempotent(null, 'race-key', 'hash-1', input)))
        const ids = new Set(results.map((r) => (r.kind === 'mismatch' ? 'mismatch' : r.order.id)))
        assert.equal(ids.size, 1, 'every replica answers with the same order')
        assert.equal(results.filter((r) => r.kind === 'created').length, 1)
        const stored = await database.db
          .selectFrom('orders')
          .select('id')
          .where('id', 'in', [...ids])
          .execute()
        assert.equal(stored.length, 1)
        const orders = new OrderRepository(database.db)
        assert.equal((await orders.createIdempotent(null, 'race-key', 'hash-2', input)).kind, 'mismatch')
        assert.equal((await orders.replay(null, 'race-key', 'hash-1'))?.kind, 'replayed')
        assert.equal(await orders.replay(null, 'unused-key', 'hash-1'), undefined)
      } finally {
        if (dialect === 'postgres') await Promise.all(replicas.slice(1).map((replica) => replica.close()))
      }
    })

    it('scopes orders to their caller: each lists and reads only its own, anonymous only anonymous ones', async () => {
      const orders = new OrderRepository(database.db)
      const input = { productId: '11111111-1111-4111-8111-111111111111', quantity: 1, unitPriceCents: 100, totalPriceCents: 100 }
      const alice = `alice-${randomUUID()}`
      const bob = `bob-${randomUUID()}`
      const mine = [await orders.create(alice, input), await orders.create(alice, input), await orders.create(alice, input)]
      const anonymous = await orders.create(null, input)
      assert.equal(mine[0]!.caller, alice)
      assert.equal(anonymous.caller, null)
      // Alice's, a page at a time: all of hers and nothing else.
      const seen: string[] = []
      let after: { createdAt: string; id: string } | undefined
      for (let page = 0; page < 10; page++) {
        const result = await orders.list(alice, 2, after)
        seen.push(...result.items.map((o) => o.id))
        if (!result.more) break
        after = result.last
      }
      assert.deepEqual(seen.sort(), mine.map((o) => o.id).sort())
      assert.deepEqual((await orders.list(bob, 100)).items, [])
      const anonymousIds = (await orders.list(null, 100)).items.map((o) => o.id)
      assert.ok(anonymousIds.includes(anonymous.id))
      for (const order of mine) assert.ok(!anonymousIds.includes(order.id), "an anonymous list holds no subject's order")
      // Another caller's order reads as an unknown one.
      assert.deepEqual(await orders.get(alice, mine[0]!.id), mine[0])
      assert.equal(await orders.get(bob, mine[0]!.id), undefined)
      assert.equal(await orders.get(null, mine[0]!.id), undefined)
      assert.equal(await orders.get(alice, anonymous.id), undefined)
    })

    it('scopes an Idempotency-Key to its caller: one key from two callers makes two orders', async () => {
      const orders = new OrderRepository(database.db)
      const input = { productId: '11111111-1111-4111-8111-111111111111', quantity: 3, unitPriceCents: 10, totalPriceCents: 30 }
      const key = `shared-${randomUUID()}`
      const alice = `alice-${randomUUID()}`
      const bob = `bob-${randomUUID()}`
      const first = await orders.createIdempotent(alice, key, 'hash-a', input)
      const second = await orders.createIdempotent(bob, key, 'hash-b', input)
      const third = await orders.createIdempotent(null, key, 'hash-c', input)
      const results: IdempotentResult[] = [first, second, third]
      assert.deepEqual(
        results.map((r) => r.kind),
        ['created', 'created', 'created'],
      )
      const ids = results.map((r) => (r.kind === 'mismatch' ? '' : r.order.id))
      assert.equal(new Set(ids).size, 3)
      // Each caller replays its own, and only its own.
      const again = await orders.createIdempotent(alice, key, 'hash-a', input)
      assert.equal(again.kind, 'replayed')
      assert.equal(again.kind === 'replayed' && again.order.id, ids[0])
      assert.equal((await orders.replay(bob, key, 'hash-b'))?.kind, 'replayed')
      assert.equal((await orders.replay(bob, key, 'hash-a'))?.kind, 'mismatch')
      assert.equal(await orders.replay(`carol-${randomUUID()}`, key, 'hash-a'), undefined)
    })

    it('sees writes made through another connection (replicas share data)', async () => {
      const other = open()
      try {
        const created = await new ProductRepository(other.db).create({ name: 'Shared', description: null, priceCents: 5 })
        assert.deepEqual(await new ProductRepository(database.db).get(created.id), created)
      } finally {
        await other.close()
      }
    })

    it('answers ping while the database is reachable', async () => {
      await database.ping()
    })
  })
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`upgrading the order tables on ${dialect}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'msa-upgrade-'))
    let pgDatabase: TestDatabase | undefined
    let database: Database<OrderDatabase>

    before(async () => {
      if (dialect === 'postgres') pgDatabase = await createTestDatabase()
      database = openDatabase<OrderDatabase>({ name: 'order', dataDir: dir, databaseUrl: pgDatabase?.url })
    })

    after(async () => {
      await database?.close()
      await pgDatabase?.drop()
      rmSync(dir, { recursive: true, force: true })
    })

    it('keeps existing orders and Idempotency-Keys as anonymous ones', async () => {
      const { '0003_order_callers': _, ...earlier } = orderMigrations
      assert.deepEqual(await migrate(database, 'order', earlier), ['0001_orders', '0002_order_idempotency'])
      const id = randomUUID()
      const createdAt = new Date().toISOString()
      await sql`insert into orders (id, product_id, quantity, unit_price_cents, total_price_cents, status, created_at)
        values (${id}, '11111111-1111-4111-8111-111111111111', 2, 150, 300, 'confirmed', ${createdAt})`.execute(database.db)
      await sql`insert into order_idempotency ("key", request_hash, order_id, created_at) values ('old-key', 'old-hash', ${id}, ${createdAt})`.execute(database.db)
      assert.deepEqual(await migrate(database, 'order', orderMigrations), ['0003_order_callers'])
      const orders = new OrderRepository(database.db)
      const old = await orders.get(null, id)
      assert.equal(old?.caller, null)
      assert.equal(old?.totalPriceCents, 300)
      assert.ok((await orders.list(null, 100)).items.some((o) => o.id === id))
      const replayed = await orders.replay(null, 'old-key', 'old-hash')
      assert.equal(replayed?.kind === 'replayed' && replayed.order.id, id)
      // The key was anonymous: a subject using it makes its own order.
      const input = { productId: '11111111-1111-4111-8111-111111111111', quantity: 2, unitPriceCents: 150, totalPriceCents: 300 }
      assert.equal((await orders.createIdempotent('alice', 'old-key', 'old-hash', input)).kind, 'created')
    })
  })
}

describe('a PostgreSQL connection that breaks', () => {
  let pgDatabase: TestDatabase
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>
  before(async () => {
    pgDatabase = await createTestDatabase()
    proxy = await startTcpProxy(5432)
  })
  after(async () => {
    await proxy?.close()
    await pgDatabase?.drop()
  })

  // pg emits 'error' on a client whose connection ends; while a caller holds the client between
  // queries nobody else listens, and an unheard 'error' would kill the process (and this test).
  it('is reported, not thrown, even while a caller holds it between queries; the pool recovers', async () => {
    const url = new URL(pgDatabase.url)
    url.port = String(proxy.port)
    const lost: Error[] = []
    const database = openDatabase<Shop>({ name: 'shop', dataDir: tmpdir(), databaseUrl: url.toString(), onConnectionLost: (error) => lost.push(error) })
    try {
      await database.ping()
      await database.db.connection().execute(async (held) => {
        await sql`select 1`.execute(held)
        await proxy.cut()
        await waitFor(() => lost.length > 0, { timeoutMs: 5000, what: 'the broken connection to be reported' })
        await assert.rejects(sql`select 1`.execute(held))
      })
      assert.match(lost[0]!.message, /terminated/i)
      await assert.rejects(database.ping(), 'unreachable while cut')
      await proxy.restore()
      await waitFor(
        async () =>
          database.ping().then(
            () => true,
            () => false,
          ),
        { timeoutMs: 5000, what: 'the pool to reconnect' },
      )
    } finally {
      await database.close()
    }
  })
})
