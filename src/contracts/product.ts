import { Type, type Static } from 'typebox'

// The product as the product service answers it, and as other services (the order service, which
// prices orders from it) read it. Owned by neither service: both import it from here.

export const ProductId = Type.String({ format: 'uuid', description: 'Product id (UUID)' })

export const Product = Type.Object({
  id: ProductId,
  name: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  price: Type.Number({ description: 'Decimal amount with at most 2 decimal places' }),
  created_at: Type.String({ format: 'date-time' }),
})

export type Product = Static<typeof Product>
