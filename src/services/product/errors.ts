import { defineErrors } from '../../http/errors.ts'

export const productError = defineErrors({
  PRODUCT_NOT_FOUND: { status: 404, title: 'Product not found' },
})
