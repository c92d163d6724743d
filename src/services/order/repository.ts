import { randomUUID } from 'node:crypto'
import { type Kysely, sql } from 'kysely'
import type { Migration } from 'kysely/migration'
import { isUniqueViolation } from '../../db/errors.ts'
import { toPage, type Position } from '../../http/pagination.ts'

/**
 * Who placed an order: the subject the gateway verified, or null for an anonymous request (the
 * gateway without authentication, or a caller inside the network). Every read and write is
 * scoped to one caller: a subject sees only its own orders, and anonymous requests only
 * anonymous ones.
 */
export type Caller = string | null

export interface OrdersTable {
  id: string
  product_id: string
  quantity: number
  unit_price_cents: number
  total_price_cents: number
  status: 'confirmed'
  created_at: string
  caller: string | null
}

/** One Idempotency-Key of one caller; `caller` is '' for anonymous requests (a key must be NOT NULL to be unique). */
export interface OrderIdempotencyKeysTable {
  caller: string
  key: string
  request_hash: string
  order_id: string
  created_at: string
}

export interface OrderDatabase {
  orders: OrdersTable
  order_idempotency_keys: OrderIdempotencyKeysTable
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
  caller: Caller
}

export interface OrderInput {
  productId: string
  quantity: number
  unitPriceCents: number
  totalPriceCents: number
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
  // Orders get their caller, and Idempotency-Keys become unique per caller. SQLite cannot change a
  // primary key in place, so the keys move to a new table keyed by (caller, key); the existing
  // ones, all from anonymous requests, come along. The old table stays (unused) so that replicas
  // still running the previous version keep working during a rolling upgrade; a later migration
  // may drop it.
  '0003_order_callers': {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('orders').addColumn('caller', 'varchar(255)').execute()
      // Every list is one caller's, oldest first.
      await db.schema.createIndex('orders_caller_created_at_id').on('orders').columns(['caller', 'created_at', 'id']).execute()
      await db.schema
        .createTable('order_idempotency_keys')
        .addColumn('caller', 'varchar(255)', (col) => col.notNull())
        .addColumn('key', 'varchar(255)', (col) => col.notNull())
        .addColumn('request_hash', 'varchar(64)', (col) => col.notNull())
        .addColumn('order_id', 'varchar(36)', (col) => col.notNull())
        .addColumn('created_at', 'varchar(32)', (col) => col.notNull())
        .addPrimaryKeyConstraint('order_idempotency_keys_pkey', ['caller', 'key'])
        .execute()
      await sql`insert into order_idempotency_keys (caller, "key", request_hash, order_id, created_at)
        select '', "key", request_hash, order_id, created_at from order_idempotency`.execute(db)
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
  caller: row.caller,
})

const COLUMNS = ['id', 'product_id', 'quantity', 'unit_price_cents', 'total_price_cents', 'status', 'created_at', 'caller'] as const

/** The caller as the idempotency table stores it. Subjects are never empty, so '' is nobody's. */
const keyScope = (caller: Caller): string => caller ?? ''

export class OrderRepository {
  readonly #db: Kysely<OrderDatabase>
  readonly #clock: () => Date

  constructor(db: Kysely<OrderDatabase>, clock: () => Date = () => new Date()) {
    this.#db = db
    this.#clock = clock
  }

  async create(caller: Caller, input: OrderInput): Promise<OrderRecord> {
    const row = this.#row(caller, input)
    await this.#db.insertInto('orders').values(row).execute()
    return toRecord(row)
  }

  #row(caller: Caller, input: OrderInput): OrdersTable {
    return {
      id: randomUUID(),
      product_id: input.productId,
      quantity: input.quantity,
      unit_price_cents: input.unitPriceCents,
      total_price_cents: input.totalPriceCents,
      status: 'confirmed',
      created_at: this.#clock().toISOString(),
      caller,
    }
  }

  /**
   * Stores the order and the caller's Idempotency-Key in one transaction. When another request (on
   * any replica) stored the same caller's key first, this one's order is rolled back and the first
   * order returned, or `mismatch` if that key was used for a different request. Another caller's
   * use of the same key is another key.
   */
  async createIdempotent(caller: Caller, key: string, requestHash: string, input: OrderInput): Promise<IdempotentResult> {
    const existing = await this.replay(caller, key, requestHash)
    if (existing) return existing
    const row = this.#row(caller, input)
    try {
      await this.#db.transaction().execute(async (trx) => {
        await trx.insertInto('orders').values(row).execute()
        await trx
          .insertInto('order_idempotency_keys')
          .values({ caller: keyScope(caller), key, request_hash: requestHash, order_id: row.id, created_at: row.created_at })
          .execute()
      })
      return { kind: 'created', order: toRecord(row) }
    } catch (error) {
      if (!isUniqueViolation(error)) throw error
      const winner = await this.replay(caller, key, requestHash)
      if (!winner) throw error
      return winner
    }
  }

  /** The outcome of the caller's earlier request with this key, if there was one. */
  async replay(caller: Caller, key: string, requestHash: string): Promise<IdempotentResult | undefined> {
    const entry = await this.#db
      .selectFrom('order_idempotency_keys')
      .select(['request_hash', 'order_id'])
      .where('caller', '=', keyScope(caller))
      .where('key', '=', key)
      .executeTakeFirst()
    if (!entry) return undefined
    if (entry.request_hash !== requestHash) return { kind: 'mismatch' }
    const order = await this.get(caller, entry.order_id)
    return order ? { kind: 'replayed', order } : undefined
  }

  /** The caller's order with this id; another caller's is undefined, as an unknown id is. */
  async get(caller: Caller, id: string): Promise<OrderRecord | undefined> {
    const row = await this.#db
      .selectFrom('orders')
      .select(COLUMNS)
      .where('id', '=', id)
      .where((eb) => (caller === null ? eb('caller', 'is', null) : eb('caller', '=', caller)))
      .executeTakeFirst()
    return row ? toRecord(row) : undefined
  }

  /** The caller's orders, oldest first. */
  async list(caller: Caller, limit: number, after?: Position): Promise<{ items: OrderRecord[]; last?: Position; more: boolean }> {
    let query = this.#db
      .selectFrom('orders')
      .select(COLUMNS)
      .where((eb) => (caller === null ? eb('caller', 'is', null) : eb('caller', '=', caller)))
      .orderBy('created_at')
      .orderBy('id')
      .limit(limit + 1)
    if (after) {
      query = query.where((eb) => eb.or([eb('created_at', '>', after.createdAt), eb.and([eb('created_at', '=', after.createdAt), eb('id', '>', after.id)])]))
    }
    return toPage(await query.execute(), limit, toRecord)
  }
}
