import { Type, type Static } from 'typebox'
import { MAX_QUANTITY } from '../../contracts/money.ts'
import { ProductId } from '../../contracts/product.ts'

export const OrderId = Type.String({ format: 'uuid', description: 'Order id (UUID)' })

export const CreateOrderBody = Type.Object(
  {
    product_id: ProductId,
    quantity: Type.Integer({ minimum: 1, maximum: MAX_QUANTITY }),
  },
  { additionalProperties: false },
)

export const OrderStatus = Type.Literal('confirmed')

export const Order = Type.Object({
  id: OrderId,
  product_id: ProductId,
  quantity: Type.Integer(),
  unit_price: Type.Number({ description: 'Decimal amount with at most 2 decimal places' }),
  total_price: Type.Number({ description: 'unit_price x quantity, exact' }),
  status: OrderStatus,
  created_at: Type.String({ format: 'date-time' }),
})

export const OrderParams = Type.Object({ id: OrderId })

export type CreateOrderBody = Static<typeof CreateOrderBody>
export type Order = Static<typeof Order>
