import { Type, type Static } from 'typebox'
import { Amount } from '../money.ts'

export const ProductId = Type.String({ format: 'uuid', description: 'Product id (UUID)' })

export const CreateProductBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    price: Amount,
    description: Type.Optional(Type.String({ maxLength: 2000 })),
  },
  { additionalProperties: false },
)

export const Product = Type.Object({
  id: ProductId,
  name: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  price: Type.Number({ description: 'Decimal amount with at most 2 decimal places' }),
  created_at: Type.String({ format: 'date-time' }),
})

export const ProductParams = Type.Object({ id: ProductId })

export type CreateProductBody = Static<typeof CreateProductBody>
export type Product = Static<typeof Product>
