import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import { RegistryAuth } from '../../src/registry/auth.ts'
import { silentLogger } from '../helpers/logger.ts'
import { closeRegistries, registry } from '../helpers/registry-app.ts'
import { STORE_KINDS } from '../helpers/stores.ts'

// GET /sd/prometheus: Prometheus's http_sd_configs format, one target group per live instance.

afterEach(closeRegistries)

type Built = Awaited<ReturnType<typeof registry>>
const register = async ({ app }: Built, body: Record<string, unknown>) => {
  const response = await app.inject({ method: 'POST', url: '/register', payload: body })
  assert.equal(response.statusCode, 201, response.body)
  return response.json() as { id: string }
}
const sd = ({ app }: Built, query = '', headers: Record<string, string> = {}) => app.inject({ method: 'GET', url: `/sd/prometheus${query}`, headers })

const labels = (service: string, id: string, url: string, extra: Record<string, string> = {}) => ({
  __meta_registry_service: service,
  __meta_registry_instance_id: id,
  __meta_registry_url: url,
  __meta_registry_status: 'up',
  ...extra,
})

for (const kind of STORE_KINDS) {
  describe(`GET /sd/prometheus (${kind.name})`, () => {
    it('answers an empty array when nothing is registered', async () => {
      const built = await registry(kind)
      const response = await sd(built)
      assert.equal(response.statusCode, 200)
      assert.match(response.headers['content-type'] as string, /^application\/json/)
      assert.equal(response.body, '[]')
    })

    it('one target group per up instance, by service then registration order, with meta labels, scheme, path and default ports', async () => {
      const built = await registry(kind)
      // Ids in registration order: instances registered within one millisecond are ordered by id.
      await register(built, { service_name: 'product', instance_id: 'p-1', url: 'http://10.0.0.1:8081', metadata: { zone: 'eu-1', 'team.name/x-y': 'shop' } })
      await register(built, { service_name: 'product', instance_id: 'p-2', url: 'https://shop.example' })
      await register(built, { service_name: 'order', instance_id: 'o-1', url: 'http://[::1]:9000/base', metadata: { metrics_path: '/internal/metrics' } })
      await register(built, { service_name: 'order', instance_id: 'o-2', url: 'http://[fd00::2]', metadata: { metrics_path: 'no-slash' } })
      await register(built, { service_name: 'order', instance_id: 'o-3', url: 'http://10.0.0.3:1', status: 'draining' })
      await register(built, { service_name: 'order', instance_id: 'o-4', url: 'http://10.0.0.4:2', status: 'starting' })
      const failing = await register(built, { service_name: 'product', instance_id: 'p-3', url: 'http://10.0.0.5:3' })
      await built.store.setHealth(failing.id, 'failing')
      await register(built, { service_name: 'gone', instance_id: 'g-1', url: 'http://10.0.0.6:4', status: 'draining' })

      const response = await sd(built)
      assert.equal(response.statusCode, 200)
      assert.deepEqual(response.json(), [
        {
          targets: ['[::1]:9000'],
          labels: labels('order', 'o-1', 'http://[::1]:9000/base', {
            __meta_registry_metadata_metrics_path: '/internal/metrics',
            __scheme__: 'http',
            __metrics_path__: '/internal/metrics',
          }),
        },
        {
          targets: ['[fd00::2]:80'],
          // Not a path: the default stays, the pair is still a label.
          labels: labels('order', 'o-2', 'http://[fd00::2]', { __meta_registry_metadata_metrics_path: 'no-slash', __scheme__: 'http', __metrics_path__: '/metrics' }),
        },
        {
          targets: ['10.0.0.1:8081'],
          labels: labels('product', 'p-1', 'http://10.0.0.1:8081', {
            __meta_registry_metadata_team_name_x_y: 'shop',
            __meta_registry_metadata_zone: 'eu-1',
            __scheme__: 'http',
            __metrics_path__: '/metrics',
          }),
        },
        { targets: ['shop.example:443'], labels: labels('product', 'p-2', 'https://shop.example', { __scheme__: 'https', __metrics_path__: '/metrics' }) },
      ])
      // Every label name is one Prometheus accepts.
      for (const group of response.json() as Array<{ labels: Record<string, string> }>) {
        for (const name of Object.keys(group.labels)) assert.match(name, /^[a-zA-Z_][a-zA-Z0-9_]*$/)
      }

      // Back up: listed again, in its place.
      await built.store.setHealth(failing.id, 'passing')
      assert.deepEqual(
        (await sd(built, '?service=product')).json().map((g: { targets: string[] }) => g.targets[0]),
        ['10.0.0.1:8081', 'shop.example:443', '10.0.0.5:3'],
      )
    })

    it('?service= restricts to one service; an unknown one is empty; bad names and unknown parameters are refused', async () => {
      const built = await registry(kind)
      await register(built, { service_name: 'product', instance_id: 'p-1', url: 'http://10.0.0.1:8081' })
      await register(built, { service_name: 'order', instance_id: 'o-1', url: 'http://10.0.0.2:8082' })
      assert.deepEqual((await sd(built, '?service=order')).json(), [
        { targets: ['10.0.0.2:8082'], labels: labels('order', 'o-1', 'http://10.0.0.2:8082', { __scheme__: 'http', __metrics_path__: '/metrics' }) },
      ])
      const none = await sd(built, '?service=nothing')
      assert.equal(none.statusCode, 200)
      assert.equal(none.body, '[]')
      for (const query of ['?service=Not_A_Name', '?service=', '?other=1', '?service=order&index=3']) {
        const refused = await sd(built, query)
        assert.equal(refused.statusCode, 400, query)
      }
      // Deregistered: gone from the list.
      await built.app.inject({ method: 'POST', url: '/deregister', payload: { instance_id: 'o-1' } })
      assert.equal((await sd(built, '?service=order')).body, '[]')
    })

    it('needs the read token when one is configured', async () => {
      const logger = silentLogger()
      const auth = new RegistryAuth({ logger, adminToken: 'admin-token-0123456789abcdef', readToken: 'read-token-0123456789abcdefgh' })
      auth.loadSync()
      const built = await registry(kind, { logger, auth })
      const registered = await built.app.inject({
        method: 'POST',
        url: '/register',
        payload: { service_name: 'product', url: 'http://10.0.0.1:8081' },
        headers: { authorization: 'Bearer admin-token-0123456789abcdef' },
      })
      assert.equal(registered.statusCode, 201)
      const anonymous = await sd(built)
      assert.equal(anonymous.statusCode, 401)
      assert.equal(anonymous.json().code, 'UNAUTHORIZED')
      assert.equal((await sd(built, '', { authorization: 'Bearer not-the-token-0123456789' })).statusCode, 401)
      const read = await sd(built, '', { authorization: 'Bearer read-token-0123456789abcdefgh' })
      assert.equal(read.statusCode, 200)
      assert.deepEqual(
        read.json().map((g: { targets: string[] }) => g.targets),
        [['10.0.0.1:8081']],
      )
    })
  })
}
