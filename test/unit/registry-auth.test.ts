import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, afterEach, describe, it } from 'node:test'
import { isLoopback, parseAcl, RegistryAuth, serviceAllowed } from '../../src/registry/auth.ts'
import { silentLogger } from '../helpers/logger.ts'
import { closeRegistries, registry as registryOver } from '../helpers/registry-app.ts'
import { STORE_KINDS, type StoreKind } from '../helpers/stores.ts'
import { tempDir } from '../helpers/system.ts'

// Every attack here worked before the registry had tokens: anyone who reached it could register
// as `product` at their own URL, take over or evict the real instances, and read everything.

const ADMIN = 'admin-token-0123456789abcdef'
const PRODUCT_TEAM = 'product-team-token-0123456789'
const PRODUCT_CI = 'product-ci-token-0123456789ab'
const PAYMENTS = 'payments-token-0123456789abcd'
const READER = 'read-token-0123456789abcdefgh'
const sha = (token: string) => createHash('sha256').update(token).digest('hex')

const dir = tempDir('auth')
after(() => dir.remove())
afterEach(closeRegistries)

function aclFile(tokens: Array<{ name: string; token: string; services: string[] }>, name = 'acl.json') {
  const path = join(dir.path, name)
  writeFileSync(path, JSON.stringify({ tokens: tokens.map((t) => ({ name: t.name, sha256: sha(t.token), services: t.services })) }))
  return path
}

const ACL = [
  { name: 'product-team', token: PRODUCT_TEAM, services: ['product'] },
  { name: 'product-ci', token: PRODUCT_CI, services: ['product'] },
  { name: 'payments', token: PAYMENTS, services: ['payment*'] },
]

function registry(kind: StoreKind, auth: { adminToken?: string; readToken?: string; acl?: boolean } = {}) {
  const logger = silentLogger()
  const registryAuth = new RegistryAuth({
    logger,
    ...(auth.adminToken ? { adminToken: auth.adminToken } : {}),
    ...(auth.readToken ? { readToken: auth.readToken } : {}),
    ...(auth.acl ? { aclFile: aclFile(ACL) } : {}),
  })
  registryAuth.loadSync()
  return registryOver(kind, { logger, ttlMs: 30_000, auth: registryAuth })
}

type App = Awaited<ReturnType<typeof registry>>['app']
const bearer = (token: string | undefined): Record<string, string> => (token === undefined ? {} : { authorization: `Bearer ${token}` })
const write = (app: App, url: string, payload: unknown, token?: string, remoteAddress = '10.1.2.3') =>
  app.inject({ method: 'POST', url, payload: payload as object, headers: { 'content-type': 'application/json', ...bearer(token) }, remoteAddress })
const product = (port: number, extra: Record<string, unknown> = {}) => ({ service_name: 'product', url: `http://10.0.0.${port % 250}:${port}`, ...extra })

for (const kind of STORE_KINDS) {
  describe(`registry tokens (${kind.name})`, () => {
    it('protected mode: with no token configured, writes come from loopback only, with a 403 that names REGISTRY_TOKEN', async () => {
      const { app } = await registry(kind)
      const remote = await write(app, '/register', product(8081))
      assert.equal(remote.statusCode, 403)
      assert.equal(remote.json().code, 'PROTECTED_MODE')
      assert.match(remote.json().detail, /REGISTRY_TOKEN/)
      assert.match(remote.headers['content-type'] as string, /application\/problem\+json/)
      // A token does not help: none is configured to match it.
      assert.equal((await write(app, '/register', product(8081), ADMIN)).statusCode, 403)

      const local = await write(app, '/register', product(8081), undefined, '127.0.0.1')
      assert.equal(local.statusCode, 201)
      const id = local.json().id
      for (const address of ['::1', '::ffff:127.0.0.1', '127.9.9.9']) {
        assert.equal((await write(app, '/heartbeat', { instance_id: id }, undefined, address)).statusCode, 200, address)
      }
      // Nobody elsewhere may heartbeat, drain or remove it either.
      assert.equal((await write(app, '/heartbeat', { instance_id: id, status: 'draining' })).statusCode, 403)
      assert.equal((await write(app, '/deregister', { instance_id: id })).statusCode, 403)
      assert.equal((await app.inject({ method: 'DELETE', url: `/instances/${id}`, remoteAddress: '10.1.2.3' })).statusCode, 403)
      // Reads stay open to everyone.
      const read = await app.inject({ method: 'GET', url: '/discover/product', remoteAddress: '10.1.2.3' })
      assert.equal(read.statusCode, 200)
      assert.equal(read.json().instances[0].status, 'up')
    })

    it('admin token: every write needs it (401 with a challenge otherwise), loopback included', async () => {
      const { app } = await registry(kind, { adminToken: ADMIN })
      for (const [token, address] of [
        [undefined, '10.1.2.3'],
        [undefined, '127.0.0.1'],
        ['wrong-token-0123456789abcdef', '10.1.2.3'],
        [`${ADMIN}x`, '10.1.2.3'],
      ] as const) {
        const answer = await write(app, '/register', product(8081), token, address)
        assert.equal(answer.statusCode, 401, `${token} from ${address}`)
        assert.equal(answer.json().code, 'UNAUTHORIZED')
        assert.equal(answer.headers['www-authenticate'], 'Bearer realm="registry"')
      }
      const malformed = await app.inject({ method: 'POST', url: '/register', payload: product(8081), headers: { authorization: `Basic ${ADMIN}` }, remoteAddress: '10.1.2.3' })
      assert.equal(malformed.statusCode, 401)
      const created = await write(app, '/register', product(8081), ADMIN)
      assert.equal(created.statusCode, 201)
      const id = created.json().id
      assert.equal((await write(app, '/heartbeat', { instance_id: id })).statusCode, 401)
      assert.equal((await write(app, '/deregister', { instance_id: id })).statusCode, 401)
      assert.equal((await app.inject({ method: 'DELETE', url: `/instances/${id}`, remoteAddress: '10.1.2.3' })).statusCode, 401)
      // An unknown instance: the caller learns it must authenticate before it learns the instance is unknown.
      assert.equal((await write(app, '/heartbeat', { instance_id: 'nope' })).statusCode, 401)
      assert.equal((await write(app, '/heartbeat', { instance_id: 'nope' }, ADMIN)).statusCode, 404)
      assert.equal((await write(app, '/heartbeat', { instance_id: id }, ADMIN)).statusCode, 200)
      assert.equal((await app.inject({ method: 'DELETE', url: `/instances/${id}`, headers: bearer(ADMIN), remoteAddress: '10.1.2.3' })).statusCode, 204)
    })

    it('the hijack: nobody without a token for product registers at their own URL, re-points or fails the real instance', async () => {
      const { app } = await registry(kind, { adminToken: ADMIN, acl: true })
      const real = await write(app, '/register', product(8081, { health_url: 'http://10.0.0.81:8081/health/ready' }), PRODUCT_TEAM)
      assert.equal(real.statusCode, 201)
      // The attacker's own URL, with no token, a payments token, or a stranger's.
      for (const token of [undefined, PAYMENTS, 'made-up-token-0123456789']) {
        const answer = await write(app, '/register', { service_name: 'product', url: 'http://10.6.6.6:80' }, token)
        assert.ok(answer.statusCode === 401 || answer.statusCode === 403, `${token}: ${answer.statusCode}`)
      }
      // Re-registering the real instance with a failing health URL, as another product token: refused.
      const takeover = await write(app, '/register', product(8081, { health_url: 'http://10.0.0.81:9/down', metadata: { evil: '1' } }), PRODUCT_CI)
      assert.equal(takeover.statusCode, 403)
      assert.equal(takeover.json().code, 'NOT_OWNER')
      const instances = (await app.inject({ method: 'GET', url: '/discover/product' })).json().instances
      assert.deepEqual(
        instances.map((i: { url: string; health_url: string; metadata: object }) => [i.url, i.health_url, i.metadata]),
        [['http://10.0.0.81:8081', 'http://10.0.0.81:8081/health/ready', {}]],
      )
    })

    it('ownership: only the token that registered an instance (or the admin) heartbeats, drains, deregisters or deletes it', async () => {
      const { app } = await registry(kind, { adminToken: ADMIN, acl: true })
      const id = (await write(app, '/register', product(8082), PRODUCT_TEAM)).json().id
      const attempts = [
        () => write(app, '/heartbeat', { instance_id: id }, PRODUCT_CI),
        () => write(app, '/heartbeat', { ...product(8082), status: 'draining' }, PRODUCT_CI),
        () => write(app, '/deregister', { instance_id: id }, PRODUCT_CI),
        () => write(app, '/deregister', product(8082), PRODUCT_CI),
        () => app.inject({ method: 'DELETE', url: `/instances/${id}`, headers: bearer(PRODUCT_CI), remoteAddress: '10.1.2.3' }),
        // Id-squatting: another service's instance under the same id.
        () => write(app, '/register', { ...product(9999), instance_id: id }, PRODUCT_CI),
      ]
      for (const attempt of attempts) {
        const answer = await attempt()
        assert.ok([403, 409].includes(answer.statusCode), `${answer.statusCode} ${answer.body}`)
      }
      const after = (await app.inject({ method: 'GET', url: '/discover/product' })).json().instances
      assert.equal(after.length, 1)
      assert.equal(after[0].status, 'up')
      // The owner may, and so may the admin.
      assert.equal((await write(app, '/heartbeat', { instance_id: id, status: 'draining' }, PRODUCT_TEAM)).statusCode, 200)
      assert.equal((await write(app, '/deregister', { instance_id: id }, ADMIN)).statusCode, 200)
    })

    it('scoped tokens write only their services; a name ending in * is a prefix', async () => {
      const { app } = await registry(kind, { adminToken: ADMIN, acl: true })
      const order = await write(app, '/register', { service_name: 'order', url: 'http://10.0.0.9:8083' }, PRODUCT_TEAM)
      assert.equal(order.statusCode, 403)
      assert.equal(order.json().code, 'TOKEN_NOT_ALLOWED')
      assert.equal((await write(app, '/register', { service_name: 'payment-api', url: 'http://10.0.0.9:1' }, PAYMENTS)).statusCode, 201)
      assert.equal((await write(app, '/register', { service_name: 'payments', url: 'http://10.0.0.9:2' }, PAYMENTS)).statusCode, 201)
      assert.equal((await write(app, '/register', { service_name: 'pay', url: 'http://10.0.0.9:3' }, PAYMENTS)).statusCode, 403)
      assert.equal((await write(app, '/register', { service_name: 'order', url: 'http://10.0.0.9:8083' }, ADMIN)).statusCode, 201)
      // The admin's instance is the admin's: a scoped token cannot touch it even if allowed the service.
      const adminProduct = (await write(app, '/register', product(8085), ADMIN)).json().id
      assert.equal((await write(app, '/heartbeat', { instance_id: adminProduct }, PRODUCT_TEAM)).statusCode, 403)
    })

    it('the read token: reads (and /metrics) need a token when it is set; any write token reads too; health stays open', async () => {
      const { app } = await registry(kind, { adminToken: ADMIN, readToken: READER, acl: true })
      // A blocking query too; with a short wait, as on etcd an index the store has not reached yet
      // waits (the whole wait) for its cache to catch up.
      for (const url of ['/discover/product', '/services', '/metrics', '/discover/product?index=424242&wait=1ms']) {
        const anonymous = await app.inject({ method: 'GET', url })
        assert.equal(anonymous.statusCode, 401, url)
        assert.equal(anonymous.json().code, 'UNAUTHORIZED')
        assert.equal(anonymous.headers['www-authenticate'], 'Bearer realm="registry"')
        assert.equal((await app.inject({ method: 'GET', url, headers: bearer('not-a-token-0123456789') })).statusCode, 401, url)
        for (const token of [READER, ADMIN, PRODUCT_TEAM]) assert.equal((await app.inject({ method: 'GET', url, headers: bearer(token) })).statusCode, 200, `${url} ${token}`)
      }
      assert.equal((await app.inject({ method: 'GET', url: '/health/live' })).statusCode, 200)
      // The read token writes nothing.
      const refused = await write(app, '/register', product(8081), READER)
      assert.equal(refused.statusCode, 403)
      assert.equal(refused.json().code, 'TOKEN_NOT_ALLOWED')
    })

    it('reloads the ACL: a removed token stops working, a new one starts; a broken file keeps the tokens in force', async () => {
      const logger = silentLogger()
      const path = aclFile([{ name: 'product-team', token: PRODUCT_TEAM, services: ['product'] }], 'rotate.json')
      const auth = new RegistryAuth({ logger, aclFile: path })
      auth.loadSync()
      const { app } = await registryOver(kind, { logger, ttlMs: 30_000, auth })
      assert.equal((await write(app, '/register', product(8081), PRODUCT_TEAM)).statusCode, 201)
      // Rotation: the new token is added under the same name, services move onto it, the old one goes.
      // Ownership follows the name, so the instance stays the team's all along.
      const rotated = 'product-team-rotated-0123456789'
      const both = [
        { name: 'product-team', token: PRODUCT_TEAM, services: ['product'] },
        { name: 'product-team', token: rotated, services: ['product'] },
      ]
      aclFile(both, 'rotate.json')
      assert.equal(await auth.reload('test'), true)
      assert.equal((await write(app, '/heartbeat', product(8081), PRODUCT_TEAM)).statusCode, 200)
      assert.equal((await write(app, '/heartbeat', product(8081), rotated)).statusCode, 200)
      aclFile([{ name: 'product-team', token: rotated, services: ['product'] }], 'rotate.json')
      assert.equal(await auth.reload('test'), true)
      assert.equal((await write(app, '/heartbeat', product(8081), PRODUCT_TEAM)).statusCode, 401)
      assert.equal((await write(app, '/heartbeat', product(8081), rotated)).statusCode, 200)
      writeFileSync(path, '{"tokens": [ broken')
      assert.equal(await auth.reload('test'), false)
      assert.equal((await write(app, '/heartbeat', product(8081), rotated)).statusCode, 200)
    })

    it('never puts a token in an answer', async () => {
      const { app } = await registry(kind, { adminToken: ADMIN, acl: true })
      for (const token of [ADMIN.slice(0, -1), PRODUCT_CI, 'secret-attacker-token-0123456789']) {
        const answer = await write(app, '/register', { service_name: 'order', url: 'http://10.0.0.9:1' }, token)
        assert.ok(!answer.body.includes(token) && !answer.body.includes(ADMIN), answer.body)
      }
    })
  })
}

for (const kind of STORE_KINDS) {
  describe(`bounds on writes (${kind.name})`, () => {
    it('a cap per service as well as in total, and bounded metadata', async () => {
      const { app } = await registryOver(kind, { ttlMs: 30_000, maxInstances: 10, maxInstancesPerService: 3 })
      for (let i = 0; i < 3; i++) assert.equal((await write(app, '/register', product(9000 + i), undefined, '127.0.0.1')).statusCode, 201)
      const full = await write(app, '/register', product(9003), undefined, '127.0.0.1')
      assert.equal(full.statusCode, 503)
      assert.equal(full.json().code, 'SERVICE_FULL')
      // Refreshing an instance already there is not a new one.
      assert.equal((await write(app, '/register', product(9000), undefined, '127.0.0.1')).statusCode, 200)
      // Other services still have room.
      assert.equal((await write(app, '/register', { service_name: 'order', url: 'http://10.0.0.1:1' }, undefined, '127.0.0.1')).statusCode, 201)
      const metadata = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`k${i}`, 'x'.repeat(200)]))
      const big = await write(app, '/register', { service_name: 'order', url: 'http://10.0.0.1:2', metadata }, undefined, '127.0.0.1')
      assert.equal(big.statusCode, 400)
      assert.equal(big.json().code, 'METADATA_TOO_LARGE')
    })

    it("a health URL names the instance's own host, or one the operator allowed: the registry probes no one else", async () => {
      const { app } = await registryOver(kind, { ttlMs: 30_000, healthCheckAllowedHosts: ['checks.internal'] })
      const register = (url: string, health_url: string) => write(app, '/register', { service_name: 'product', url, health_url }, undefined, '127.0.0.1')
      const elsewhere = await register('http://10.0.0.1:8081', 'http://169.254.169.254/latest/meta-data')
      assert.equal(elsewhere.statusCode, 400)
      assert.equal(elsewhere.json().code, 'HEALTH_URL_HOST_NOT_ALLOWED')
      assert.equal((await register('http://10.0.0.1:8081', 'http://10.0.0.2:8081/health')).statusCode, 400)
      assert.equal((await register('http://10.0.0.1:8081', 'http://10.0.0.1:9090/health')).statusCode, 201, 'another port of the same host')
      assert.equal((await register('http://10.0.0.1:8082', 'http://checks.internal/product')).statusCode, 201, 'an allowed host')
    })

    it('rate-limits writes per client address with 429 and Retry-After', async () => {
      const { app } = await registryOver(kind, { ttlMs: 30_000, writeRateLimitPerMinute: 5 })
      const answers = []
      for (let i = 0; i < 7; i++) answers.push(await write(app, '/register', product(9100 + i), undefined, '127.0.0.1'))
      assert.deepEqual(
        answers.map((a) => a.statusCode),
        [201, 201, 201, 201, 201, 429, 429],
      )
      assert.equal(answers[5]!.json().code, 'RATE_LIMITED')
      assert.ok(Number(answers[5]!.headers['retry-after']) > 0)
      // Another client is not held back by the first, and reads are never limited.
      assert.equal((await write(app, '/register', product(9200), undefined, '127.0.0.2')).statusCode, 201)
      assert.equal((await app.inject({ method: 'GET', url: '/discover/product', remoteAddress: '127.0.0.1' })).statusCode, 200)
    })

    it('drops the metric label sets of a service once it is gone', async () => {
      const { app } = await registryOver(kind, { ttlMs: 30_000 })
      const id = (await write(app, '/register', { service_name: 'ephemeral-1', url: 'http://10.0.0.1:1' }, undefined, '127.0.0.1')).json().id
      const before = (await app.inject({ method: 'GET', url: '/metrics' })).body
      assert.match(before, /registry_registrations_total\{service="ephemeral-1"/)
      assert.equal((await write(app, '/deregister', { instance_id: id }, undefined, '127.0.0.1')).statusCode, 200)
      const afterGone = (await app.inject({ method: 'GET', url: '/metrics' })).body
      assert.doesNotMatch(afterGone, /ephemeral-1/)
    })
  })
}

describe('auth building blocks', () => {
  it('parses an ACL file and says what is wrong with a bad one', () => {
    assert.equal(parseAcl(JSON.stringify({ tokens: [{ name: 'a', sha256: sha('x'), services: ['product'] }] })).length, 1)
    assert.throws(() => parseAcl('nope'), /not valid JSON/)
    assert.throws(() => parseAcl(JSON.stringify({ tokens: [{ name: 'a', sha256: 'short', services: ['product'] }] })), /sha256/)
    assert.throws(() => parseAcl(JSON.stringify({ tokens: [{ name: 'a', sha256: sha('x'), services: [] }] })), /services/)
    assert.throws(() => parseAcl(JSON.stringify({ tokens: [{ name: 'a', sha256: sha('x'), services: ['Product!'] }] })), /services/)
    const twice = { name: 'a', sha256: sha('x'), services: ['product'] }
    assert.throws(() => parseAcl(JSON.stringify({ tokens: [twice, { ...twice, name: 'b' }] })), /twice/)
    // One name, two tokens: a rotation in progress.
    assert.equal(parseAcl(JSON.stringify({ tokens: [twice, { ...twice, sha256: sha('y') }] })).length, 2)
  })

  it('matches services and prefixes, and knows a loopback peer', () => {
    assert.equal(serviceAllowed(['product'], 'product'), true)
    assert.equal(serviceAllowed(['product'], 'product-v2'), false)
    assert.equal(serviceAllowed(['product*'], 'product-v2'), true)
    assert.equal(serviceAllowed(['*'], 'anything'), true)
    for (const address of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopback(address), true, address)
    for (const address of ['10.0.0.1', '::ffff:10.0.0.1', '::', '0.0.0.0', '1127.0.0.1', undefined]) assert.equal(isLoopback(address), false, String(address))
  })
})
