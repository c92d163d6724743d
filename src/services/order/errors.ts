import { defineErrors } from '../../http/errors.ts'

export const orderError = defineErrors({
  ORDER_NOT_FOUND: { status: 404, title: 'Order not found' },
  UNKNOWN_PRODUCT: { status: 422, title: 'Order refers to an unknown product' },
  IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'Idempotency-Key reused with a different request' },
})
