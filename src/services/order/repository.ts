import { randomUUID } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { Migration } from 'kysely/migration'
import { isUniqueViolation } from '../../db/errors.ts'
import { toPage, type Position } from '../../http/pagination.ts'

export interface OrdersTable {
  id: string
  product_id: string
  quantity: number
  unit_price_cents: number
  total_price_cents: number
  status: 'confirmed'
  created_at: string
}

export interface OrderIdempotencyTable {
  key: string
  request_hash: string
  order_id: string
  created_at: string
}

export interface OrderDatabase {
  orders: OrdersTable
  order_idempotency: OrderIdempotencyTable
}

export type IdempotentResult = { kind: 'created'; order: OrderRecord } | { kind: 'replayed'; order: OrderRecord } | { kind: 'mismatch' }

export interface OrderRecord {
  id: string
  productId: string
  quantity: number
  unitPriceCents: number
  totalPriceCents: number
  status: 'confirmed'
  createdAt: string
}

export const orderMigrations: Record<string, Migration> = {
  '0001_orders': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('orders')
        .addColumn('id', 'varchar(36)', (col) => col.primaryKey())
        .addColumn('product_id', 'varchar(36)', (col) => col.notNull())
        .addColumn('quantity', 'integer', (col) => col.notNull())
        .addColumn('unit_price_cents', 'bigint', (col) => col.notNull())
        .addColumn('total_price_cents', 'bigint', (col) => col.notNull())
        .addColumn('status', 'varchar(16)', (col) => col.notNull())
        .addColumn('created_at', 'varchar(32)', (col) => col.notNull())
        .execute()
      await db.schema.createIndex('orders_created_at_id').on('orders').columns(['created_at', 'id']).execute()
    },
  },
  '0002_order_idempotency': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('order_idempotency')
        .addColumn('key', 'varchar(255)', (col) => col.primaryKey())
        .addColumn('request_hash', 'varchar(64)', (col) => col.notNull())
        .addColumn('order_id', 'varchar(36)', (col) => col.notNull())
        .addColumn('created_at', 'varchar(32)', (col) => col.notNull())
        .execute()
    },
  },
}

const toRecord = (row: OrdersTable): OrderRecord => ({
  id: row.id,
  productId: row.product_id,
  quantity: Number(row.quantity),
  unitPriceCents: Number(row.unit_price_cents),
  totalPriceCents: Number(row.total_price_cents),
  status: row.status,
  createdAt: row.created_at,
})

const COLUMNS = ['id', 'product_id', 'quantity', 'unit_price_cents', 'total_price_cents', 'status', 'created_at'] as const

export class OrderRepository {
  readonly #db: Kysely<OrderDatabase>
  readonly #clock: () => Date

  constructor(db: Kysely<OrderDatabase>, clock: () => Date = () => new Date()) {
    this.#db = db
    this.#clock = clock
  }

  async create(input: { productId: string; quantity: number; unitPriceCents: number; totalPriceCents: number }): Promise<OrderRecord> {
    const row = this.#row(input)
    await this.#db.insertInto('orders').values(row).execute()
    return toRecord(row)
  }

  #row(input: { productId: string; quantity: number; unitPriceCents: number; totalPriceCents: number }): OrdersTable {
    return {
      id: randomUUID(),
      product_id: input.productId,
      quantity: input.quantity,
      unit_price_cents: input.unitPriceCents,
      total_price_cents: input.totalPriceCents,
      status: 'confirmed',
      created_at: this.#clock().toISOString(),
    }
  }

  /**
   * Stores the order and its Idempotency-Key in one transaction. When another request (on any
   * replica) stored the key first, this one's order is rolled back and the first order returned,
   * or `mismatch` if that key was used for a different request.
   */
  async createIdempotent(
    key: string,
    requestHash: string,
    input: { productId: string; quantity: number; unitPriceCents: number; totalPriceCents: number },
  ): Promise<IdempotentResult> {
    const existing = await this.replay(key, requestHash)
    if (existing) return existing
    const row = this.#row(input)
    try {
      await this.#db.transaction().execute(async (trx) => {
        await trx.insertInto('orders').values(row).execute()
        await trx.insertInto('order_idempotency').values({ key, request_hash: requestHash, order_id: row.id, created_at: row.created_at }).execute()
      })
      return { kind: 'created', order: toRecord(row) }
    } catch (error) {
      if (!isUniqueViolation(error)) throw error
      const winner = await this.replay(key, requestHash)
      if (!winner) throw error
      return winner
    }
  }

  /** The outcome of an earlier request with this key, if there was one. */
  async replay(key: string, requestHash: string): Promise<IdempotentResult | undefined> {
    const entry = await this.#db.selectFrom('order_idempotency').select(['request_hash', 'order_id']).where('key', '=', key).executeTakeFirst()
    if (!entry) return undefined
    if (entry.request_hash !== requestHash) return { kind: 'mismatch' }
    const order = await this.get(entry.order_id)
    return order ? { kind: 'replayed', order } : undefined
  }

  async get(id: string): Promise<OrderRecord | undefined> {
    const row = await this.#db.selectFrom('orders').select(COLUMNS).where('id', '=', id).executeTakeFirst()
    return row ? toRecord(row) : undefined
  }

  async list(limit: number, after?: Position): Promise<{ items: OrderRecord[]; last?: Position; more: boolean }> {
    let query = this.#db
      .selectFrom('orders')
      .select(COLUMNS)
      .orderBy('created_at')
      .orderBy('id')
      .limit(limit + 1)
    if (after) {
      query = query.where((eb) => eb.or([eb('created_at', '>', after.createdAt), eb.and([eb('created_at', '=', after.createdAt), eb('id', '>', after.id)])]))
    }
    return toPage(await query.execute(), limit, toRecord)
  }
}
