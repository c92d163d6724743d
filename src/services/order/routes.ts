import type { App } from '../../platform/app.ts'
import { AppError } from '../../platform/errors.ts'
import { fromCents, multiplyCents } from '../money.ts'
import { decodeCursor, DEFAULT_PAGE_SIZE, encodeCursor, PageQuery } from '../pagination.ts'
import type { ProductClient } from './product-client.ts'
import type { OrderRecord, OrderRepository } from './repository.ts'
import { CreateOrderBody, OrderParams, type Order } from './schema.ts'

export function toOrder(record: OrderRecord): Order {
  return {
    id: record.id,
    product_id: record.productId,
    quantity: record.quantity,
    unit_price: fromCents(record.unitPriceCents),
    total_price: fromCents(record.totalPriceCents),
    status: record.status,
    created_at: record.createdAt,
  }
}

export function registerOrderRoutes(app: App, repository: OrderRepository, products: ProductClient): void {
  app.get('/orders', { schema: { querystring: PageQuery } }, async (request) => {
    const limit = request.query.limit ?? DEFAULT_PAGE_SIZE
    const after = request.query.cursor === undefined ? undefined : decodeCursor(request.query.cursor)
    const page = await repository.list(limit, after)
    return { items: page.items.map(toOrder), next_cursor: page.more && page.last ? encodeCursor(page.last) : null }
  })

  app.get('/orders/:id', { schema: { params: OrderParams } }, async (request) => {
    const record = await repository.get(request.params.id)
    if (!record) throw new AppError('ORDER_NOT_FOUND', `No order with id ${request.params.id}`)
    return toOrder(record)
  })

  app.post('/orders', { schema: { body: CreateOrderBody } }, async (request, reply) => {
    const { product_id: productId, quantity } = request.body
    const product = await products.get(productId)
    const record = await repository.create({
      productId,
      quantity,
      unitPriceCents: product.priceCents,
      totalPriceCents: multiplyCents(product.priceCents, quantity),
    })
    return reply.code(201).header('location', `/orders/${record.id}`).send(toOrder(record))
  })
}
