// The gateway in front of a registered address where nothing listens (the seed's example instance,
// http://product:8081, is one on any machine without that host): a request that never reached an
// instance goes to another whatever its method, so every POST /products succeeds, exactly once;
// and that address does not take its share of traffic. And its readiness: not ready until every
// route has an instance, and then naming any route left without one.
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { RegistryClient } from '../../src/discovery/registry-client.ts'
import { Registration } from '../../src/discovery/registration.ts'
import { instanceIdFor } from '../../src/protocol/registry.ts'
import { http } from '../helpers/http.ts'
import { silentLogger } from '../helpers/logger.ts'
import type { RunningProcess } from '../helpers/process.ts'
import { discover, freePorts, registeredServer, startTracked, stopAll, tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

/** POSTs sent one after another, then in concurrent batches. */
const SEQUENTIAL = 30
const BATCHES = 3
const BATCH = 20

interface Readiness {
  status: string
  checks: Record<string, string>
  details?: { routes?: Array<{ prefix: string; service: string; instances: number | null }>; routes_without_instances?: string[] }
}

describe('gateway failover and readiness', () => {
  const dir = tempDir('gateway-failover')
  const started: RunningProcess[] = []
  let registry: RunningProcess
  let gateway: RunningProcess
  let registryClient: RegistryClient
  let dead: Registration | undefined

  const ready = async () => {
    const response = await http<Readiness>('GET', `${gateway.url}/health/ready`)
    return { status: response.status, body: response.body }
  }

  before(async () => {
    registry = await startTracked(started, 'registry', { env: { REGISTRY_TTL_SECONDS: '5' } })
    // Started before any instance exists: readiness is checked from the beginning.
    gateway = await startTracked(started, 'gateway', {
      env: {
        REGISTRY_URL: registry.url,
        HEARTBEAT_INTERVAL_SECONDS: '0.5',
        GATEWAY_ROUTES: '/products=product,/orders=order',
        // An opened breaker stays open for the rest of the file: the dead instance's count is exact.
        BREAKER_HALF_OPEN_SECONDS: '600',
      },
    })
    registryClient = new RegistryClient({ urls: [registry.url] })
  })

  after(async () => {
    await dead?.stop()
    await registryClient?.close()
    await stopAll(started)
    dir.remove()
  })

  it('is not ready until every route has an instance, then names a route left without one', async () => {
    const waiting = await waitFor(
      async () => {
        const { status, body } = await ready()
        // Once registered with the registry, the routes are what it waits for.
        return status === 503 && body.checks.registry === 'ok' && body
      },
      { what: 'the gateway to be registered and waiting for instances' },
    )
    assert.equal(waiting.status, 'not_ready')
    assert.match(waiting.checks.routes ?? '', /\/products \(product\)/)
    assert.match(waiting.checks.routes ?? '', /\/orders \(order\)/)
    assert.deepEqual(waiting.details?.routes_without_instances, ['/products', '/orders'])

    const product = await startTracked(started, 'product', { env: { REGISTRY_URL: registry.url, DATA_DIR: dir.path, HEARTBEAT_INTERVAL_SECONDS: '0.5' } })
    const onlyOrders = await waitFor(
      async () => {
        const { status, body } = await ready()
        return status === 503 && !/\/products/.test(body.checks.routes ?? '') && body
      },
      { what: 'the product route to have its instance' },
    )
    assert.match(onlyOrders.checks.routes ?? '', /\/orders \(order\)/)

    const order = await registeredServer(
      registry.url,
      'order',
      createServer((_request, response) => response.end('{}')),
    )
    try {
      const readyNow = await waitFor(
        async () => {
          const { status, body } = await ready()
          return status === 200 && body
        },
        { what: 'the gateway to be ready' },
      )
      assert.equal(readyNow.checks.routes, 'ok')
      assert.deepEqual(readyNow.details?.routes, [
        { prefix: '/products', service: 'product', instances: 1 },
        { prefix: '/orders', service: 'order', instances: 1 },
      ])
    } finally {
      await order.close()
    }
    // The order service's only instance is gone: the product route still serves, so the gateway
    // stays ready, and says which route has nothing to go to.
    const gone = await waitFor(
      async () => {
        const { status, body } = await ready()
        return status === 200 && body.details?.routes_without_instances?.includes('/orders') && body
      },
      { what: 'the readiness details to name /orders' },
    )
    assert.deepEqual(gone.details?.routes_without_instances, ['/orders'])
    assert.equal((await http('GET', `${gateway.url}/orders`)).status, 503)
    assert.equal(product.child.exitCode, null)
  })

  it('sends every POST that a dead instance refused to the live one, once, and keeps that instance out', async () => {
    // Registered, heartbeating, and nothing listens there (a port that was free a moment ago).
    const [port] = await freePorts(1)
    const deadUrl = `http://127.0.0.1:${port}`
    dead = new Registration({ client: registryClient, serviceName: 'product', url: deadUrl, heartbeatIntervalMs: 500, logger: silentLogger() })
    dead.start()
    await waitFor(async () => (await discover(registry.url, 'product')).length === 2, { what: 'two product instances, one of them dead' })
    // The gateway hears of it through its watch.
    await waitFor(
      async () => {
        const body = (await ready()).body
        return body.details?.routes?.find((route) => route.prefix === '/products')?.instances === 2
      },
      { what: 'the gateway to know both instances' },
    )

    const name = `failover-${Date.now()}`
    const created: string[] = []
    const post = async (k: number) => {
      const response = await http('POST', `${gateway.url}/products`, { name: `${name}-${k}`, price: 1.25 })
      assert.equal(response.status, 201, `POST ${k}: ${response.text}`)
      created.push(response.body.id)
    }
    for (let k = 0; k < SEQUENTIAL; k++) await post(k)
    for (let batch = 0; batch < BATCHES; batch++) {
      await Promise.all(Array.from({ length: BATCH }, (_, k) => post(SEQUENTIAL + batch * BATCH + k)))
    }
    const total = SEQUENTIAL + BATCHES * BATCH
    assert.equal(new Set(created).size, total)

    // Each POST created exactly one product: none was sent twice.
    const names: string[] = []
    let cursor: string | null = null
    for (let page = 0; page < 50; page++) {
      const listed: { status: number; body: { items: Array<{ name: string }>; next_cursor: string | null } } = await http(
        'GET',
        `${gateway.url}/products?limit=100${cursor ? `&cursor=${cursor}` : ''}`,
      )
      assert.equal(listed.status, 200)
      names.push(...listed.body.items.map((item) => item.name).filter((n) => n.startsWith(`${name}-`)))
      cursor = listed.body.next_cursor
      if (cursor === null) break
    }
    assert.equal(names.length, total, 'one product per POST')

    // The dead address was tried, refused, and kept out: its breaker opened at its first refusal
    // (it had never answered), and it never had more than one request at a time before that.
    const metrics = (await http('GET', `${gateway.url}/metrics`)).text
    const deadId = instanceIdFor('product', deadUrl)
    const deadCalls = metrics
      .split('\n')
      .filter((line) => line.startsWith('upstream_requests_total{') && line.includes(`instance="${deadId}"`))
      .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0)
    assert.ok(deadCalls >= 1 && deadCalls <= 3, `the dead instance had ${deadCalls} of ${total} requests`)
    assert.match(metrics, new RegExp(`upstream_breaker_state\\{[^}]*instance="${deadId}"[^}]*\\} 2`), 'its breaker is open')
    const refused = gateway.logs.find((line) => line.event === 'upstream_error' && line.instance_url === deadUrl)
    assert.ok(refused, 'the refusal is logged')
    assert.equal(refused.retry_safety, 'any_method')
    assert.equal(refused.will_retry, true)
  })
})
