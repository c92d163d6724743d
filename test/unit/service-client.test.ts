import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import { MockAgent } from 'undici'
import type { Balancer, Candidate } from '../../src/discovery/balancer.ts'
import { BrokenCircuitError } from '../../src/discovery/breakers.ts'
import type { RegistryInstance } from '../../src/discovery/registry-client.ts'
import type { Resolver } from '../../src/discovery/resolver.ts'
import { AttemptFailure } from '../../src/discovery/failures.ts'
import { ServiceClient, UpstreamError, type ServiceClientOptions, type UpstreamRequest } from '../../src/discovery/service-client.ts'
import { silentLogger } from '../helpers/logger.ts'

// ServiceClient's dispatch logic against undici's MockAgent: every request is intercepted (and
// net connect is disabled), so these addresses are never contacted.
const A = 'http://10.1.0.1:8081'
const B = 'http://10.1.0.2:8081'
const C = 'http://10.1.0.3:8081'

const instanceAt = (url: string, n: number): RegistryInstance => ({
  id: `product-${n}`,
  service_name: 'product',
  url,
  status: 'up',
  metadata: {},
  registered_at: '2025-01-01T00:00:00.000Z',
  last_heartbeat: '2025-01-01T00:00:00.000Z',
})

const logger = silentLogger()
const refused = (origin: string) => Object.assign(new Error(`connect ECONNREFUSED ${origin}`), { code: 'ECONNREFUSED' })
/** A connection lost with no word on whether the request had gone out: it may have reached the instance. */
const reset = (origin: string) => Object.assign(new Error(`read ECONNRESET ${origin}`), { code: 'ECONNRESET' })
const json = { headers: { 'content-type': 'application/json' } }

const GET: UpstreamRequest = { method: 'GET', path: '/products/1' }
const POST: UpstreamRequest = { method: 'POST', path: '/products', body: { name: 'pen', price: '1.50' } }
const KEYED_POST: UpstreamRequest = { ...POST, headers: { 'Idempotency-Key': 'k-1' } }

/**
 * A balancer that takes the first candidate it is offered, so that tests know which instance a
 * call goes to. `stale` queues answers to give first, whatever the candidates (undefined: the
 * first candidate): the choice of an instance whose breaker has opened since, which is what a
 * race between choosing and calling leaves behind (the client chooses and calls in one tick, so a
 * test cannot open a breaker in between). `offered` records the candidates of each choice.
 */
function scriptedBalancer(all: readonly RegistryInstance[]) {
  const stale: Array<string | undefined> = []
  const offered: string[][] = []
  const balancer: Balancer = {
    name: 'round_robin',
    select<T extends Candidate>(candidates: readonly T[]): T | undefined {
      offered.push(candidates.map((c) => c.id))
      const next = stale.shift()
      if (next !== undefined) return all.find((i) => i.id === next) as unknown as T
      return candidates[0]
    },
  }
  return { balancer, stale, offered }
}

const agents: MockAgent[] = []
const clients: ServiceClient[] = []
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()))
  await Promise.all(agents.splice(0).map((a) => a.close()))
})

function setup(options: Partial<ServiceClientOptions> & { origins?: string[] } = {}) {
  const { origins = [A, B, C], ...clientOptions } = options
  const agent = new MockAgent({ enableCallHistory: true })
  agent.disableNetConnect()
  agents.push(agent)
  const instances = origins.map((url, k) => instanceAt(url, k + 1))
  // The client only calls resolve(service): a structural fake stands in for the watch-backed Resolver.
  const resolver: Pick<Resolver, 'resolve'> = { resolve: async () => instances }
  const scripted = scriptedBalancer(instances)
  const client = new ServiceClient({ resolver: resolver as Resolver, logger, agent, balancer: scripted.balancer, timeoutMs: 2000, ...clientOptions })
  clients.push(client)
  /** Origins called so far, in order. */
  const calls = () =>
    agent
      .getCallHistory()!
      .calls()
      .map((call) => call.origin)
  return { agent, client, instances, calls, ...scripted }
}

const upstreamError = (failure: UpstreamError['failure']) => (error: unknown) => {
  assert.ok(error instanceof UpstreamError, `expected an UpstreamError, got ${String(error)}`)
  assert.equal(error.failure, failure)
  assert.equal(error.service, 'product')
  return true
}

describe('ServiceClient: panic mode', () => {
  it('tries the instances when every breaker is open instead of failing outright', async () => {
    const { agent, client, calls } = setup({ origins: [A, B], maxAttempts: 2, breaker: { consecutiveFailures: 1, halfOpenAfterMs: 60_000 } })
    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).reply(503, 'down')
    agent.get(B).intercept({ path: '/products/1', method: 'GET' }).reply(503, 'down')
    const failed = await client.request('product', GET)
    assert.equal(failed.status, 503, 'the last answer when every instance answered 503')
    assert.deepEqual(calls(), [A, B])
    assert.deepEqual(
      client.breakerStates().map((b) => b.state),
      ['open', 'open'],
    )

    // Every breaker open, a minute before either may be probed: the client still calls.
    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).reply(200, { id: 1 }, json)
    const served = await client.request('product', GET)
    assert.equal(served.status, 200)
    assert.deepEqual(served.body, { id: 1 })
    assert.deepEqual(calls(), [A, B, A])

    // In panic mode a connection failure still moves on to the other (also open) instance.
    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).replyWithError(refused(A))
    agent.get(B).intercept({ path: '/products/1', method: 'GET' }).reply(200, { id: 1 }, json)
    const retried = await client.request('product', GET)
    assert.equal(retried.status, 200)
    assert.equal(retried.instance.url, B)
    assert.deepEqual(calls(), [A, B, A, A, B])
  })
})

describe('ServiceClient: retry budget', () => {
  it('does not retry once the budget is spent (ratio 0, no floor)', async () => {
    const { agent, client, calls } = setup({ retryBudget: { ratio: 0, minPerSecond: 0 } })
    // A reset, not a refusal: a refusal would open the breaker of an instance that never answered.
    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).replyWithError(reset(A))
    await assert.rejects(client.request('product', GET), upstreamError('unavailable'))
    assert.deepEqual(calls(), [A], 'one attempt, no retry on B or C')

    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).reply(503, 'busy')
    const response = await client.request('product', GET)
    assert.equal(response.status, 503, 'a retryable status is returned as is when no retry is allowed')
    assert.deepEqual(calls(), [A, A])
  })

  it('spends the budget across requests: one retry allowed, then none', async () => {
    // 0.1 retries per second over the 10 s window: exactly one retry.
    const { agent, client, calls } = setup({ retryBudget: { ratio: 0, minPerSecond: 0.1 } })
    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).replyWithError(reset(A)).times(2)
    agent.get(B).intercept({ path: '/products/1', method: 'GET' }).reply(200, { id: 1 }, json)
    const first = await client.request('product', GET)
    assert.equal(first.status, 200)
    assert.deepEqual(calls(), [A, B])

    await assert.rejects(client.request('product', GET), upstreamError('unavailable'))
    assert.deepEqual(calls(), [A, B, A], 'the budget is spent: no second retry')
  })
})

describe('ServiceClient: idempotency decides retries after a connection error', () => {
  it('retries a POST without an Idempotency-Key on another instance when the connection was refused (nothing was sent)', async () => {
    const { agent, client, calls } = setup()
    agent.get(A).intercept({ path: '/products', method: 'POST' }).replyWithError(refused(A))
    agent.get(B).intercept({ path: '/products', method: 'POST' }).reply(201, { id: 7 }, json)
    const response = await client.request('product', POST)
    assert.equal(response.status, 201)
    assert.equal(response.instance.url, B)
    assert.deepEqual(calls(), [A, B])
  })

  it('does not retry a POST without an Idempotency-Key after a reset: it may have reached the instance', async () => {
    const { agent, client, calls } = setup()
    agent.get(A).intercept({ path: '/products', method: 'POST' }).replyWithError(reset(A))
    agent.get(B).intercept({ path: '/products', method: 'POST' }).reply(201, { id: 7 }, json)
    await assert.rejects(client.request('product', POST), (error) => {
      upstreamError('unavailable')(error)
      assert.equal((error as UpstreamError & { cause: { code: string } }).cause.code, 'ECONNRESET')
      return true
    })
    assert.deepEqual(calls(), [A])
  })

  it('retries any method when the transport says nothing was written (AttemptFailure), and not when it was', async () => {
    for (const written of [false, true]) {
      const { client, instances } = setup()
      const sent: string[] = []
      const send = async (instance: RegistryInstance) => {
        sent.push(instance.url)
        if (instance === instances[0]) throw new AttemptFailure(reset(instance.url), written)
        return { status: 201 }
      }
      const call = client.dispatch('product', { idempotent: false, retryOnStatus: false }, send)
      if (written) {
        await assert.rejects(call, upstreamError('unavailable'))
        assert.deepEqual(sent, [A], 'written: it may have reached A, so it goes nowhere else')
      } else {
        assert.equal((await call).status, 201)
        assert.deepEqual(sent, [A, B], 'never written: B takes it')
      }
    }
  })

  it('retries a POST with an Idempotency-Key on another instance', async () => {
    const { agent, client, calls } = setup()
    agent.get(A).intercept({ path: '/products', method: 'POST' }).replyWithError(refused(A))
    agent
      .get(B)
      .intercept({ path: '/products', method: 'POST', headers: { 'idempotency-key': 'k-1' } })
      .reply(201, { id: 7 }, json)
    const response = await client.request('product', KEYED_POST)
    assert.equal(response.status, 201)
    assert.equal(response.instance.url, B)
    assert.deepEqual(calls(), [A, B])
  })

  it('retries a GET on another instance', async () => {
    const { agent, client, calls } = setup()
    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).replyWithError(refused(A))
    agent.get(B).intercept({ path: '/products/1', method: 'GET' }).reply(200, { id: 1 }, json)
    const response = await client.request('product', GET)
    assert.equal(response.status, 200)
    assert.deepEqual(calls(), [A, B])
  })

  it('tries each instance at most once, then gives up with the last error', async () => {
    const { agent, client, calls } = setup({ maxAttempts: 5 })
    for (const origin of [A, B, C]) agent.get(origin).intercept({ path: '/products/1', method: 'GET' }).replyWithError(refused(origin))
    await assert.rejects(client.request('product', GET), upstreamError('unavailable'))
    assert.deepEqual(calls(), [A, B, C])
  })
})

describe('ServiceClient: breaker re-choice', () => {
  it('chooses again, without spending an attempt, when the chosen breaker has opened', async () => {
    const { agent, client, calls, stale, offered } = setup({ maxAttempts: 1, breaker: { consecutiveFailures: 1, halfOpenAfterMs: 60_000 } })
    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).reply(500, 'boom')
    assert.equal((await client.request('product', GET)).status, 500)
    assert.deepEqual(client.breakerStates(), [{ service: 'product', instance: 'product-1', state: 'open' }])

    // The balancer answers with A, whose breaker is open: the breaker refuses it without a call,
    // and the client chooses again. With one attempt allowed, the re-choice must not cost it.
    stale.push('product-1')
    offered.length = 0
    agent.get(B).intercept({ path: '/products/1', method: 'GET' }).reply(200, { id: 1 }, json)
    const response = await client.request('product', GET)
    assert.equal(response.status, 200)
    assert.equal(response.instance.url, B)
    assert.deepEqual(calls(), [A, B], 'A was not called again')
    assert.deepEqual(
      offered,
      [
        ['product-2', 'product-3'],
        ['product-2', 'product-3'],
      ],
      'chosen twice, from the available instances',
    )
  })

  it('a re-choice on a retry spends no retry budget', async () => {
    // The budget allows exactly one retry (0.1/s over a 10 s window).
    const { agent, client, calls, stale } = setup({ retryBudget: { ratio: 0, minPerSecond: 0.1 }, breaker: { consecutiveFailures: 1, halfOpenAfterMs: 60_000 } })
    // Open C's breaker with a POST (never retried, so no budget spent).
    stale.push('product-3')
    agent.get(C).intercept({ path: '/products', method: 'POST' }).reply(503, 'down')
    assert.equal((await client.request('product', POST)).status, 503)

    // A answers 503; the retry's first choice is C (open since): the client must choose again,
    // reach B, and not have paid a second retry for the re-choice.
    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).reply(503, 'down')
    agent.get(B).intercept({ path: '/products/1', method: 'GET' }).reply(200, { id: 1 }, json)
    stale.push(undefined, 'product-3') // first choice from the candidates (A), then the stale C
    const answered = await client.request('product', GET)
    assert.equal(answered.status, 200)
    assert.equal(answered.instance.url, B)
    assert.deepEqual(calls(), [C, A, B])
  })

  it('re-chooses a bounded number of times, then fails as unavailable without calling', async () => {
    const { agent, client, calls, stale } = setup({ breaker: { consecutiveFailures: 1, halfOpenAfterMs: 60_000 } })
    agent.get(A).intercept({ path: '/products', method: 'POST' }).reply(503, 'down')
    assert.equal((await client.request('product', POST)).status, 503)
    // A balancer that keeps answering with the open instance.
    stale.push(...Array.from({ length: 20 }, () => 'product-1'))
    await assert.rejects(client.request('product', GET), (error) => {
      upstreamError('unavailable')(error)
      assert.ok((error as Error).cause instanceof BrokenCircuitError)
      return true
    })
    assert.deepEqual(calls(), [A], 'the open instance was never called')
    assert.ok(stale.length > 0 && stale.length < 20, 'gave up after a few re-choices')
  })
})

describe('ServiceClient: statuses', () => {
  for (const status of [500, 502, 503, 504]) {
    it(`sends an idempotent request that met ${status} to another instance`, async () => {
      const { agent, client, calls } = setup()
      agent.get(A).intercept({ path: '/products/1', method: 'GET' }).reply(status, 'sick')
      agent.get(B).intercept({ path: '/products/1', method: 'GET' }).reply(200, { id: 1 }, json)
      const response = await client.request('product', GET)
      assert.equal(response.status, 200)
      assert.equal(response.instance.url, B)
      assert.deepEqual(calls(), [A, B])
    })
  }

  for (const status of [400, 404, 409, 429]) {
    it(`returns a ${status} as is, without a retry`, async () => {
      const { agent, client, calls } = setup()
      const problem = { type: 'about:blank', title: 'nope', status, code: 'nope' }
      agent
        .get(A)
        .intercept({ path: '/products/1', method: 'GET' })
        .reply(status, problem, { headers: { 'content-type': 'application/problem+json' } })
      const response = await client.request('product', GET)
      assert.equal(response.status, status)
      assert.deepEqual(response.body, problem)
      assert.equal(response.instance.url, A)
      assert.deepEqual(calls(), [A])
    })
  }

  it('returns a 503 to a POST without an Idempotency-Key as is', async () => {
    const { agent, client, calls } = setup()
    agent.get(A).intercept({ path: '/products', method: 'POST' }).reply(503, 'busy')
    const response = await client.request('product', POST)
    assert.equal(response.status, 503)
    assert.deepEqual(calls(), [A])
  })

  it('returns the last answer when every instance answered a retryable status', async () => {
    const { agent, client, calls } = setup()
    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).reply(502, 'a')
    agent.get(B).intercept({ path: '/products/1', method: 'GET' }).reply(503, 'b')
    agent.get(C).intercept({ path: '/products/1', method: 'GET' }).reply(504, 'c')
    const response = await client.request('product', GET)
    assert.equal(response.status, 504)
    assert.equal(response.body, 'c')
    assert.deepEqual(calls(), [A, B, C])
  })

  it('dispatch with retryOnStatus false (the gateway) returns a 503 as is, but retries a connection error', async () => {
    const { client, instances } = setup()
    const sent: string[] = []
    const answered = await client.dispatch('product', { idempotent: true, retryOnStatus: false }, async (instance) => {
      sent.push(instance.url)
      return { status: 503 }
    })
    assert.equal(answered.status, 503)
    assert.deepEqual(sent, [A])

    sent.length = 0
    const retried = await client.dispatch('product', { idempotent: true, retryOnStatus: false }, async (instance) => {
      sent.push(instance.url)
      if (instance === instances[0]) throw refused(instance.url)
      return { status: 200 }
    })
    assert.equal(retried.status, 200)
    assert.deepEqual(sent, [A, B])
  })

  it('reports invalid JSON as bad_response, without a retry', async () => {
    const { agent, client, calls } = setup()
    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).reply(200, '{"id":', json)
    await assert.rejects(client.request('product', GET), upstreamError('bad_response'))
    assert.deepEqual(calls(), [A])
  })
})

describe('ServiceClient: failures', () => {
  it('fails with no_instances when the service has no instance', async () => {
    const { client, calls } = setup({ origins: [] })
    await assert.rejects(client.request('product', GET), upstreamError('no_instances'))
    assert.deepEqual(calls(), [])
  })

  it('fails with no_instances when discovery itself fails', async () => {
    const agent = new MockAgent({ enableCallHistory: true })
    agent.disableNetConnect()
    agents.push(agent)
    const cause = new Error('registry down')
    const resolver: Pick<Resolver, 'resolve'> = {
      resolve: async () => {
        throw cause
      },
    }
    const client = new ServiceClient({ resolver: resolver as Resolver, logger, agent })
    clients.push(client)
    await assert.rejects(client.request('product', GET), (error) => {
      upstreamError('no_instances')(error)
      assert.equal((error as Error).cause, cause)
      return true
    })
    assert.deepEqual(agent.getCallHistory()!.calls(), [])
  })

  it('fails with timeout when the instance does not answer in time', async () => {
    const { agent, client, calls } = setup({ timeoutMs: 50, maxAttempts: 1 })
    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).reply(200, { id: 1 }, json).delay(5000)
    const started = performance.now()
    await assert.rejects(client.request('product', GET), upstreamError('timeout'))
    assert.ok(performance.now() - started < 2000, 'the attempt was cut at its timeout')
    assert.deepEqual(calls(), [A])
  })

  it('retries a timed-out GET on another instance, and fails with timeout when all time out', async () => {
    const { agent, client, calls } = setup({ timeoutMs: 50, origins: [A, B] })
    agent.get(A).intercept({ path: '/products/1', method: 'GET' }).reply(200, { id: 1 }, json).delay(5000)
    agent.get(B).intercept({ path: '/products/1', method: 'GET' }).reply(200, { id: 2 }, json)
    const response = await client.request('product', GET)
    assert.equal(response.status, 200)
    assert.deepEqual(response.body, { id: 2 })
    assert.deepEqual(calls(), [A, B])

    for (const origin of [A, B]) agent.get(origin).intercept({ path: '/products/1', method: 'GET' }).reply(200, {}, json).delay(5000)
    await assert.rejects(client.request('product', GET), upstreamError('timeout'))
    assert.deepEqual(calls(), [A, B, A, B])
  })

  it('does not retry a timed-out POST without an Idempotency-Key', async () => {
    const { agent, client, calls } = setup({ timeoutMs: 50 })
    agent.get(A).intercept({ path: '/products', method: 'POST' }).reply(201, { id: 7 }, json).delay(5000)
    await assert.rejects(client.request('product', POST), upstreamError('timeout'))
    assert.deepEqual(calls(), [A])
  })
})
