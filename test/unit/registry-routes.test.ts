import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import { closeRegistries, registry } from '../helpers/registry-app.ts'
import { memory, STORE_KINDS } from '../helpers/stores.ts'

afterEach(closeRegistries)

const json = (body: unknown) => ({ headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) })

for (const kind of STORE_KINDS) {
  describe(`registry routes (${kind.name})`, () => {
    it('registers, discovers, heartbeats and deregisters', async () => {
      const { app } = await registry(kind)
      const created = await app.inject({
        method: 'POST',
        url: '/register',
        headers: { 'content-type': 'application/json' },
        payload: { service_name: 'product', url: 'http://product:8081' },
      })
      assert.equal(created.statusCode, 201)
      const instance = created.json()
      assert.equal(created.headers.location, `/instances/${instance.id}`)
      assert.deepEqual(Object.keys(instance).sort(), ['id', 'last_heartbeat', 'metadata', 'registered_at', 'service_name', 'status', 'url'])

      const discovered = await app.inject({ method: 'GET', url: '/discover/product' })
      assert.equal(discovered.statusCode, 200)
      assert.deepEqual(discovered.json(), { service_name: 'product', instances: [instance] })
      assert.ok(Number(discovered.headers['x-registry-index']) > 0)

      const beat = await app.inject({ method: 'POST', url: '/heartbeat', payload: { instance_id: instance.id } })
      assert.equal(beat.statusCode, 200)

      const removed = await app.inject({ method: 'DELETE', url: `/instances/${instance.id}` })
      assert.equal(removed.statusCode, 204)
      const gone = await app.inject({ method: 'DELETE', url: `/instances/${instance.id}` })
      assert.equal(gone.statusCode, 404)
      assert.equal(gone.json().code, 'INSTANCE_NOT_FOUND')
    })

    it('deregisters by (service_name, url)', async () => {
      const { app } = await registry(kind)
      await app.inject({ method: 'POST', url: '/register', payload: { service_name: 'order', url: 'http://o:1' } })
      const removed = await app.inject({ method: 'POST', url: '/deregister', payload: { service_name: 'order', url: 'http://o:1' } })
      assert.equal(removed.statusCode, 200)
      assert.equal(removed.json().url, 'http://o:1')
      assert.deepEqual((await app.inject({ method: 'GET', url: '/discover/order' })).json().instances, [])
    })

    it('answers a heartbeat for an unknown instance with 404 INSTANCE_NOT_FOUND', async () => {
      const { app } = await registry(kind)
      const response = await app.inject({ method: 'POST', url: '/heartbeat', payload: { service_name: 'product', url: 'http://nowhere:1' } })
      assert.equal(response.statusCode, 404)
      assert.equal(response.json().code, 'INSTANCE_NOT_FOUND')
      assert.match(String(response.headers['content-type']), /^application\/problem\+json/)
    })

    it('answers an unknown service with 200 and an empty list', async () => {
      const { app } = await registry(kind)
      const response = await app.inject({ method: 'GET', url: '/discover/unknown' })
      assert.equal(response.statusCode, 200)
      assert.deepEqual(response.json(), { service_name: 'unknown', instances: [] })
    })

    it('lists services with their instances', async () => {
      const { app } = await registry(kind)
      await app.inject({ method: 'POST', url: '/register', payload: { service_name: 'product', url: 'http://p:1' } })
      await app.inject({ method: 'POST', url: '/register', payload: { service_name: 'order', url: 'http://o:1' } })
      const body = (await app.inject({ method: 'GET', url: '/services' })).json()
      assert.deepEqual(
        body.services.map((s: { service_name: string; instances: unknown[] }) => [s.service_name, s.instances.length]),
        [
          ['order', 1],
          ['product', 1],
        ],
      )
    })

    it('answers 409 when an explicit instance_id belongs to another instance', async () => {
      const { app } = await registry(kind)
      await app.inject({ method: 'POST', url: '/register', payload: { service_name: 'product', url: 'http://p:1', instance_id: 'p-1' } })
      const response = await app.inject({ method: 'POST', url: '/register', payload: { service_name: 'product', url: 'http://p:2', instance_id: 'p-1' } })
      assert.equal(response.statusCode, 409)
      assert.equal(response.json().code, 'INSTANCE_ID_CONFLICT')
    })

    it('answers 503 REGISTRY_FULL past its instance limit', async () => {
      const built = await registry(kind, { maxInstances: 1 })
      await built.app.inject({ method: 'POST', url: '/register', payload: { service_name: 'product', url: 'http://p:1' } })
      const response = await built.app.inject({ method: 'POST', url: '/register', payload: { service_name: 'product', url: 'http://p:2' } })
      assert.equal(response.statusCode, 503)
      assert.equal(response.json().code, 'REGISTRY_FULL')
    })

    it('serves liveness and readiness', async () => {
      const { app } = await registry(kind)
      assert.equal((await app.inject({ method: 'GET', url: '/health/live' })).statusCode, 200)
      const ready = await app.inject({ method: 'GET', url: '/health/ready' })
      assert.equal(ready.statusCode, 200)
      assert.equal(ready.json().status, 'ready')
    })

    describe('bad input is a 4xx problem, never a 500', () => {
      const cases: Array<[string, { method: 'POST' | 'GET' | 'DELETE' | 'PUT'; url: string; headers?: Record<string, string>; payload?: string }, number, string]> = [
        ['missing url', { method: 'POST', url: '/register', ...json({ service_name: 'product' }) }, 400, 'VALIDATION_FAILED'],
        ['missing service_name', { method: 'POST', url: '/register', ...json({ url: 'http://p:1' }) }, 400, 'VALIDATION_FAILED'],
        ['url not http(s)', { method: 'POST', url: '/register', ...json({ service_name: 'p', url: 'ftp://p:1' }) }, 400, 'VALIDATION_FAILED'],
        ['relative url', { method: 'POST', url: '/register', ...json({ service_name: 'p', url: '/products' }) }, 400, 'VALIDATION_FAILED'],
        ['url with spaces', { method: 'POST', url: '/register', ...json({ service_name: 'p', url: 'http://a b' }) }, 400, 'VALIDATION_FAILED'],
        ['service_name with uppercase and spaces', { method: 'POST', url: '/register', ...json({ service_name: 'My Service', url: 'http://p:1' }) }, 400, 'VALIDATION_FAILED'],
        ['service_name too long', { method: 'POST', url: '/register', ...json({ service_name: 'a'.repeat(65), url: 'http://p:1' }) }, 400, 'VALIDATION_FAILED'],
        ['service_name a number', { method: 'POST', url: '/register', ...json({ service_name: 42, url: 'http://p:1' }) }, 400, 'VALIDATION_FAILED'],
        ['metadata not a string map', { method: 'POST', url: '/register', ...json({ service_name: 'p', url: 'http://p:1', metadata: { a: 1 } }) }, 400, 'VALIDATION_FAILED'],
        ['body is an array', { method: 'POST', url: '/register', ...json([1, 2]) }, 400, 'VALIDATION_FAILED'],
        ['body is null', { method: 'POST', url: '/register', ...json(null) }, 400, 'VALIDATION_FAILED'],
        ['malformed JSON', { method: 'POST', url: '/register', headers: { 'content-type': 'application/json' }, payload: '{"service_name":' }, 400, 'INVALID_JSON'],
        ['empty JSON body', { method: 'POST', url: '/heartbeat', headers: { 'content-type': 'application/json' }, payload: '' }, 400, 'INVALID_JSON'],
        ['wrong content type', { method: 'POST', url: '/register', headers: { 'content-type': 'text/xml' }, payload: '<x/>' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
        ['heartbeat with neither id nor url', { method: 'POST', url: '/heartbeat', ...json({ service_name: 'p' }) }, 400, 'VALIDATION_FAILED'],
        ['bad service name in the path', { method: 'GET', url: '/discover/..%2F..' }, 400, 'VALIDATION_FAILED'],
        ['unknown route', { method: 'GET', url: '/nope' }, 404, 'ROUTE_NOT_FOUND'],
        ['unknown method on a known path', { method: 'PUT', url: '/register', ...json({}) }, 405, 'METHOD_NOT_ALLOWED'],
        [
          'body over 1 MiB',
          { method: 'POST', url: '/register', ...json({ service_name: 'p', url: 'http://p:1', metadata: { a: 'x'.repeat(1024 * 1024) } }) },
          413,
          'BODY_TOO_LARGE',
        ],
        [
          'prototype pollution attempt',
          { method: 'POST', url: '/register', headers: { 'content-type': 'application/json' }, payload: '{"service_name":"p","url":"http://p:1","__proto__":{"x":1}}' },
          400,
          'INVALID_JSON',
        ],
      ]
      for (const [name, request, status, code] of cases) {
        it(`${name}: ${status} ${code}`, async () => {
          const { app } = await registry(kind)
          const response = await app.inject(request)
          assert.equal(response.statusCode, status)
          assert.match(String(response.headers['content-type']), /^application\/problem\+json/)
          const body = response.json()
          assert.equal(body.code, code)
          assert.equal(body.status, status)
          assert.equal(typeof body.title, 'string')
          assert.equal(typeof body.detail, 'string')
          assert.equal(typeof body.type, 'string')
        })
      }
    })
  })
}

// Moves a fake clock past the TTL: memory only (etcd expires instances by its own leases, in
// whole seconds; test/integration/etcd-registry.test.ts covers that).
describe('registry routes (memory, fake clock)', () => {
  it('hides instances past the TTL from discovery and /services, and the sweep evicts them', async () => {
    let now = 1_700_000_000_000
    const advance = (ms: number) => {
      now += ms
    }
    const { app, sweep, store } = await registry(memory, { ttlMs: 1000, clock: () => now })
    await app.inject({ method: 'POST', url: '/register', payload: { service_name: 'product', url: 'http://p:1' } })
    advance(999)
    assert.equal((await app.inject({ method: 'GET', url: '/discover/product' })).json().instances.length, 1)
    advance(1)
    assert.equal((await app.inject({ method: 'GET', url: '/discover/product' })).json().instances.length, 0)
    assert.deepEqual((await app.inject({ method: 'GET', url: '/services' })).json(), { services: [] })
    await sweep()
    assert.equal(await store.heartbeat({ service_name: 'product', url: 'http://p:1' }), undefined)
  })
})

describe('the warm-up after a start', () => {
  it('counts from when the registry starts listening, not from when it was built', async () => {
    let now = Date.parse('2026-12-01T00:00:00Z')
    const { buildRegistryApp } = await import('../../src/registry/server.ts')
    const { silentLogger } = await import('../helpers/logger.ts')
    const registry = buildRegistryApp({ logger: silentLogger(), ttlMs: 60_000, warmupMs: 1000, clock: () => now })
    try {
      const warmup = async () => Number((await registry.app.inject({ method: 'GET', url: '/discover/product' })).headers['x-registry-warmup-ms'])
      assert.equal(await warmup(), 1000)
      // A slow start: building took longer than the warm-up.
      now += 1500
      assert.equal(await warmup(), 0)
      registry.restartWarmup()
      assert.equal(await warmup(), 1000, 'the instances get the whole warm-up to re-register')
      now += 400
      assert.equal(await warmup(), 600)
    } finally {
      await registry.app.close()
    }
  })
})
