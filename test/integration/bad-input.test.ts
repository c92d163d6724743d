// Nothing a client sends may produce a 500 or stop a process: hostile and malformed requests
// against real processes, which must keep serving afterwards.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'

/** Writes raw bytes to a server and returns whatever it answers before closing. */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let answer = ''
    socket.setTimeout(5000, () => socket.destroy())
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')))
    socket.on('close', () => resolve(answer))
    socket.on('error', () => resolve(answer))
    socket.end(bytes)
  })
}

describe('bad input against running processes', () => {
  let registry: RunningProcess
  let product: RunningProcess
  let order: RunningProcess
  const dataDir = mkdtempSync(join(tmpdir(), 'msa-bad-'))

  before(async () => {
    registry = await startRole('registry')
    const env = { REGISTRY_URL: registry.url, DATA_DIR: dataDir }
    ;[product, order] = await Promise.all([startRole('product', { env }), startRole('order', { env })])
  })

  after(async () => {
    await Promise.all([product, order].filter(Boolean).map((p) => p.stop()))
    await registry?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('answers a wrong method 405 with Allow, a body that is not JSON 415, and names what is wrong', async () => {
    const wrongMethods: Array<[string, string, string]> = [
      ['PUT', `${product.url}/products`, 'GET, HEAD, POST'],
      ['DELETE', `${product.url}/products/00000000-0000-4000-8000-000000000000`, 'GET, HEAD'],
      ['PATCH', `${order.url}/orders`, 'GET, HEAD, POST'],
      ['GET', `${registry.url}/register`, 'POST'],
      ['PUT', `${registry.url}/discover/product`, 'GET, HEAD'],
    ]
    for (const [method, url, allow] of wrongMethods) {
      const response = await http(method, url)
      assert.equal(response.status, 405, `${method} ${url}`)
      assert.equal(response.headers.get('allow'), allow, `${method} ${url}`)
      assert.equal(response.body.code, 'METHOD_NOT_ALLOWED')
    }
    for (const url of [`${product.url}/products`, `${order.url}/orders`, `${registry.url}/register`, `${registry.url}/heartbeat`]) {
      const response = await http('POST', url, 'hi', { 'content-type': 'text/plain' })
      assert.equal(response.status, 415, url)
      assert.equal(response.body.code, 'UNSUPPORTED_MEDIA_TYPE', url)
    }
    const named = async (url: string, body: unknown, path: string, pattern: RegExp) => {
      const response = await http('POST', url, body)
      assert.equal(response.status, 400, `${url} ${JSON.stringify(body)}: ${response.text}`)
      assert.equal(response.body.code, 'VALIDATION_FAILED')
      const error = (response.body.errors as Array<{ path: string; message: string }>).find((e) => e.path === path)
      assert.ok(error && pattern.test(error.message), `${JSON.stringify(body)}: ${response.text}`)
      assert.doesNotMatch(response.text, /schema is false|equal to constant/)
    }
    await named(`${product.url}/products`, { name: 'x', price: '1.00', bogus: 1 }, 'body', /unknown field `bogus`/)
    await named(`${product.url}/products`, { name: '   ', price: '1.00' }, 'body/name', /not only spaces/)
    await named(`${order.url}/orders`, { product_id: '00000000-0000-4000-8000-000000000000', quantity: 1, qty: 2 }, 'body', /unknown field `qty`/)
    await named(`${registry.url}/register`, { service_name: 'x', url: 'http://127.0.0.1:1', healthUrl: 'http://127.0.0.1:1/h' }, 'body', /unknown field `healthUrl`/)
    await named(`${registry.url}/register`, { service_name: 'x', url: 'http://127.0.0.1:1', status: 'weird' }, 'body/status', /^must be one of: starting, up, draining$/)
    await named(`${registry.url}/heartbeat`, { service_name: 'x', url: 'http://127.0.0.1:1', status: 'weird' }, 'body/status', /^must be one of: starting, up, draining$/)
  })

  it('answers every malformed request with a 4xx problem, and no process stops', async () => {
    const targets = () =>
      [
        ['POST', `${registry.url}/register`],
        ['POST', `${registry.url}/heartbeat`],
        ['POST', `${product.url}/products`],
        ['POST', `${order.url}/orders`],
      ] as const
    const bodies = ['', '{', 'null', '[]', '"text"', '42', '{"a":1}', '{"__proto__":{"polluted":true}}', '\u0000\u0001', 'x'.repeat(2 * 1024 * 1024)]
    let checked = 0
    for (const [method, url] of targets()) {
      for (const body of bodies) {
        const response = await http(method, url, body, { 'content-type': 'application/json' })
        assert.ok(response.status >= 400 && response.status < 500, `${method} ${url} with ${JSON.stringify(body.slice(0, 20))} answered ${response.status}`)
        if (body.length > 1024 * 1024) assert.equal(response.status, 413)
        checked++
      }
    }
    assert.equal(checked, 40)
    for (const path of ['/products/not-a-uuid', '/products?limit=-1', '/orders?cursor=zzz', '/%E0%A4%A', '/products/%00']) {
      const response = await http('GET', `${product.url}${path.replace('/orders', '/products')}`)
      assert.ok(response.status >= 400 && response.status < 500, `${path}: ${response.status}`)
      assert.ok(typeof response.body === 'object' && response.body !== null && 'code' in response.body, `${path} answers problem+json`)
    }
    // Broken HTTP on the wire, which Node's parser refuses before any route: a problem all the same.
    for (const bytes of [
      'GARBAGE\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
      'POST /products HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{',
      'GET /products?\x7f HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /products HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n',
    ]) {
      const answer = await raw(product.port, bytes)
      assert.match(answer, /^HTTP\/1\.1 4\d\d [^\r]*\r\n(?:[^\r]+\r\n)*content-type: application\/problem\+json/i, `${JSON.stringify(bytes)} answered ${JSON.stringify(answer)}`)
    }
    for (const p of [registry, product, order]) {
      assert.equal(p.child.exitCode, null, `${p.role} still running`)
      assert.equal((await http('GET', `${p.url}/health/live`)).status, 200)
    }
    // And no 5xx was logged by anyone.
    for (const p of [registry, product, order]) {
      assert.ok(!p.logs.some((line) => typeof line.status === 'number' && line.status >= 500), `${p.role} logged no 5xx`)
    }
  })
})
