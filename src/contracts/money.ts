import { Type } from 'typebox'

// Money is exact: amounts travel as decimals with at most two places and are integer minor
// units (cents) everywhere inside, so 3 x 0.10 is 0.30, never 0.30000000000000004.

/** Largest accepted price: 1,000,000,000.00. Times the largest quantity it stays a safe integer. */
export const MAX_PRICE_CENTS = 100_000_000_000
export const MAX_QUANTITY = 10_000

const DECIMAL = /^(0|[1-9]\d{0,9})(\.\d{1,2})?$/

/** Cents for a non-negative decimal amount (number or string) with at most 2 places; else undefined. */
export function toCents(value: unknown): number | undefined {
  let cents: number
  if (typeof value === 'string') {
    if (!DECIMAL.test(value)) return undefined
    const [whole, fraction = ''] = value.split('.')
    cents = Number(whole) * 100 + Number(fraction.padEnd(2, '0'))
  } else if (typeof value === 'number' && Number.isFinite(value) && value >= 0) {
    cents = Math.round(value * 100)
    // Exactly the double nearest to cents/100, i.e. the client wrote at most two decimals.
    if (cents / 100 !== value) return undefined
  } else {
    return undefined
  }
  return Number.isSafeInteger(cents) && cents <= MAX_PRICE_CENTS ? cents : undefined
}

/** The wire form of an amount: a JSON number whose shortest form has at most two decimals. */
export function fromCents(cents: number): number {
  if (!Number.isSafeInteger(cents)) throw new RangeError(`cents must be a safe integer, got ${cents}`)
  return cents / 100
}

export function multiplyCents(cents: number, quantity: number): number {
  const total = cents * quantity
  if (!Number.isSafeInteger(total)) throw new RangeError(`amount overflow: ${cents} x ${quantity}`)
  return total
}

/** Schema for an amount on the wire: 12.5, 12.50 or "12.50"; at most 2 decimals; 0 to 1e9. */
export const Amount = Type.Refine(
  Type.Union([Type.Number({ minimum: 0 }), Type.String({ maxLength: 16 })], {
    description: 'Decimal amount with at most 2 decimal places, from 0 to 1000000000, as a number or a string',
    examples: [9.99, '9.99'],
  }),
  (value: unknown) => toCents(value) !== undefined,
  () => 'must be a decimal amount from 0 to 1000000000 with at most 2 decimal places',
)
