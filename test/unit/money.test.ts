import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { fromCents, MAX_PRICE_CENTS, multiplyCents, toCents } from '../../src/contracts/money.ts'

describe('money', () => {
  it('parses numbers and strings with at most two decimals into cents', () => {
    assert.equal(toCents(0.1), 10)
    assert.equal(toCents(0.29), 29)
    assert.equal(toCents(1.005 * 0 + 19.99), 1999)
    assert.equal(toCents(12), 1200)
    assert.equal(toCents('0.10'), 10)
    assert.equal(toCents('12.5'), 1250)
    assert.equal(toCents('0'), 0)
    assert.equal(toCents(1_000_000_000), MAX_PRICE_CENTS)
  })

  it('refuses more than two decimals, negatives, non-finite, out of range and junk', () => {
    for (const bad of [0.001, 1.005, -1, Number.NaN, Number.POSITIVE_INFINITY, 1_000_000_000.01, '1.005', '-1', '1e3', ' 1', '01.00', '', '1.', '.5', null, true, {}]) {
      assert.equal(toCents(bad), undefined, `toCents(${JSON.stringify(bad)})`)
    }
  })

  it('is exact where floating point is not: 3 x 0.10 = 0.30', () => {
    assert.notEqual(0.1 * 3, 0.3)
    assert.equal(fromCents(multiplyCents(toCents(0.1)!, 3)), 0.3)
    assert.equal(fromCents(multiplyCents(toCents('19.99')!, 7)), 139.93)
    assert.equal(JSON.stringify(fromCents(multiplyCents(toCents(0.07)!, 100))), '7')
  })

  it('writes every cent amount back with at most two decimals', () => {
    for (let cents = 0; cents < 100_000; cents += 7) {
      const text = JSON.stringify(fromCents(cents))
      assert.match(text, /^\d+(\.\d{1,2})?$/)
      assert.equal(toCents(fromCents(cents)), cents)
    }
  })

  it('keeps the largest order within safe integers', () => {
    assert.ok(Number.isSafeInteger(multiplyCents(MAX_PRICE_CENTS, 10_000)))
    assert.throws(() => multiplyCents(Number.MAX_SAFE_INTEGER, 2), RangeError)
  })
})
