import { randomUUID } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { Migration } from 'kysely/migration'
import { toPage, type Position } from '../../http/pagination.ts'

export interface ProductsTable {
  id: string
  name: string
  description: string | null
  price_cents: number
  created_at: string
}

export interface ProductDatabase {
  products: ProductsTable
}

export interface ProductRecord {
  id: string
  name: string
  description: string | null
  priceCents: number
  createdAt: string
}

export const productMigrations: Record<string, Migration> = {
  '0001_products': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('products')
        .addColumn('id', 'varchar(36)', (col) => col.primaryKey())
        .addColumn('name', 'varchar(200)', (col) => col.notNull())
        .addColumn('description', 'text')
        .addColumn('price_cents', 'bigint', (col) => col.notNull())
        .addColumn('created_at', 'varchar(32)', (col) => col.notNull())
        .execute()
      await db.schema.createIndex('products_created_at_id').on('products').columns(['created_at', 'id']).execute()
    },
  },
}

type Row = ProductsTable

const toRecord = (row: Row): ProductRecord => ({
  id: row.id,
  name: row.name,
  description: row.description,
  priceCents: Number(row.price_cents),
  createdAt: row.created_at,
})

export class ProductRepository {
  readonly #db: Kysely<ProductDatabase>
  readonly #clock: () => Date

  constructor(db: Kysely<ProductDatabase>, clock: () => Date = () => new Date()) {
    this.#db = db
    this.#clock = clock
  }

  async create(input: { name: string; description: string | null; priceCents: number }): Promise<ProductRecord> {
    const row: Row = {
      id: randomUUID(),
      name: input.name,
      description: input.description,
      price_cents: input.priceCents,
      created_at: this.#clock().toISOString(),
    }
    await this.#db.insertInto('products').values(row).execute()
    return toRecord(row)
  }

  async get(id: string): Promise<ProductRecord | undefined> {
    const row = await this.#db.selectFrom('products').select(['id', 'name', 'description', 'price_cents', 'created_at']).where('id', '=', id).executeTakeFirst()
    return row ? toRecord(row) : undefined
  }

  /** Oldest first, `limit` at a time, after `after`. */
  async list(limit: number, after?: Position): Promise<{ items: ProductRecord[]; last?: Position; more: boolean }> {
    let query = this.#db
      .selectFrom('products')
      .select(['id', 'name', 'description', 'price_cents', 'created_at'])
      .orderBy('created_at')
      .orderBy('id')
      .limit(limit + 1)
    if (after) {
      query = query.where((eb) => eb.or([eb('created_at', '>', after.createdAt), eb.and([eb('created_at', '=', after.createdAt), eb('id', '>', after.id)])]))
    }
    return toPage(await query.execute(), limit, toRecord)
  }
}
