// A gateway that cannot be tricked: paths that a URL parser would resolve to another route of the
// instance are refused; a client's mistakes are answered as the client's and never count against
// an instance's circuit breaker; answers name no internal address or library error; and request
// log lines leave the query string out. Requests go over a raw socket: HTTP clients normalise
// paths (and refuse to send some of these) before they leave.
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { RegistryClient } from '../../src/discovery/registry-client.ts'
import { Registration } from '../../src/discovery/registration.ts'
import { http } from '../helpers/http.ts'
import { silentLogger } from '../helpers/logger.ts'
import type { RunningProcess } from '../helpers/process.ts'
import { rawConnect, type RawResponse } from '../helpers/raw-http.ts'
import { discover, freePorts, startRoles, startTracked, stopAll, tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const BREAKER_FAILURES = 3
/** More of each mistake than it takes to open a breaker. */
const N = BREAKER_FAILURES + 2

/** One request over its own connection, exactly as written; the socket is closed after `count` responses. */
async function raw(port: number, head: string, count = 1): Promise<RawResponse[]> {
  const connection = await rawConnect(port)
  try {
    await connection.write(head)
    return await connection.responses(count)
  } finally {
    connection.socket.destroy()
  }
}

const get = (target: string, headers = '') => `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${headers}\r\n`

/** An upstream that records every proxied request as it arrives (before its body) and answers with what it saw. */
function recordingServer(seen: string[]): Server {
  return createServer((request: IncomingMessage, response) => {
    // Proxied requests only (the gateway also fetches /openapi.json for its combined document).
    if (request.headers['x-forwarded-for'] !== undefined) seen.push(`${request.method} ${request.url}`)
    let bytes = 0
    request.on('data', (chunk: Buffer) => (bytes += chunk.length))
    request.on('end', () => {
      // Hop-by-hop headers of this connection (to the gateway), not of the client's.
      const body = JSON.stringify({ url: request.url, headers: request.headers, bytes })
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'keep-alive', 'keep-alive': 'timeout=60' })
      response.end(body)
    })
  })
}

describe('gateway hardening', () => {
  const dir = tempDir('gateway-hardening')
  const started: RunningProcess[] = []
  let registry: RunningProcess
  let product: RunningProcess
  let order: RunningProcess
  let gateway: RunningProcess
  const seen: string[] = []
  let echo: Server
  let deadPort: number
  let registryClient: RegistryClient
  const registrations: Registration[] = []

  /** The gateway's /metrics lines for one metric and service. */
  const metricLines = async (metric: string, service: string) => {
    const text = (await http('GET', `${gateway.url}/metrics`)).text
    return text.split('\n').filter((line) => line.startsWith(`${metric}{`) && line.includes(`service="${service}"`))
  }
  /** Breaker state of each instance of the service the gateway has called: 0 closed, 1 half-open, 2 open. */
  const breakerStates = async (service: string) => (await metricLines('upstream_breaker_state', service)).map((line) => Number(line.split(' ').at(-1)))
  /** Calls the gateway has made to the service, whatever their outcome. */
  const upstreamCalls = async (service: string) => (await metricLines('upstream_requests_total', service)).reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0)
  const failedCalls = async (service: string) => (await metricLines('upstream_requests_total', service)).filter((line) => !line.includes('outcome="success"'))

  /** The service's breakers are all closed, none of its calls failed, and a plain request is served. */
  const assertUnharmed = async (service: string, path: string) => {
    const states = await breakerStates(service)
    assert.ok(states.length > 0, `the gateway has a breaker for ${service}`)
    assert.deepEqual(
      states,
      states.map(() => 0),
      `${service}'s breakers are closed`,
    )
    assert.deepEqual(await failedCalls(service), [], `no call to ${service} failed`)
    assert.equal((await http('GET', `${gateway.url}${path}`)).status, 200)
  }

  before(async () => {
    registry = await startTracked(started, 'registry', { env: { REGISTRY_TTL_SECONDS: '5' } })
    const env = { REGISTRY_URL: registry.url, DATA_DIR: dir.path, HEARTBEAT_INTERVAL_SECONDS: '0.5', LOG_LEVEL: 'debug' }
    const roles = await startRoles(
      started,
      ['product', { env }],
      ['order', { env }],
      [
        'gateway',
        {
          env: {
            ...env,
            GATEWAY_ROUTES: '/products=product,/orders=order,/echo=echo,/dead=dead',
            BREAKER_FAILURES: String(BREAKER_FAILURES),
            // An opened breaker stays open for the rest of the file.
            BREAKER_HALF_OPEN_SECONDS: '600',
          },
        },
      ],
    )
    ;[product, order, gateway] = roles as [RunningProcess, RunningProcess, RunningProcess]
    echo = recordingServer(seen)
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
    deadPort = (await freePorts(1))[0]!
    registryClient = new RegistryClient({ urls: [registry.url] })
    for (const [serviceName, url] of [
      ['echo', `http://127.0.0.1:${(echo.address() as AddressInfo).port}`],
      // Registered, heartbeating, and nothing listening there.
      ['dead', `http://127.0.0.1:${deadPort}`],
    ] as const) {
      const registration = new Registration({ client: registryClient, serviceName, url, heartbeatIntervalMs: 500, logger: silentLogger() })
      registration.start()
      registrations.push(registration)
    }
    await waitFor(
      async () =>
        (await discover(registry.url, 'product')).length === 1 &&
        (await discover(registry.url, 'order')).length === 1 &&
        (await discover(registry.url, 'echo')).length === 1 &&
        (await discover(registry.url, 'dead')).length === 1,
      { what: 'every instance registered' },
    )
    // The gateway knows each instance, so that it has a breaker for each.
    for (const path of ['/products', '/orders', '/echo/warm-up']) {
      await waitFor(async () => (await http('GET', `${gateway.url}${path}`)).status === 200, { what: `GET ${path} through the gateway` })
    }
  })

  after(async () => {
    await Promise.all(registrations.map((r) => r.stop()))
    await registryClient?.close()
    echo?.closeAllConnections()
    await new Promise((resolve) => echo?.close(resolve))
    await stopAll(started)
    dir.remove()
  })

  it('refuses paths with backslashes or dot segments, encoded or not, before they reach an instance', async () => {
    const escapes = [
      '/x\\..\\..\\metrics',
      '/..\\metrics',
      '/../metrics',
      '/x/../../health/ready',
      '/%2e%2e/metrics',
      '/%2E%2E/metrics',
      '/.%2e/metrics',
      '/%2e./metrics',
      '/..%2fmetrics',
      '/..%2Fhealth%2Fready',
      '/%5c..%5cmetrics',
      '/x%5C..%5C..%5Cmetrics',
      '/%252e%252e/metrics',
      '/%252e%252e%252fmetrics',
      '/..%252fmetrics',
      '/%255c..%255cmetrics',
      '/%25252e%25252e/metrics',
      '/%2525252e%2525252e/metrics',
      '/./metrics',
      '/%2e/metrics',
      '/..;/metrics',
      '/x/..',
    ]
    const before = seen.length
    for (const prefix of ['/products', '/echo']) {
      for (const suffix of escapes) {
        const target = `${prefix}${suffix}`
        const [response] = await raw(gateway.port, get(target))
        assert.equal(response!.status, 400, `${target}: ${response!.body}`)
        assert.match(response!.headers['content-type'] ?? '', /application\/problem\+json/, target)
        assert.equal(JSON.parse(response!.body).code, 'INVALID_PATH', target)
      }
    }
    assert.deepEqual(seen.slice(before), [], 'the recording upstream received none of them')
    // Paths that only look odd, and any query, still pass exactly as sent.
    for (const target of ['/echo/a.b/c..d/e...f/%7E/x%2Fy?q=../../metrics&r=%zz&s=\\..', '/echo/files/.hidden?x=%2e%2e']) {
      const [response] = await raw(gateway.port, get(target))
      assert.equal(response!.status, 200, target)
      assert.equal(JSON.parse(response!.body).url, target)
    }
    await assertUnharmed('echo', '/echo/after')
    await assertUnharmed('product', '/products')
  })

  it('answers Expect: 100-continue with 100 Continue, then proxies the body: the order is created', async () => {
    const created = await http('POST', `${gateway.url}/products`, { name: 'Kettle', price: 12.5 })
    assert.equal(created.status, 201)
    const before = await upstreamCalls('order')
    for (let i = 0; i < N; i++) {
      // curl sends Expect: 100-continue for bodies over 1 KiB, and waits for the 100 before sending.
      const body = JSON.stringify({ product_id: created.body.id, quantity: 2 }) + ' '.repeat(2048)
      const connection = await rawConnect(gateway.port)
      try {
        await connection.write(
          `POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
        )
        const [interim] = await connection.responses(1)
        assert.equal(interim!.status, 100)
        await connection.write(body)
        const [, answer] = await connection.responses(2)
        assert.equal(answer!.status, 201, answer!.body)
        const placed = JSON.parse(answer!.body) as { id: string; total_price: number }
        assert.equal(placed.total_price, 25)
        assert.equal((await http('GET', `${gateway.url}/orders/${placed.id}`)).status, 200)
      } finally {
        connection.socket.destroy()
      }
    }
    assert.ok((await upstreamCalls('order')) >= before + N)
    await assertUnharmed('order', '/orders')
  })

  it('passes a query with .. or a stray % on as it is: the instance answers it (4xx), and is not blamed', async () => {
    const before = await upstreamCalls('product')
    // The product service takes `limit` only, and only a number.
    const targets = ['/products?limit=../../metrics', '/products?limit=..%2F..%2Fmetrics', '/products?limit=%zz', '/products?limit=1&x=/../..']
    for (let i = 0; i < N; i++) {
      for (const target of targets) {
        const [response] = await raw(gateway.port, get(target))
        assert.equal(response!.status, 400, `${target}: ${response!.body}`)
        assert.equal(JSON.parse(response!.body).code, 'VALIDATION_FAILED', target)
      }
    }
    assert.ok((await upstreamCalls('product')) >= before + N * targets.length, 'each went to the instance')
    await assertUnharmed('product', '/products')
  })

  it('refuses an absolute-form request target (400) without calling an instance', async () => {
    for (let i = 0; i < N; i++) {
      for (const head of [get('http://evil/products', ''), get('http://evil.example:8080/products/1?x=1'), get('https://127.0.0.1/orders')]) {
        const [response] = await raw(gateway.port, head)
        assert.equal(response!.status, 400, response!.body)
        assert.equal(JSON.parse(response!.body).code, 'INVALID_PATH')
      }
    }
    await assertUnharmed('product', '/products')
    await assertUnharmed('order', '/orders')
  })

  it('answers a body over the limit with 413, declared or streamed, and does not blame the instance', async () => {
    const limit = 1024 * 1024
    for (let i = 0; i < N; i++) {
      // Declared: refused before a byte of it is read.
      const [declared] = await raw(gateway.port, `POST /products HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${2 * limit}\r\n\r\n`)
      assert.equal(declared!.status, 413)
      assert.equal(JSON.parse(declared!.body).code, 'BODY_TOO_LARGE')
    }
    const calls = await upstreamCalls('echo')
    for (let i = 0; i < N; i++) {
      // Streamed (chunked, no length): counted on its way through, then cut off with a 413.
      const connection = await rawConnect(gateway.port)
      try {
        await connection.write('POST /echo/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n')
        const chunk = 'z'.repeat(64 * 1024)
        // Up to twice the limit, stopping as soon as the answer is there (or the gateway hung up).
        for (let sent = 0; sent < 2 * limit && !connection.received().includes('HTTP/1.1 ') && !connection.socket.destroyed; sent += chunk.length) {
          await connection.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`).catch(() => {})
        }
        const [answer] = await connection.responses(1)
        assert.equal(answer!.status, 413, answer!.body)
        assert.equal(JSON.parse(answer!.body).code, 'BODY_TOO_LARGE')
      } finally {
        connection.socket.destroy()
      }
    }
    // Each one reached the instance before it outgrew the limit.
    await waitFor(async () => (await upstreamCalls('echo')) >= calls + N, { what: 'the streamed attempts to settle' })
    await assertUnharmed('echo', '/echo/after-413')
    await assertUnharmed('product', '/products')
  })

  it('does not blame the instance when a client hangs up in the middle of its body', async () => {
    const calls = await upstreamCalls('echo')
    for (let i = 0; i < N; i++) {
      const arrived = seen.length
      const connection = await rawConnect(gateway.port)
      await connection.write(`PUT /echo/half-${i} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n${'h'.repeat(10)}`)
      // Gone once the instance has the request, with 990 bytes still to come.
      await waitFor(() => seen.length > arrived, { what: 'the request to reach the instance' })
      connection.socket.destroy()
    }
    await waitFor(async () => (await upstreamCalls('echo')) >= calls + N, { what: 'the abandoned attempts to settle' })
    await assertUnharmed('echo', '/echo/after-hang-up')
  })

  it("does not pass the instance's connection headers on: a client's Connection: close is kept", async () => {
    const connection = await rawConnect(gateway.port)
    await connection.write(get('/echo/close-me'))
    const [response] = await connection.responses(1)
    assert.equal(response!.status, 200)
    assert.equal(response!.headers['keep-alive'], undefined)
    assert.notEqual(response!.headers.connection, 'keep-alive')
    let closed = false
    void connection.closed.then(() => (closed = true))
    try {
      await waitFor(() => closed, { timeoutMs: 5000, what: 'the gateway to close the connection after its answer' })
    } finally {
      connection.socket.destroy()
    }
  })

  it('keeps query strings out of request log lines', async () => {
    const token = 'tok_qzxwvy'
    const ids: string[] = []
    const send = async (method: string, path: string, body?: unknown) => {
      const id = `hardening-log-${ids.length}`
      ids.push(id)
      const separator = path.includes('?') ? '&' : '?'
      return http(method, `${gateway.url}${path}${separator}secret=${token}`, body, { 'x-request-id': id })
    }
    // The product service refuses a query parameter it does not know (400): its line is logged all the same.
    assert.equal((await send('GET', '/products')).status, 400)
    assert.equal((await send('GET', '/products?limit=2')).status, 400)
    assert.equal((await send('GET', '/echo/logged')).status, 200)
    assert.equal((await send('POST', '/orders', { product_id: 'nope', quantity: 1 })).status, 400)
    assert.equal((await send('GET', '/nowhere')).status, 404)
    const [refused] = await raw(gateway.port, get(`/products/%2e%2e/metrics?secret=${token}`, 'X-Request-Id: hardening-log-refused\r\n'))
    assert.ok(refused!.status >= 400, "refused (the status is the first test's to check)")
    ids.push('hardening-log-refused')
    // Every request's line is written (gateway, and the services behind it) before looking.
    const requestLine = (p: RunningProcess, id: string) => p.logs.find((line) => line.reqId === id && String(line.msg).startsWith('request'))
    await waitFor(() => ids.every((id) => requestLine(gateway, id)), { what: 'the gateway request lines' })
    await waitFor(() => requestLine(product, 'hardening-log-0') && requestLine(order, 'hardening-log-3'), { what: 'the services request lines' })
    assert.equal(requestLine(gateway, 'hardening-log-1')!.url, '/products')
    for (const p of [gateway, product, order]) {
      const leaked = p.output.filter((line) => line.includes(token))
      assert.deepEqual(leaked, [], `${p.role} logged the query string`)
    }
  })

  it('answers upstream failures with a generic detail; the log keeps the instance and the error', async () => {
    const internals = [/127\.0\.0\.1/, new RegExp(`:${deadPort}\\b`), /https?:\/\//, /UND_ERR/, /ECONN|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND/, /FST_/]
    // Everything but `type`, which is a URL of ours (the problem's documentation).
    const assertGeneric = (body: { type: string; code: string; detail: string }) => {
      const { type: _type, ...rest } = body
      const text = JSON.stringify(rest)
      for (const pattern of internals) assert.doesNotMatch(text, pattern, `${body.code}: ${text}`)
    }
    // Nothing listens where the instance is registered.
    const dead = await http('GET', `${gateway.url}/dead/anything`)
    assert.equal(dead.status, 503)
    assert.equal(dead.body.code, 'UPSTREAM_UNAVAILABLE')
    assertGeneric(dead.body)
    const logged = await gateway.waitForLog((line) => line.event === 'upstream_error' && line.service === 'dead')
    assert.equal(logged.instance_url, `http://127.0.0.1:${deadPort}`)
    assert.ok((logged.codes as string[]).includes('ECONNREFUSED'), JSON.stringify(logged))
    assert.match(String(logged.err_message), /ECONNREFUSED/)

    // The order service answers the same way when the product service cannot be reached.
    const created = await http('POST', `${gateway.url}/products`, { name: 'Last one', price: 1 })
    assert.equal(created.status, 201)
    product.child.kill('SIGKILL')
    await product.exited
    const placed = await http('POST', `${gateway.url}/orders`, { product_id: created.body.id, quantity: 1 })
    assert.equal(placed.status, 503, placed.text)
    assert.equal(placed.body.code, 'UPSTREAM_UNAVAILABLE')
    assertGeneric(placed.body)
    await order.waitForLog((line) => line.event === 'upstream_error' && line.service === 'product' && typeof line.instance_url === 'string')
    // And the gateway itself, for the product service.
    const read = await http('GET', `${gateway.url}/products/${created.body.id}`)
    assert.equal(read.status, 503, read.text)
    assert.equal(read.body.code, 'UPSTREAM_UNAVAILABLE')
    assertGeneric(read.body)
  })
})
