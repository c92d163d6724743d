// Authentication at the gateway, end to end over real processes: with GATEWAY_JWT_SECRET the
// catalogue stays open to read, everything else needs a bearer token, and each caller sees only
// its own orders; a subject header sent by a client never reaches a service, auth on or off.
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { SignJWT } from 'jose'
import { http } from '../helpers/http.ts'
import type { RunningProcess } from '../helpers/process.ts'
import { discover, type RegisteredServer, registeredServer, startRoles, startTracked, stopAll, tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const SECRET = 'integration-secret-0123456789abcdef-0123456789'

const token = (sub: string, secret = SECRET) =>
  new SignJWT({ sub }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('5m').sign(new TextEncoder().encode(secret))

const bearer = async (sub: string) => ({ authorization: `Bearer ${await token(sub)}` })

/** An upstream that answers with the headers it received. */
function echoServer(): Server {
  return createServer((request: IncomingMessage, response) => {
    request.resume()
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'application/json' })
      response.end(JSON.stringify({ headers: request.headers }))
    })
  })
}

describe('gateway authentication', () => {
  const dir = tempDir('gateway-auth')
  const started: RunningProcess[] = []
  let registry: RunningProcess
  let gateway: RunningProcess
  let openGateway: RunningProcess
  let echo: RegisteredServer

  before(async () => {
    registry = await startTracked(started, 'registry', { env: { REGISTRY_TTL_SECONDS: '3' } })
    const env = { REGISTRY_URL: registry.url, DATA_DIR: dir.path, HEARTBEAT_INTERVAL_SECONDS: '0.5' }
    const routes = { GATEWAY_ROUTES: '/products=product,/orders=order,/echo=echo' }
    ;[gateway, openGateway] = await startRoles(
      started,
      ['product', { env }],
      ['order', { env }],
      ['gateway', { env: { ...env, ...routes, GATEWAY_JWT_SECRET: SECRET } }],
      ['gateway', { env: { ...env, ...routes } }],
    ).then((processes) => processes.slice(2))
    echo = await registeredServer(registry.url, 'echo', echoServer())
    await waitFor(
      async () =>
        (await discover(registry.url, 'product')).length === 1 && (await discover(registry.url, 'order')).length === 1 && (await discover(registry.url, 'echo')).length === 1,
      { what: 'product, order and echo to register' },
    )
  })

  after(async () => {
    await echo?.close()
    await stopAll(started)
    dir.remove()
  })

  it('keeps reads of /products open, and needs a token for everything else', async () => {
    assert.equal((await http('POST', `${gateway.url}/products`, { name: 'Anonymous', price: 1 })).status, 401)
    const created = await http('POST', `${gateway.url}/products`, { name: 'Lamp', price: 12.5 }, await bearer('alice'))
    assert.equal(created.status, 201)
    const list = await http('GET', `${gateway.url}/products?limit=100`)
    assert.equal(list.status, 200)
    assert.ok(list.body.items.some((p: { id: string }) => p.id === created.body.id))
    assert.equal((await http('GET', `${gateway.url}/products/${created.body.id}`)).body.name, 'Lamp')

    const refused = await http('POST', `${gateway.url}/orders`, { product_id: created.body.id, quantity: 1 })
    assert.equal(refused.status, 401)
    assert.equal(refused.body.code, 'UNAUTHENTICATED')
    assert.equal(refused.headers.get('www-authenticate'), 'Bearer realm="gateway"')
    assert.match(refused.headers.get('content-type') ?? '', /application\/problem\+json/)
    assert.equal((await http('GET', `${gateway.url}/orders`)).status, 401)
    const forged = await http('GET', `${gateway.url}/orders`, undefined, { authorization: `Bearer ${await token('alice', 'not-the-secret-0123456789abcdef-0123456789')}` })
    assert.equal(forged.status, 401)
    assert.equal(forged.body.code, 'INVALID_TOKEN')

    // The gateway's own routes are not behind the token.
    for (const path of ['/health/live', '/health/ready', '/metrics', '/docs/']) {
      assert.equal((await http('GET', `${gateway.url}${path}`)).status, 200, path)
    }
  })

  it('gives each caller only its own orders; another caller’s is 404; a claimed subject is ignored', async () => {
    const product = await http('POST', `${gateway.url}/products`, { name: 'Pen', price: 2 }, await bearer('alice'))
    const alice = await bearer('alice')
    const bob = await bearer('bob')
    const placed = await http('POST', `${gateway.url}/orders`, { product_id: product.body.id, quantity: 3 }, alice)
    assert.equal(placed.status, 201)
    assert.equal(placed.body.total_price, 6)
    const id = placed.body.id
    assert.equal((await http('GET', `${gateway.url}/orders/${id}`, undefined, alice)).body.id, id)
    assert.deepEqual(
      (await http('GET', `${gateway.url}/orders?limit=100`, undefined, alice)).body.items.map((o: { id: string }) => o.id),
      [id],
    )

    const bobsList = await http('GET', `${gateway.url}/orders?limit=100`, undefined, bob)
    assert.equal(bobsList.status, 200)
    assert.deepEqual(bobsList.body.items, [])
    const bobReads = await http('GET', `${gateway.url}/orders/${id}`, undefined, bob)
    assert.equal(bobReads.status, 404)
    assert.equal(bobReads.body.code, 'ORDER_NOT_FOUND')

    // Bob claiming to be Alice in the header the services trust: the gateway replaces it.
    const claimed = { ...bob, 'x-auth-subject': 'alice' }
    assert.equal((await http('GET', `${gateway.url}/orders/${id}`, undefined, claimed)).status, 404)
    assert.deepEqual((await http('GET', `${gateway.url}/orders?limit=100`, undefined, claimed)).body.items, [])
    // Without a token, the claim gets nowhere at all.
    assert.equal((await http('GET', `${gateway.url}/orders/${id}`, undefined, { 'x-auth-subject': 'alice' })).status, 401)

    // The same Idempotency-Key from two callers: two orders.
    const key = { 'idempotency-key': `shared-${Date.now()}` }
    const fromAlice = await http('POST', `${gateway.url}/orders`, { product_id: product.body.id, quantity: 1 }, { ...alice, ...key })
    const fromBob = await http('POST', `${gateway.url}/orders`, { product_id: product.body.id, quantity: 1 }, { ...bob, ...key })
    assert.equal(fromAlice.status, 201)
    assert.equal(fromBob.status, 201)
    assert.notEqual(fromAlice.body.id, fromBob.body.id)
    assert.equal(fromBob.headers.get('idempotent-replayed'), 'false')
  })

  it('forwards the verified subject, and strips a claimed one also when authentication is off', async () => {
    const seen = await http('GET', `${gateway.url}/echo/who`, undefined, { ...(await bearer('alice')), 'x-auth-subject': 'mallory' })
    assert.equal(seen.status, 200)
    assert.equal(seen.body.headers['x-auth-subject'], 'alice')
    const open = await http('GET', `${openGateway.url}/echo/who`, undefined, { 'x-auth-subject': 'mallory' })
    assert.equal(open.status, 200)
    assert.equal(open.body.headers['x-auth-subject'], undefined)
  })

  it('never logs the secret', () => {
    assert.ok(!gateway.output.some((line) => line.includes(SECRET)))
    assert.ok(gateway.logs.some((line) => line.event === 'auth' && line.enabled === true))
  })
})
