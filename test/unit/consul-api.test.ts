// The Consul-compatible read API, on both stores: what Consul's clients and consul_sd read.
import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import { consulWaitMs } from '../../src/registry/consul.ts'
import { closeRegistries, registry } from '../helpers/registry-app.ts'
import { STORE_KINDS } from '../helpers/stores.ts'

afterEach(closeRegistries)

type Built = Awaited<ReturnType<typeof registry>>
const register = (r: Built, body: Record<string, unknown>) => r.app.inject({ method: 'POST', url: '/register', payload: body })
const get = (r: Built, url: string) => r.app.inject({ method: 'GET', url })

describe('Consul durations', () => {
  it('accept 5s, 30000ms, 10m and 525s, and cap at 10 minutes', () => {
    assert.equal(consulWaitMs('5s'), 5000)
    assert.equal(consulWaitMs('30000ms'), 30_000)
    assert.equal(consulWaitMs('10m'), 600_000)
    assert.equal(consulWaitMs('525s'), 525_000)
    assert.equal(consulWaitMs('2h'), 600_000)
    assert.equal(consulWaitMs('7'), 7000)
    assert.equal(consulWaitMs('soon'), undefined)
  })
})

for (const kind of STORE_KINDS) {
  describe(`Consul API (${kind.name})`, () => {
    it('agent/self names the datacenter and the node', async () => {
      const r = await registry(kind)
      const self = (await get(r, '/v1/agent/self')).json()
      assert.equal(self.Config.Datacenter, 'dc1')
      assert.equal(typeof self.Config.NodeName, 'string')
      assert.deepEqual((await get(r, '/v1/catalog/datacenters')).json(), ['dc1'])
    })

    it('catalog/services lists every service with its tags; a native instance appears with Consul field names', async () => {
      const r = await registry(kind)
      await register(r, { service_name: 'product', url: 'http://10.0.0.1:8081', metadata: { tags: 'v1,blue', zone: 'a' } })
      await register(r, { service_name: 'product', url: 'http://10.0.0.2:8082', metadata: { tags: 'v1' } })
      await register(r, { service_name: 'order', url: 'https://orders.internal' })
      const services = await get(r, '/v1/catalog/services')
      assert.equal(services.statusCode, 200)
      assert.deepEqual(services.json(), { order: [], product: ['blue', 'v1'] })
      assert.ok(Number(services.headers['x-consul-index']) >= 1)

      const catalog = (await get(r, '/v1/catalog/service/product')).json()
      assert.equal(catalog.length, 2)
      assert.equal(catalog[0].ServiceName, 'product')
      assert.equal(catalog[0].ServiceAddress, '10.0.0.1')
      assert.equal(catalog[0].ServicePort, 8081)
      assert.deepEqual(catalog[0].ServiceTags, ['v1', 'blue'])
      assert.deepEqual(catalog[0].ServiceMeta, { zone: 'a' })
      assert.equal(catalog[0].Datacenter, 'dc1')
      const order = (await get(r, '/v1/catalog/service/order')).json()
      assert.equal(order[0].ServicePort, 443, 'the scheme default port')
      assert.deepEqual((await get(r, '/v1/catalog/service/product?tag=blue')).json().length, 1)
      assert.deepEqual((await get(r, '/v1/catalog/service/nothing')).json(), [])
    })

    it('health/service gives Node as an object and a check per instance; ?passing (bare, =true, =1) leaves out the others', async () => {
      const r = await registry(kind)
      const up = (await register(r, { service_name: 'product', url: 'http://10.0.0.1:8081' })).json()
      const draining = (await register(r, { service_name: 'product', url: 'http://10.0.0.2:8081', status: 'draining' })).json()
      const all = (await get(r, '/v1/health/service/product')).json()
      assert.equal(all.length, 2)
      const byId = new Map(all.map((entry: { Service: { ID: string } }) => [entry.Service.ID, entry]))
      const healthy = byId.get(up.id) as { Node: { Node: string; Address: string }; Service: { Port: number }; Checks: Array<{ Status: string; ServiceID: string }> }
      assert.equal(typeof healthy.Node, 'object')
      assert.equal(healthy.Node.Address, '10.0.0.1')
      assert.equal(healthy.Service.Port, 8081)
      assert.equal(healthy.Checks[0]!.Status, 'passing')
      assert.equal(healthy.Checks[0]!.ServiceID, up.id)
      assert.equal((byId.get(draining.id) as { Checks: Array<{ Status: string }> }).Checks[0]!.Status, 'critical')
      for (const query of ['?passing', '?passing=true', '?passing=1']) {
        const passing = (await get(r, `/v1/health/service/product${query}`)).json()
        assert.deepEqual(
          passing.map((entry: { Service: { ID: string } }) => entry.Service.ID),
          [up.id],
          query,
        )
      }
      assert.equal((await get(r, '/v1/health/service/product?passing=false')).json().length, 2)
      assert.equal((await get(r, '/v1/health/service/product?filter=x')).statusCode, 400, 'unsupported parameters are refused, not ignored')
    })

    it('blocking queries: at once for another index, on a change for the current one, and heartbeats do not move it', async () => {
      const r = await registry(kind)
      const first = (await register(r, { service_name: 'product', url: 'http://10.0.0.1:8081' })).json()
      const answer = await get(r, '/v1/health/service/product')
      const index = answer.headers['x-consul-index']
      assert.ok(Number(index) >= 1)
      // Older index: at once.
      const started = Date.now()
      assert.equal((await get(r, `/v1/health/service/product?index=0&wait=5s`)).statusCode, 200)
      assert.ok(Date.now() - started < 1000)
      // A heartbeat is not a change.
      await r.app.inject({ method: 'POST', url: '/heartbeat', payload: { instance_id: first.id } })
      assert.equal((await get(r, '/v1/health/service/product')).headers['x-consul-index'], index)
      // The current index waits for the next change, on this service and on the catalog.
      const serviceWait = get(r, `/v1/health/service/product?index=${index}&wait=10s`)
      const catalogIndex = (await get(r, '/v1/catalog/services')).headers['x-consul-index']
      const catalogWait = get(r, `/v1/catalog/services?index=${catalogIndex}&wait=30000ms`)
      let settled = false
      void Promise.race([serviceWait, catalogWait]).then(() => {
        settled = true
      })
      await new Promise((resolve) => setTimeout(resolve, 150))
      assert.equal(settled, false, 'both wait while nothing changes')
      await register(r, { service_name: 'product', url: 'http://10.0.0.2:8081' })
      const [woken, catalog] = await Promise.all([serviceWait, catalogWait])
      assert.equal(woken.json().length, 2)
      assert.notEqual(woken.headers['x-consul-index'], index)
      assert.notEqual(catalog.headers['x-consul-index'], catalogIndex)
      // The wait ends by itself.
      const now = (await get(r, '/v1/health/service/product')).headers['x-consul-index']
      const timed = Date.now()
      const idle = await get(r, `/v1/health/service/product?index=${now}&wait=300ms`)
      assert.ok(Date.now() - timed >= 250)
      assert.equal(idle.headers['x-consul-index'], now)
    })

    it('the read token guards the catalog and health views', async () => {
      const { RegistryAuth } = await import('../../src/registry/auth.ts')
      const { silentLogger } = await import('../helpers/logger.ts')
      const auth = new RegistryAuth({ logger: silentLogger(), readToken: 'read-token-0123456789abcdefgh' })
      auth.loadSync()
      const r = await registry(kind, { auth })
      for (const url of ['/v1/catalog/services', '/v1/catalog/service/product', '/v1/health/service/product']) {
        assert.equal((await get(r, url)).statusCode, 401, url)
        const allowed = await r.app.inject({ method: 'GET', url, headers: { authorization: 'Bearer read-token-0123456789abcdefgh' } })
        assert.equal(allowed.statusCode, 200, url)
        // Consul's clients send the token as X-Consul-Token.
        const consulStyle = await r.app.inject({ method: 'GET', url, headers: { 'x-consul-token': 'read-token-0123456789abcdefgh' } })
        assert.equal(consulStyle.statusCode, 200, url)
        const wrong = await r.app.inject({ method: 'GET', url, headers: { 'x-consul-token': 'wrong-token-0123456789abcdefghi' } })
        assert.equal(wrong.statusCode, 401, url)
      }
    })
  })
}
