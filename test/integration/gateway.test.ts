// The gateway as users meet it: the seed's product and order calls through one port, headers
// added and removed, bodies streamed, and a problem+json answer when no instance can serve.
import assert from 'node:assert/strict'
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { discover, type RegisteredServer, registeredServer, tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

/** A GET with exactly the headers given (fetch would drop hop-by-hop ones). */
function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; headers: Headers; body: { url: string; headers: Record<string, string> } }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, (res) => {
      let text = ''
      res.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')))
      res.on('end', () => {
        const out = new Headers()
        for (const [name, value] of Object.entries(res.headers)) if (typeof value === 'string') out.set(name, value)
        resolve({ status: res.statusCode ?? 0, headers: out, body: JSON.parse(text) })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

/** Bytes of the large answers: past what the gateway reads whole before sending (64 KiB). */
const LARGE = 300 * 1024

/**
 * An upstream that answers with what it received; `/slow` never answers; `/large` and `/stream`
 * answer LARGE bytes, with a length and without one (chunked); `/empty` answers 204; `/cut` and
 * `/cut-stream` declare more than they send, then close the connection.
 */
function echoServer(): Server {
  return createServer((request: IncomingMessage, response) => {
    if (request.url?.startsWith('/echo/slow')) return
    if (request.url === '/echo/large') {
      response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': LARGE, 'set-cookie': ['a=1', 'b=2'] })
      return response.end(Buffer.alloc(LARGE, 'L'))
    }
    if (request.url === '/echo/stream') {
      response.writeHead(200, { 'content-type': 'text/plain' })
      for (let i = 0; i < 10; i++) response.write('S'.repeat(LARGE / 10))
      return response.end()
    }
    if (request.url === '/echo/empty') {
      response.writeHead(204, { 'x-upstream': 'echo' })
      return response.end()
    }
    if (request.url === '/echo/cut' || request.url === '/echo/cut-stream') {
      const length = request.url === '/echo/cut' ? 1000 : LARGE
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': length })
      response.write('{"partial":')
      // Gone in the middle of its answer.
      return setImmediate(() => response.socket?.destroy())
    }
    let bytes = 0
    request.on('data', (chunk: Buffer) => (bytes += chunk.length))
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive', 'keep-alive': 'timeout=5', 'x-upstream': 'echo' })
      response.end(JSON.stringify({ method: request.method, url: request.url, headers: request.headers, bytes }))
    })
  })
}

describe('gateway', () => {
  const dir = tempDir('gateway')
  let registry: RunningProcess
  let products: RunningProcess[] = []
  let order: RunningProcess
  let gateway: RunningProcess
  let echo: RegisteredServer

  before(async () => {
    registry = await startRole('registry', { env: { REGISTRY_TTL_SECONDS: '3' } })
    const env = { REGISTRY_URL: registry.url, DATA_DIR: dir.path, HEARTBEAT_INTERVAL_SECONDS: '0.5' }
    products = await Promise.all([startRole('product', { env }), startRole('product', { env })])
    order = await startRole('order', { env })
    gateway = await startRole('gateway', {
      env: { ...env, GATEWAY_ROUTES: '/products=product,/orders=order,/echo=echo,/ghost=ghost', UPSTREAM_TIMEOUT_SECONDS: '0.5' },
    })
    echo = await registeredServer(registry.url, 'echo', echoServer())
    await waitFor(async () => (await discover(registry.url, 'product')).length === 2 && (await discover(registry.url, 'echo')).length === 1, { what: 'instances' })
  })

  after(async () => {
    await echo?.close()
    await Promise.all([...products, order, gateway].filter(Boolean).map((p) => p.stop()))
    await registry?.stop()
    dir.remove()
  })

  it("serves the seed's product and order calls through one port", async () => {
    const created = await http('POST', `${gateway.url}/products`, { name: 'Notebook', price: 2.5 })
    assert.equal(created.status, 201)
    assert.equal(created.headers.get('location'), `/products/${created.body.id}`)
    assert.equal((await http('GET', `${gateway.url}/products/${created.body.id}`)).body.name, 'Notebook')
    assert.ok((await http('GET', `${gateway.url}/products?limit=100`)).body.items.some((p: { id: string }) => p.id === created.body.id))
    const placed = await http('POST', `${gateway.url}/orders`, { product_id: created.body.id, quantity: 3 })
    assert.equal(placed.status, 201)
    assert.equal(placed.body.total_price, 7.5)
    assert.equal((await http('GET', `${gateway.url}/orders/${placed.body.id}`)).body.id, placed.body.id)
    // Upstream errors pass through as they are.
    const bad = await http('POST', `${gateway.url}/orders`, { product_id: 'nope', quantity: 1 })
    assert.equal(bad.status, 400)
    assert.equal(bad.body.code, 'VALIDATION_FAILED')
  })

  it('adds X-Forwarded-* and X-Request-Id, keeps traceparent, and removes hop-by-hop headers', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    // node:http, not fetch: fetch refuses to send Connection and other hop-by-hop headers.
    const response = await rawGet(`${gateway.url}/echo/headers?x=1`, {
      traceparent,
      connection: 'keep-alive, x-secret-hop',
      'x-secret-hop': 'must not pass',
      'proxy-connection': 'keep-alive',
      'x-forwarded-for': '203.0.113.7',
    })
    assert.equal(response.status, 200)
    const seen = response.body.headers as Record<string, string>
    assert.equal(response.body.url, '/echo/headers?x=1')
    assert.equal(seen['x-forwarded-for'], '203.0.113.7, 127.0.0.1')
    assert.equal(seen['x-forwarded-proto'], 'http')
    assert.equal(seen['x-forwarded-host'], `127.0.0.1:${gateway.port}`)
    assert.match(seen['x-request-id'] ?? '', /^[0-9a-f-]{36}$/)
    assert.equal(response.headers.get('x-request-id'), seen['x-request-id'])
    assert.equal(seen.traceparent, traceparent)
    assert.equal(seen['x-secret-hop'], undefined)
    assert.equal(seen['proxy-connection'], undefined)
    assert.equal(response.headers.get('x-upstream'), 'echo')
    // A request id the client chose is kept.
    const own = await http('GET', `${gateway.url}/echo/id`, undefined, { 'x-request-id': 'client-chosen-1' })
    assert.equal(own.body.headers['x-request-id'], 'client-chosen-1')
  })

  it('streams request bodies through without buffering them into JSON', async () => {
    const body = 'x'.repeat(700 * 1024)
    const response = await http('PUT', `${gateway.url}/echo/upload`, body, { 'content-type': 'application/octet-stream' })
    assert.equal(response.status, 200)
    assert.equal(response.body.bytes, body.length)
    assert.equal(response.body.method, 'PUT')
    // Chunked, with no length: the gateway streams it on as it comes.
    const chunked = await new Promise<{ bytes: number }>((resolve, reject) => {
      const req = httpRequest(`${gateway.url}/echo/chunked`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } }, (res) => {
        let text = ''
        res.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')))
        res.on('end', () => resolve(JSON.parse(text) as { bytes: number }))
      })
      req.on('error', reject)
      for (let i = 0; i < 10; i++) req.write('y'.repeat(10_000))
      req.end()
    })
    assert.equal(chunked.bytes, 100_000)
  })

  it('passes answers on as the instance sent them: large, streamed, empty, HEAD', async () => {
    const large = await fetch(`${gateway.url}/echo/large`)
    assert.equal(large.status, 200)
    assert.equal(large.headers.get('content-length'), String(LARGE))
    assert.deepEqual(large.headers.getSetCookie(), ['a=1', 'b=2'])
    assert.equal((await large.arrayBuffer()).byteLength, LARGE)
    const streamed = await fetch(`${gateway.url}/echo/stream`)
    assert.equal(streamed.status, 200)
    assert.equal(streamed.headers.get('content-length'), null, 'no length: streamed as it comes')
    assert.equal((await streamed.text()).length, LARGE)
    const empty = await fetch(`${gateway.url}/echo/empty`)
    assert.equal(empty.status, 204)
    assert.equal(empty.headers.get('x-upstream'), 'echo')
    assert.equal(await empty.text(), '')
    const head = await fetch(`${gateway.url}/echo/large`, { method: 'HEAD' })
    assert.equal(head.status, 200)
    assert.equal(head.headers.get('content-length'), String(LARGE), 'the length of the answer a GET would have')
    assert.equal(await head.text(), '')
  })

  it('answers 502 UPSTREAM_FAILED when the instance fails in the middle of a small answer; cuts a streamed one', async () => {
    const cut = await http('GET', `${gateway.url}/echo/cut`)
    assert.equal(cut.status, 502)
    assert.equal(cut.body.code, 'UPSTREAM_FAILED')
    assert.doesNotMatch(cut.text, /127\.0\.0\.1|UND_ERR|ECONN/, 'no internals in the answer')
    // A large answer is already on its way to the client when the instance fails: the client sees
    // it end early (its length is not met), never a complete-looking answer.
    await assert.rejects(async () => {
      const response = await fetch(`${gateway.url}/echo/cut-stream`)
      await response.arrayBuffer()
    })
    assert.equal((await http('GET', `${gateway.url}/echo/after-cut`)).status, 200)
  })

  it('answers 503 NO_HEALTHY_INSTANCE for a route whose service has no instance', async () => {
    const response = await http('GET', `${gateway.url}/ghost/anything`)
    assert.equal(response.status, 503)
    assert.equal(response.body.code, 'NO_HEALTHY_INSTANCE')
    assert.match(response.headers.get('content-type') ?? '', /problem\+json/)
  })

  it('answers 504 UPSTREAM_TIMEOUT when the instance does not answer in time', async () => {
    const response = await http('GET', `${gateway.url}/echo/slow`)
    assert.equal(response.status, 504)
    assert.equal(response.body.code, 'UPSTREAM_TIMEOUT')
  })

  it('serves the combined OpenAPI document of the services behind it, and Swagger UI', async () => {
    const document = await waitFor(
      async () => {
        const response = await http('GET', `${gateway.url}/openapi.json`)
        return response.status === 200 && response.body.paths['/orders'] && response.body.paths['/products/{id}'] && response.body
      },
      { what: 'a combined document' },
    )
    assert.equal(document.openapi, '3.1.0')
    assert.equal(document.info.title, 'API gateway')
    for (const path of ['/products', '/products/{id}', '/orders', '/orders/{id}', '/health/ready']) assert.ok(document.paths[path], path)
    assert.equal(document.paths['/registry'], undefined)
    assert.ok(!JSON.stringify(document).includes('"~'), 'plain JSON Schema, no TypeBox internals')
    const create = document.paths['/orders'].post
    assert.deepEqual(create.requestBody.content['application/json'].schema.required, ['product_id', 'quantity'])
    assert.ok(create.responses['201'])
    const docs = await http('GET', `${gateway.url}/docs/`)
    assert.equal(docs.status, 200)
    assert.match(docs.text, /swagger-ui/i)
    const uiDocument = await http('GET', `${gateway.url}/docs/json`)
    assert.ok(uiDocument.body.paths['/orders'], 'the UI shows the combined document')
  })

  it('answers 404 for paths outside the routing table', async () => {
    const response = await http('GET', `${gateway.url}/elsewhere`)
    assert.equal(response.status, 404)
    assert.equal(response.body.code, 'ROUTE_NOT_FOUND')
  })

  it('keeps serving reads when a product instance is killed', async () => {
    const created = await http('POST', `${gateway.url}/products`, { name: 'Survivor', price: 1 })
    products[0]!.child.kill('SIGKILL')
    await products[0]!.exited
    for (let i = 0; i < 20; i++) {
      const response = await http('GET', `${gateway.url}/products/${created.body.id}`)
      assert.equal(response.status, 200, `read ${i}`)
    }
  })
})
