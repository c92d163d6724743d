import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, it } from 'node:test'
import { buildRegistryApp } from '../../src/registry/server.ts'
import { parseWait } from '../../src/protocol/registry.ts'
import { capturingLogger, silentLogger } from '../helpers/logger.ts'
import { rawConnect } from '../helpers/raw-http.ts'
import { waitFor } from '../helpers/wait.ts'
import { closeRegistries, registry } from '../helpers/registry-app.ts'
import { memory, STORE_KINDS } from '../helpers/stores.ts'

afterEach(closeRegistries)

const json = { 'content-type': 'application/json' }
const heartbeat = (base: string, body: string, headers: Record<string, string> = json) => fetch(`${base}/heartbeat`, { method: 'POST', headers, body })

const settledWithin = async <T>(promise: Promise<T>, ms: number): Promise<boolean> =>
  Promise.race([promise.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))])

for (const kind of STORE_KINDS) {
  describe(`blocking queries (${kind.name})`, () => {
    it('answer at once when the caller is behind, with index, epoch and warm-up headers', async () => {
      const { app, store, epoch } = await registry(kind)
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:1' })
      const response = await app.inject({ method: 'GET', url: '/discover/product?index=0&wait=10s' })
      assert.equal(response.statusCode, 200)
      assert.ok(Number(response.headers['x-registry-index']) > 0)
      assert.equal(response.headers['x-registry-epoch'], epoch)
      assert.equal(response.headers['x-registry-warmup-ms'], '0')
      assert.equal(response.json().instances.length, 1)
    })

    it('block until the service changes, and only its own changes wake them', async () => {
      const { app, store, epoch } = await registry(kind)
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:1' })
      const index = store.discover('product').index
      const pending = app.inject({ method: 'GET', url: `/discover/product?index=${index}&epoch=${epoch}&wait=20s` })
      await store.register({ service_name: 'order', url: 'http://10.0.0.2:1' })
      assert.equal(await settledWithin(pending, 150), false, "another service's change does not wake it")
      await store.heartbeat({ service_name: 'product', url: 'http://10.0.0.1:1' })
      assert.equal(await settledWithin(pending, 150), false, 'a routine heartbeat does not wake it')
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:2' })
      const response = await pending
      assert.equal(response.json().instances.length, 2)
      assert.ok(Number(response.headers['x-registry-index']) > index)
    })

    it('end when the wait ends, with the same index', async () => {
      const { app, store } = await registry(kind)
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:1' })
      const index = store.discover('product').index
      const started = Date.now()
      const response = await app.inject({ method: 'GET', url: `/discover/product?index=${index}&wait=200ms` })
      assert.ok(Date.now() - started >= 190)
      assert.equal(Number(response.headers['x-registry-index']), index)
    })

    it('answer at once for an index from another epoch (a restarted registry)', async () => {
      const { app, store } = await registry(kind)
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:1' })
      const index = store.discover('product').index
      const response = await app.inject({ method: 'GET', url: `/discover/product?index=${index}&epoch=someone-else&wait=20s` })
      assert.equal(response.statusCode, 200)
    })

    it('are released when the registry shuts down', async () => {
      const store = await kind.make()
      const built = buildRegistryApp({ logger: silentLogger(), ttlMs: 60_000, store })
      // The index the service has, so that the query blocks (an unknown service's is 0 on memory, 1 on etcd).
      const index = store.discover('product').index
      const pending = built.app.inject({ method: 'GET', url: `/discover/product?index=${index}&wait=60s` })
      assert.equal(await settledWithin(pending, 20), false, 'the query blocks')
      const started = Date.now()
      await built.app.close()
      await pending
      assert.ok(Date.now() - started < 2000)
    })

    it('refuse a malformed wait or index with 400', async () => {
      const { app } = await registry(kind)
      for (const query of ['index=-1', 'index=x', 'wait=10', 'wait=1h', 'wait=10s&index=1&extra=1']) {
        const response = await app.inject({ method: 'GET', url: `/discover/product?${query}` })
        assert.equal(response.statusCode, 400, query)
        assert.equal(response.json().code, 'VALIDATION_FAILED')
      }
      assert.equal(parseWait('500ms'), 500)
      assert.equal(parseWait('30s'), 30_000)
      assert.equal(parseWait('5m'), 300_000)
      assert.equal(parseWait('5h'), undefined)
    })

    it('report the warm-up left after a start', async () => {
      const { app } = await registry(kind, { warmupMs: 5000 })
      const response = await app.inject({ method: 'GET', url: '/discover/product' })
      // On etcd the state outlives the process: there is nothing to warm up after a start.
      if (kind.name === 'etcd') assert.equal(response.headers['x-registry-warmup-ms'], '0')
      else assert.ok(Number(response.headers['x-registry-warmup-ms']) > 4000)
    })
  })

  describe(`event stream (${kind.name})`, () => {
    it('sends a snapshot, then each change of the services it follows', async () => {
      const { app, store } = await registry(kind)
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:1' })
      await app.listen({ host: '127.0.0.1', port: 0 })
      const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/events?service=product`
      const controller = new AbortController()
      const response = await fetch(url, { signal: controller.signal })
      assert.equal(response.status, 200)
      assert.match(response.headers.get('content-type') ?? '', /text\/event-stream/)
      const reader = response.body!.getReader()
      const decoder = new TextDecoder()
      let text = ''
      const events = () => text.split('\n\n').filter((block) => block.startsWith('event:'))
      const readUntil = async (count: number) => {
        await waitFor(
          async () => {
            const { value } = await reader.read()
            text += decoder.decode(value)
            return events().length >= count
          },
          { timeoutMs: 5000, what: `${count} events` },
        )
      }
      await readUntil(1)
      assert.match(events()[0]!, /^event: snapshot\ndata: /)
      assert.equal(JSON.parse(events()[0]!.split('data: ')[1]!).services[0].instances.length, 1)
      await store.register({ service_name: 'order', url: 'http://10.0.0.2:1' }) // not followed
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:2' })
      await readUntil(2)
      const change = JSON.parse(events()[1]!.split('data: ')[1]!)
      assert.equal(change.service_name, 'product')
      assert.equal(change.instances.length, 2)
      assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).body.match(/registry_watchers\{kind="event_stream"[^}]*\} (\d+)/)?.[1], '1')
      controller.abort()
    })
  })

  describe(`the discovery fast path (${kind.name})`, () => {
    it('answers exactly as the route does, counts the request, and leaves everything else to Fastify', async () => {
      const { app, store } = await registry(kind)
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:1', metadata: { zone: 'é-ü' } })
      await app.listen({ host: '127.0.0.1', port: 0 })
      const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
      const fast = await fetch(`${base}/discover/product`)
      const routed = await fetch(`${base}/discover/product?index=0`) // a query goes through Fastify
      assert.equal(fast.status, 200)
      assert.equal(await fast.text(), await routed.text())
      for (const header of ['content-type', 'x-registry-index', 'x-registry-epoch']) {
        assert.equal(fast.headers.get(header), routed.headers.get(header), header)
      }
      const bad = await fetch(`${base}/discover/Not%20Valid`)
      assert.equal(bad.status, 400)
      assert.equal(((await bad.json()) as { code: string }).code, 'VALIDATION_FAILED')
      const head = await fetch(`${base}/discover/product`, { method: 'HEAD' })
      assert.equal(head.status, 200)
      // Keep-alive as Fastify would set it (our own server is created by the factory).
      assert.match(fast.headers.get('keep-alive') ?? '', /timeout=72/)
      for (let i = 0; i < 4; i++) await (await fetch(`${base}/discover/product`)).arrayBuffer()
      // Exactly counted: 5 on the fast path, 1 through the route (the HEAD is counted apart).
      const metrics = await (await fetch(`${base}/metrics`)).text()
      assert.match(metrics, /http_requests_total\{method="GET",route="\/discover\/:service_name",status="200",role="registry"\} 6\n/)
    })
  })

  describe(`the heartbeat fast path (${kind.name})`, () => {
    it('leaves every bad or unusual heartbeat to the route, body and all, which answers as it always does', async () => {
      const { app, store } = await registry(kind)
      const instance = await store.register({ service_name: 'product', url: 'http://10.0.0.1:1' })
      assert.equal(instance.kind, 'created')
      await app.listen({ host: '127.0.0.1', port: 0 })
      const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
      const cases: Array<[string, string, Record<string, string>, number, string | undefined]> = [
        ['unknown instance', JSON.stringify({ instance_id: 'product-000000000000' }), json, 404, 'INSTANCE_NOT_FOUND'],
        ['malformed JSON', '{"service_name":"product",', json, 400, 'INVALID_JSON'],
        ['prototype pollution', '{"instance_id":"x","__proto__":{"polluted":1}}', json, 400, 'INVALID_JSON'],
        ['neither id nor url', JSON.stringify({ service_name: 'product' }), json, 400, 'VALIDATION_FAILED'],
        ['a JSON array', '[1,2]', json, 400, 'VALIDATION_FAILED'],
        ['a status nobody reports', JSON.stringify({ service_name: 'product', url: 'http://10.0.0.1:1', status: 'sleeping' }), json, 400, 'VALIDATION_FAILED'],
        ['another content type', JSON.stringify({ service_name: 'product', url: 'http://10.0.0.1:1' }), { 'content-type': 'text/xml' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
        ["over the fast path's 4 KiB, under the limit", JSON.stringify({ service_name: 'product', url: 'http://10.0.0.1:1', padding: 'x'.repeat(8000) }), json, 200, undefined],
        ['over the 1 MiB limit', JSON.stringify({ service_name: 'product', url: 'http://10.0.0.1:1', padding: 'x'.repeat(1_100_000) }), json, 413, 'BODY_TOO_LARGE'],
      ]
      for (const [what, body, headers, status, code] of cases) {
        const response = await heartbeat(base, body, headers)
        const answer = (await response.json()) as { code?: string; id?: string }
        assert.equal(response.status, status, what)
        assert.equal(answer.code, code, what)
        if (status === 200) assert.equal(answer.id, instance.instance.id, what)
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined)
      // A heartbeat that reports a status changes membership: watchers hear of it.
      const index = store.discover('product').index
      const draining = await heartbeat(base, JSON.stringify({ instance_id: instance.instance.id, status: 'draining' }))
      assert.equal(((await draining.json()) as { status: string }).status, 'draining')
      assert.ok(store.discover('product').index > index)
    })
  })

  describe(`registry request lines (${kind.name})`, () => {
    it('keep routine heartbeats at debug, and give a reported status other than up a line of its own', async () => {
      const { logger, lines } = capturingLogger('info')
      const built = await registry(kind, { logger })
      await built.app.listen({ host: '127.0.0.1', port: 0 })
      const base = `http://127.0.0.1:${(built.app.server.address() as AddressInfo).port}`
      const post = (path: string, body: unknown) => fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      const instance = { service_name: 'product', url: 'http://10.0.0.1:1' }
      assert.equal((await post('/register', instance)).status, 201)
      for (let i = 0; i < 3; i++) assert.equal((await post('/heartbeat', { ...instance, status: 'up' })).status, 200)
      assert.equal((await post('/heartbeat', { ...instance, status: 'draining' })).status, 200)
      await waitFor(() => lines.find((line) => line.event === 'status_reported'), { what: 'the status line' })
      assert.deepEqual(
        lines.filter((line) => line.route === '/heartbeat'),
        [],
        'no heartbeat request lines at info',
      )
      assert.equal(lines.filter((line) => line.route === '/register').length, 1)
      assert.equal(lines.filter((line) => line.event === 'registered').length, 1)
      const status = lines.find((line) => line.event === 'status_reported')
      assert.equal(status?.status, 'draining')
      assert.equal(status?.url, instance.url)
    })
  })
}

// Memory only: it needs a stopped clock (etcd stamps heartbeats with the real time); the fast
// path's other heartbeat behaviour runs on both stores above.
describe('the heartbeat fast path (memory, stopped clock)', () => {
  // A stopped clock: every heartbeat stamps the same time, so answers compare byte for byte.
  const stopped = () => registry(memory, { clock: () => Date.parse('2026-11-29T10:00:00.000Z') })

  it('answers exactly as the route does, and counts every heartbeat once', async () => {
    const { app, store } = await stopped()
    await store.register({ service_name: 'product', url: 'http://10.0.0.1:1', metadata: { zone: 'é-ü' } })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    const body = JSON.stringify({ service_name: 'product', url: 'http://10.0.0.1:1' })
    const fast = await heartbeat(base, body)
    // A streamed body (no Content-Length) is left to Fastify: the route's own answer.
    const routed = await fetch(`${base}/heartbeat`, { method: 'POST', headers: json, body: new Blob([body]).stream(), duplex: 'half' } as RequestInit)
    assert.equal(fast.status, 200)
    assert.equal(routed.status, 200)
    assert.equal(await fast.text(), await routed.text())
    assert.equal(fast.headers.get('content-type'), routed.headers.get('content-type'))
    assert.match(fast.headers.get('keep-alive') ?? '', /timeout=72/)

    // A body that arrives in pieces is put together.
    const port = (app.server.address() as AddressInfo).port
    const connection = await rawConnect(port)
    await connection.write(`POST /heartbeat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 10)}`)
    await new Promise((resolve) => setImmediate(resolve))
    await connection.write(body.slice(10))
    const [pieced] = await connection.responses(1)
    connection.socket.destroy()
    assert.equal(pieced?.status, 200)
    assert.equal(pieced?.body, Buffer.from(await (await heartbeat(base, body)).arrayBuffer()).toString('latin1'))

    assert.equal((await heartbeat(base, JSON.stringify({ service_name: 'product', url: 'http://10.0.0.1:2' }))).status, 404)
    const metrics = await (await fetch(`${base}/metrics`)).text()
    assert.match(metrics, /http_requests_total\{method="POST",route="\/heartbeat",status="200",role="registry"\} 4\n/)
    assert.match(metrics, /http_requests_total\{method="POST",route="\/heartbeat",status="404",role="registry"\} 1\n/)
    assert.match(metrics, /registry_heartbeats_total\{outcome="ok",role="registry"\} 4\n/)
    assert.match(metrics, /registry_heartbeats_total\{outcome="unknown_instance",role="registry"\} 1\n/)
    // Only requests that went through Fastify are timed: the streamed one. The other three
    // 200s were answered by the fast path.
    assert.match(metrics, /http_request_duration_seconds_count\{role="registry",method="POST",route="\/heartbeat",status="200"\} 1\n/)
  })
})
