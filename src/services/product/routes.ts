import { Type } from 'typebox'
import type { App } from '../../http/app.ts'
import { httpError } from '../../http/errors.ts'
import { productError } from './errors.ts'
import { fromCents, toCents } from '../../contracts/money.ts'
import { listPage, PageQuery } from '../../http/pagination.ts'
import type { ProductRecord, ProductRepository } from './repository.ts'
import { Product } from '../../contracts/product.ts'
import { CreateProductBody, ProductParams } from './schema.ts'

export const ProductList = Type.Object({ items: Type.Array(Product), next_cursor: Type.Union([Type.String(), Type.Null()]) })

export function toProduct(record: ProductRecord): Product {
  return {
    id: record.id,
    name: record.name,
    description: record.description,
    price: fromCents(record.priceCents),
    created_at: record.createdAt,
  }
}

export function registerProductRoutes(app: App, repository: ProductRepository): void {
  app.get(
    '/products',
    { schema: { tags: ['products'], summary: 'List products, oldest first, a page at a time', querystring: PageQuery, response: { 200: ProductList } } },
    async (request) => listPage(request.query, (limit, after) => repository.list(limit, after), toProduct),
  )

  app.get(
    '/products/:id',
    { schema: { tags: ['products'], summary: 'Get a product', params: ProductParams, response: { 200: Product } }, config: { problems: [productError.kind('PRODUCT_NOT_FOUND')] } },
    async (request) => {
      const record = await repository.get(request.params.id)
      if (!record) throw productError('PRODUCT_NOT_FOUND', `No product with id ${request.params.id}`)
      return toProduct(record)
    },
  )

  app.post('/products', { schema: { tags: ['products'], summary: 'Create a product', body: CreateProductBody, response: { 201: Product } } }, async (request, reply) => {
    const { name, description, price } = request.body
    const priceCents = toCents(price)
    // The schema already refused anything else; this keeps the types honest.
    if (priceCents === undefined) throw httpError('VALIDATION_FAILED', 'body/price: is not a valid amount')
    const record = await repository.create({ name, description: description ?? null, priceCents })
    return reply.code(201).header('location', `/products/${record.id}`).send(toProduct(record))
  })
}
