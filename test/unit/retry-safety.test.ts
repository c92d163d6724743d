// Which failures may go to another instance, whatever the method: those where the request never
// reached an instance. And what keeps a registered address where nothing listens from taking its
// share of traffic: its breaker opens at its first such failure, and an instance that has never
// answered takes one request at a time.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Balancer, Candidate } from '../../src/discovery/balancer.ts'
import { InstanceBreakers } from '../../src/discovery/breakers.ts'
import { AttemptFailure, isTimeout, retrySafety } from '../../src/discovery/failures.ts'
import type { RegistryInstance } from '../../src/discovery/registry-client.ts'
import type { Resolver } from '../../src/discovery/resolver.ts'
import { ServiceClient } from '../../src/discovery/service-client.ts'
import { silentLogger } from '../helpers/logger.ts'

const coded = (code: string) => Object.assign(new Error(`failed: ${code}`), { code })
/** As a proxy sees it: undici's error wrapped once more (a cause chain). */
const wrapped = (code: string) => new Error('proxy failed', { cause: coded(code) })

describe('retry safety of a failed attempt', () => {
  it('allows any method after a failure to connect: refused, unreachable, unknown name, connect timeout', () => {
    for (const code of ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']) {
      assert.equal(retrySafety(coded(code)), 'any_method', code)
      assert.equal(retrySafety(wrapped(code)), 'any_method', `${code}, as a cause`)
      assert.equal(retrySafety(new AttemptFailure(coded(code), false)), 'any_method', `${code}, not sent`)
    }
  })

  it('allows any method after a reset or a closed socket only when the transport says nothing was written', () => {
    for (const code of ['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']) {
      assert.equal(retrySafety(new AttemptFailure(coded(code), false)), 'any_method', `${code}, not sent`)
      assert.equal(retrySafety(new AttemptFailure(coded(code), true)), 'idempotent_only', `${code}, sent`)
      assert.equal(retrySafety(coded(code)), 'idempotent_only', `${code}, unknown whether sent`)
    }
  })

  it('allows only idempotent requests after a timeout waiting for the answer: the instance may be acting on it', () => {
    for (const code of ['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']) {
      assert.equal(retrySafety(new AttemptFailure(coded(code), true)), 'idempotent_only', code)
      assert.equal(retrySafety(coded(code)), 'idempotent_only', code)
      assert.equal(isTimeout(coded(code)), true, code)
    }
    assert.equal(isTimeout(coded('UND_ERR_CONNECT_TIMEOUT')), true, 'a connect timeout is answered as a timeout too')
    assert.equal(isTimeout(coded('ECONNREFUSED')), false)
  })

  it('never retries what is no connection failure: a bad answer, a bug, an abort', () => {
    for (const error of [new Error('no code'), coded('UND_ERR_ABORTED'), coded('UND_ERR_INVALID_ARG'), 'a string', undefined]) {
      assert.equal(retrySafety(error), 'never', String(error))
    }
    assert.equal(retrySafety(new AttemptFailure(new Error('no code'), false)), 'never')
  })

  it('keeps the cause and its code on an AttemptFailure, for the log line', () => {
    const cause = coded('ECONNREFUSED')
    const failure = new AttemptFailure(cause, false)
    assert.equal(failure.cause, cause)
    assert.equal(failure.code, 'ECONNREFUSED')
    assert.equal(failure.requestSent, false)
  })
})

describe('the breaker of an instance that never answered', () => {
  const neverSent = (error: unknown) => retrySafety(error) === 'any_method'
  const refuse = (breakers: InstanceBreakers, id: string) =>
    breakers.execute(
      id,
      async () => {
        throw coded('ECONNREFUSED')
      },
      () => false,
    )
  const answer = (breakers: InstanceBreakers, id: string, status: number) =>
    breakers.execute(
      id,
      async () => ({ status }),
      (r) => r.status >= 500,
    )

  it('opens at its first failure that never reached it', async () => {
    const breakers = new InstanceBreakers({ consecutiveFailures: 5, halfOpenAfterMs: 60_000, neverSent })
    await assert.rejects(refuse(breakers, 'dead'))
    assert.equal(breakers.state('dead'), 'open')
    assert.equal(breakers.answered('dead'), false)
  })

  it('counts consecutive failures as before once the instance has answered (any status)', async () => {
    const breakers = new InstanceBreakers({ consecutiveFailures: 3, halfOpenAfterMs: 60_000, neverSent })
    await answer(breakers, 'known', 503)
    assert.equal(breakers.answered('known'), true, 'a 503 is an answer')
    await assert.rejects(refuse(breakers, 'known'))
    assert.equal(breakers.state('known'), 'closed', 'one refusal of an instance that answered before: a restart, perhaps')
    await assert.rejects(refuse(breakers, 'known'))
    assert.equal(breakers.state('known'), 'open', 'the 503 and two refusals: three in a row')
  })

  it('counts a timeout of an instance that never answered as one failure of the threshold', async () => {
    const breakers = new InstanceBreakers({ consecutiveFailures: 2, halfOpenAfterMs: 60_000, neverSent })
    const slow = () =>
      breakers.execute(
        'slow',
        async () => {
          throw new AttemptFailure(coded('UND_ERR_HEADERS_TIMEOUT'), true)
        },
        () => false,
      )
    await assert.rejects(slow())
    assert.equal(breakers.state('slow'), 'closed', 'it may be slow, not absent')
    await assert.rejects(slow())
    assert.equal(breakers.state('slow'), 'open')
  })

  it("takes a caller's own refusal (a client gone before the instance was asked) for no answer", async () => {
    const breakers = new InstanceBreakers({ consecutiveFailures: 5, halfOpenAfterMs: 60_000, neverSent })
    await breakers.execute(
      'dead',
      async () => ({ status: 499, refusal: 'client_gone' }),
      (r) => r.status >= 500,
      (r) => r.refusal === undefined,
    )
    assert.equal(breakers.answered('dead'), false)
    await assert.rejects(refuse(breakers, 'dead'))
    assert.equal(breakers.state('dead'), 'open', 'still one that never answered')
  })

  it('opens after the threshold only, without the option (the default)', async () => {
    const breakers = new InstanceBreakers({ consecutiveFailures: 2, halfOpenAfterMs: 60_000 })
    await assert.rejects(refuse(breakers, 'dead'))
    assert.equal(breakers.state('dead'), 'closed')
  })
})

describe('slow start: an instance that has never answered takes one request at a time', () => {
  const instanceAt = (url: string, n: number): RegistryInstance => ({
    id: `product-${n}`,
    service_name: 'product',
    url,
    status: 'up',
    metadata: {},
    registered_at: '2025-01-01T00:00:00.000Z',
    last_heartbeat: '2025-01-01T00:00:00.000Z',
  })
  // Documentation addresses: `send` below stands in for the network, nothing connects.
  const a = instanceAt('http://192.0.2.1:8081', 1)
  const b = instanceAt('http://192.0.2.2:8081', 2)

  /** Round-robin over the candidates offered, recording them. */
  function recording(): { balancer: Balancer; offered: string[][] } {
    const offered: string[][] = []
    let next = 0
    const balancer: Balancer = {
      name: 'round_robin',
      select<T extends Candidate>(candidates: readonly T[]): T | undefined {
        offered.push(candidates.map((c) => c.id))
        return candidates[next++ % candidates.length]
      },
    }
    return { balancer, offered }
  }

  it('sends no second request to an instance that has not answered its first while another can serve', async () => {
    const { balancer, offered } = recording()
    const resolver: Pick<Resolver, 'resolve'> = { resolve: async () => [a, b] }
    const client = new ServiceClient({ resolver: resolver as Resolver, logger: silentLogger(), balancer })
    try {
      // a never answers until released; b answers at once.
      let release: (() => void) | undefined
      const held = new Promise<void>((resolve) => (release = resolve))
      const sent: string[] = []
      const send = async (instance: RegistryInstance) => {
        sent.push(instance.id)
        if (instance === a) await held
        return { status: 200 }
      }
      const first = client.dispatch('product', { idempotent: true, retryOnStatus: true }, send)
      await new Promise((resolve) => setImmediate(resolve))
      assert.deepEqual(sent, ['product-1'], 'the first request went to a, which has not answered yet')
      for (let i = 0; i < 5; i++) await client.dispatch('product', { idempotent: true, retryOnStatus: true }, send)
      assert.deepEqual(sent, ['product-1', 'product-2', 'product-2', 'product-2', 'product-2', 'product-2'], 'b took every request while a had one in flight')
      assert.deepEqual(offered.slice(1), Array(5).fill(['product-2']))
      release!()
      await first
      // Once a has answered, it is offered again like any other.
      await client.dispatch('product', { idempotent: true, retryOnStatus: true }, send)
      assert.deepEqual(offered.at(-1), ['product-1', 'product-2'])
    } finally {
      await client.close()
    }
  })

  it('still sends to an unproven instance when it is the only one', async () => {
    const resolver: Pick<Resolver, 'resolve'> = { resolve: async () => [a] }
    const client = new ServiceClient({ resolver: resolver as Resolver, logger: silentLogger() })
    try {
      const answers = await Promise.all([1, 2, 3].map(() => client.dispatch('product', { idempotent: true, retryOnStatus: true }, async () => ({ status: 200 }))))
      assert.deepEqual(
        answers.map((r) => r.status),
        [200, 200, 200],
      )
    } finally {
      await client.close()
    }
  })
})
