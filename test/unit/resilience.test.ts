import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { leastOutstanding, random, roundRobin, weighted, weightOf, type Candidate } from '../../src/discovery/balancer.ts'
import { BrokenCircuitError, InstanceBreakers } from '../../src/discovery/breakers.ts'
import { RetryBudget } from '../../src/discovery/retry-budget.ts'
import { isIdempotent } from '../../src/discovery/service-client.ts'

const instance = (id: string, metadata: Record<string, string> = {}): Candidate => ({ id, metadata })
const count = (picks: Array<Candidate | undefined>) => {
  const counts: Record<string, number> = {}
  for (const pick of picks) counts[pick!.id] = (counts[pick!.id] ?? 0) + 1
  return counts
}

/** A seeded generator, so that random strategies are tested deterministically. */
function seeded(seed: number): () => number {
  let state = seed
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31
    return state / 2 ** 31
  }
}

describe('balancers', () => {
  const three = [instance('a'), instance('b'), instance('c')]

  it('round-robin takes each instance in turn', () => {
    const balancer = roundRobin()
    assert.equal(balancer.select([]), undefined)
    assert.deepEqual(
      Array.from({ length: 6 }, () => balancer.select(three)!.id),
      ['a', 'b', 'c', 'a', 'b', 'c'],
    )
  })

  it('random spreads over every instance', () => {
    const balancer = random(seeded(7))
    const counts = count(Array.from({ length: 3000 }, () => balancer.select(three)))
    for (const id of ['a', 'b', 'c']) assert.ok(counts[id]! > 850 && counts[id]! < 1150, `${id}: ${counts[id]}`)
  })

  it('least-outstanding (power of two choices) avoids the busy instance', () => {
    const balancer = leastOutstanding(seeded(11))
    const busy = new Map([
      ['a', 50],
      ['b', 0],
      ['c', 0],
    ])
    const counts = count(Array.from({ length: 3000 }, () => balancer.select(three, { outstanding: (id) => busy.get(id) ?? 0 })))
    // "a" wins only when both choices are "a", which P2C never draws: it gets nothing.
    assert.equal(counts.a ?? 0, 0)
    assert.ok(counts.b! > 1300 && counts.c! > 1300)
    assert.equal(balancer.select([instance('only')])!.id, 'only')
  })

  it('weighted follows the weight metadata, smoothly', () => {
    const balancer = weighted()
    const pool = [instance('a', { weight: '5' }), instance('b', { weight: '1' }), instance('c', { weight: '1' })]
    const picks = Array.from({ length: 70 }, () => balancer.select(pool)!.id)
    assert.deepEqual(count(picks.map((id) => instance(id))), { a: 50, b: 10, c: 10 })
    // Smooth: never more than a few of "a" in a row.
    assert.ok(!picks.join('').includes('aaaaaa'))
    // Weight 0 means no traffic unless every weight is 0; junk weights count as 1.
    const drained = [instance('x', { weight: '0' }), instance('y')]
    assert.ok(Array.from({ length: 10 }, () => balancer.select(drained)!.id).every((id) => id === 'y'))
    assert.equal(weightOf(instance('z', { weight: 'heavy' })), 1)
    assert.equal(weighted().select([instance('x', { weight: '0' })])!.id, 'x')
  })
})

describe('circuit breakers per instance', () => {
  it('open after consecutive failures, refuse traffic, then close after a successful probe', async (t) => {
    // cockatiel times the half-open delay with Date.now: mock Date, and give the breakers that clock too.
    t.mock.timers.enable({ apis: ['Date'], now: 0 })
    const changes: string[] = []
    const breakers = new InstanceBreakers({ consecutiveFailures: 3, halfOpenAfterMs: 1000, clock: () => Date.now(), onStateChange: (id, s) => changes.push(`${id}:${s}`) })
    const fail = () =>
      breakers.execute(
        'p1',
        async () => ({ status: 500 }),
        (r) => r.status >= 500,
      )
    const ok = () =>
      breakers.execute(
        'p1',
        async () => ({ status: 200 }),
        (r) => r.status >= 500,
      )
    await fail()
    await fail()
    assert.equal(breakers.state('p1'), 'closed')
    await ok() // a success resets the count
    await fail()
    await fail()
    assert.equal(breakers.available('p1'), true)
    await fail()
    assert.equal(breakers.state('p1'), 'open')
    assert.equal(breakers.available('p1'), false)
    await assert.rejects(ok(), BrokenCircuitError)
    assert.equal(breakers.available('other'), true, 'breakers are per instance')
    assert.deepEqual(changes, ['p1:open'])
    t.mock.timers.tick(999)
    assert.equal(breakers.available('p1'), false)
    await assert.rejects(ok(), BrokenCircuitError)
    t.mock.timers.tick(1)
    assert.equal(breakers.available('p1'), true)
    await ok() // the probe
    assert.equal(breakers.state('p1'), 'closed')
    assert.deepEqual(changes, ['p1:open', 'p1:half_open', 'p1:closed'])
  })

  it('count thrown errors (refused connections, timeouts) as failures', async () => {
    const breakers = new InstanceBreakers({ consecutiveFailures: 2, halfOpenAfterMs: 60_000 })
    const refuse = () =>
      breakers.execute(
        'p2',
        async () => {
          throw Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })
        },
        () => false,
      )
    await assert.rejects(refuse())
    await assert.rejects(refuse())
    assert.equal(breakers.state('p2'), 'open')
  })

  it('let one probe through after the half-open delay (real timers, short delay)', async () => {
    const breakers = new InstanceBreakers({ consecutiveFailures: 1, halfOpenAfterMs: 50 })
    await breakers.execute(
      'p3',
      async () => ({ status: 503 }),
      (r) => r.status >= 500,
    )
    assert.equal(breakers.available('p3'), false)
    const deadline = Date.now() + 2000
    while (!breakers.available('p3') && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve))
    assert.equal(breakers.available('p3'), true)
    await breakers.execute(
      'p3',
      async () => ({ status: 200 }),
      (r) => r.status >= 500,
    )
    assert.equal(breakers.state('p3'), 'closed')
  })

  it('forget instances that are gone', async () => {
    const breakers = new InstanceBreakers({ consecutiveFailures: 1, halfOpenAfterMs: 1000 })
    await breakers.execute(
      'gone',
      async () => ({ status: 500 }),
      (r) => r.status >= 500,
    )
    breakers.retain(new Set(['other']))
    assert.deepEqual(breakers.states(), [])
  })

  it('refuse nonsense options with the value in the message', () => {
    assert.throws(() => new InstanceBreakers({ consecutiveFailures: 0, halfOpenAfterMs: 1 }), /got 0/)
  })
})

describe('retry budget', () => {
  it('allows retries up to the ratio of requests plus a floor, over a sliding window', () => {
    let now = 0
    const budget = new RetryBudget({ ratio: 0.2, minPerSecond: 1, windowMs: 10_000, clock: () => now })
    // Floor: 1/s over 10 s = 10 retries with no traffic at all.
    let granted = 0
    while (budget.tryRetry()) granted++
    assert.equal(granted, 10)
    // 100 requests add 20 more.
    for (let i = 0; i < 100; i++) budget.recordRequest()
    granted = 0
    while (budget.tryRetry()) granted++
    assert.equal(granted, 20)
    // Once the window has passed, the budget is whole again.
    now += 10_000
    granted = 0
    while (budget.tryRetry() && granted < 1000) granted++
    assert.equal(granted, 10)
  })
})

describe('idempotency', () => {
  it('treats GET, HEAD, PUT, DELETE and keyed POSTs as retryable, nothing else', () => {
    for (const method of ['GET', 'HEAD', 'PUT', 'DELETE'] as const) assert.ok(isIdempotent({ method, path: '/' }))
    assert.ok(!isIdempotent({ method: 'POST', path: '/' }))
    assert.ok(!isIdempotent({ method: 'PATCH', path: '/' }))
    assert.ok(isIdempotent({ method: 'POST', path: '/', headers: { 'Idempotency-Key': 'k1' } }))
  })
})
