import { createHash } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { App } from '../../http/app.ts'
import { httpError } from '../../http/errors.ts'
import { isSubject, SUBJECT_HEADER } from '../../contracts/auth.ts'
import { orderError } from './errors.ts'
import { upstreamError } from '../../runtime/upstream.ts'
import { fromCents, multiplyCents } from '../../contracts/money.ts'
import { listPage, PageQuery } from '../../http/pagination.ts'
import type { ProductClient } from './product-client.ts'
import type { Caller, OrderRecord, OrderRepository } from './repository.ts'
import { CreateOrderBody, Order, OrderParams } from './schema.ts'

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

const OrderList = Type.Object({ items: Type.Array(Order), next_cursor: Type.Union([Type.String(), Type.Null()]) })

const OrderHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[\\x21-\\x7e]+$',
      description: '1 to 255 visible ASCII characters; makes a retried POST safe: the same key and body return the first order',
    }),
  ),
})

const hashRequest = (productId: string, quantity: number) =>
  createHash('sha256')
    .update(JSON.stringify({ product_id: productId, quantity }))
    .digest('hex')

/**
 * Whose request this is: the subject the gateway verified (it removes the header from what
 * clients send), or null for an anonymous request. Not in the route schemas, so that the
 * documents clients read do not offer it as a parameter. A malformed one is refused rather than
 * taken as anonymous: it means a caller inside the network is broken, not that nobody called.
 */
function callerOf(request: FastifyRequest): Caller {
  const subject = request.headers[SUBJECT_HEADER]
  if (subject === undefined) return null
  if (isSubject(subject)) return subject
  throw httpError('VALIDATION_FAILED', `headers/${SUBJECT_HEADER}: must be 1 to 255 visible ASCII characters`, {
    errors: [{ path: `headers/${SUBJECT_HEADER}`, message: 'must be 1 to 255 visible ASCII characters' }],
  })
}

/** What placing an order may answer besides a refused request: it prices the order from the product service. */
const PLACE_ORDER_PROBLEMS = [
  orderError.kind('UNKNOWN_PRODUCT'),
  orderError.kind('IDEMPOTENCY_KEY_REUSED'),
  upstreamError.kind('NO_HEALTHY_INSTANCE'),
  upstreamError.kind('UPSTREAM_UNAVAILABLE'),
  upstreamError.kind('UPSTREAM_FAILED'),
  upstreamError.kind('UPSTREAM_TIMEOUT'),
]

const keyReused = () => orderError('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was used for a different order request')

export function registerOrderRoutes(app: App, repository: OrderRepository, products: ProductClient): void {
  app.get(
    '/orders',
    { schema: { tags: ['orders'], summary: 'List orders, oldest first, a page at a time', querystring: PageQuery, response: { 200: OrderList } } },
    async (request) => {
      const caller = callerOf(request)
      return listPage(request.query, (limit, after) => repository.list(caller, limit, after), toOrder)
    },
  )

  app.get(
    '/orders/:id',
    { schema: { tags: ['orders'], summary: 'Get an order', params: OrderParams, response: { 200: Order } }, config: { problems: [orderError.kind('ORDER_NOT_FOUND')] } },
    async (request) => {
      // Another caller's order is answered as an unknown one: its existence is not the caller's to learn.
      const record = await repository.get(callerOf(request), request.params.id)
      if (!record) throw orderError('ORDER_NOT_FOUND', `No order with id ${request.params.id}`)
      return toOrder(record)
    },
  )

  app.post(
    '/orders',
    {
      schema: { tags: ['orders'], summary: 'Place an order, priced from the product service', body: CreateOrderBody, headers: OrderHeaders, response: { 201: Order } },
      config: { problems: PLACE_ORDER_PROBLEMS },
    },
    async (request, reply) => {
      const { product_id: productId, quantity } = request.body
      const caller = callerOf(request)
      const key = request.headers['idempotency-key']
      const created = (record: OrderRecord, replayed: boolean) =>
        reply
          .code(201)
          .header('location', `/orders/${record.id}`)
          .header('idempotent-replayed', replayed ? 'true' : 'false')
          .send(toOrder(record))
      const requestHash = key === undefined ? '' : hashRequest(productId, quantity)
      if (key !== undefined) {
        // A retry of a request we already served: answer it again without calling anyone. Keys are
        // the caller's own: another caller's use of the same key is another order.
        const earlier = await repository.replay(caller, key, requestHash)
        if (earlier?.kind === 'mismatch') throw keyReused()
        if (earlier) return created(earlier.order, true)
      }
      // The request's id (the caller's X-Request-Id, or a new UUID) goes on to the product service,
      // so that one order's log lines share it on every hop. An explicit argument rather than the
      // span context: request ids must cross hops with tracing off too.
      const product = await products.get(productId, { requestId: request.id })
      const input = { productId, quantity, unitPriceCents: product.priceCents, totalPriceCents: multiplyCents(product.priceCents, quantity) }
      if (key === undefined) return created(await repository.create(caller, input), false)
      const result = await repository.createIdempotent(caller, key, requestHash, input)
      if (result.kind === 'mismatch') throw keyReused()
      return created(result.order, result.kind === 'replayed')
    },
  )
}
