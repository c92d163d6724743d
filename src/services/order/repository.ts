import { randomUUID } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { Migration } from 'kysely/migration'
import type { Position } from '../pagination.ts'

export interface OrdersTable {
  id: string
  product_id: string
  quantity: number
  unit_price_cents: number
  total_price_cents: number
  status: 'confirmed'
  created_at: string
}

export interface OrderDatabase {
  orders: OrdersTable
}

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
    const row: OrdersTable = {
      id: randomUUID(),
      product_id: input.productId,
      quantity: input.quantity,
      unit_price_cents: input.unitPriceCents,
      total_price_cents: input.totalPriceCents,
      status: 'confirmed',
      created_at: this.#clock().toISOString(),
    }
    await this.#db.insertInto('orders').values(row).execute()
    return toRecord(row)
  }

  async get(id: string): Promise<OrderRecord | undefined> {
    const row = await this.#db.selectFrom('orders').select(COLUMNS).where('id', '=', id).executeTakeFirst()
    return row ? toRecord(row) : undefined
  }

  async list(limit: number, after?: Position): Promise<{ items: OrderRecord[]; last?: Position; more: boolean }> {
    let query = this.#db.selectFrom('orders').select(COLUMNS).orderBy('created_at').orderBy('id').limit(limit + 1)
    if (after) {
      query = query.where((eb) =>
        eb.or([eb('created_at', '>', after.createdAt), eb.and([eb('created_at', '=', after.createdAt), eb('id', '>', after.id)])]),
      )
    }
    const rows = await query.execute()
    const items = rows.slice(0, limit).map(toRecord)
    const lastItem = items.at(-1)
    return { items, more: rows.length > limit, ...(lastItem ? { last: { createdAt: lastItem.createdAt, id: lastItem.id } } : {}) }
  }
}
