import { Type, type Static } from 'typebox'
import { Amount } from '../../contracts/money.ts'
import { ProductId } from '../../contracts/product.ts'

export const CreateProductBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    price: Amount,
    description: Type.Optional(Type.String({ maxLength: 2000 })),
  },
  { additionalProperties: false },
)

export const ProductParams = Type.Object({ id: ProductId })

export type CreateProductBody = Static<typeof CreateProductBody>
