// Traces across services (the registry's too), metrics on every process, and log lines that carry
// the trace and request ids of the request they were written for.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import { startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts'
import { startRole, type LogLine, type RunningProcess } from '../helpers/process.ts'
import { freePorts } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

// OTLP span kinds
const SERVER = 2
const CLIENT = 3

describe('observability across real processes', () => {
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>
  let registry: RunningProcess
  let product: RunningProcess
  let order: RunningProcess
  let gateway: RunningProcess
  const dataDir = mkdtempSync(join(tmpdir(), 'msa-obs-'))

  before(async () => {
    receiver = await startOtlpReceiver()
    const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' }
    registry = await startRole('registry', { env: otel })
    const env = { REGISTRY_URL: registry.url, DATA_DIR: dataDir, HEARTBEAT_INTERVAL_SECONDS: '0.5', ...otel }
    ;[product, order, gateway] = await Promise.all([startRole('product', { env }), startRole('order', { env }), startRole('gateway', { env })])
    await waitFor(async () => (await http('GET', `${order.url}/health/ready`)).status === 200, { what: 'order ready' })
    await waitFor(async () => (await http('GET', `${gateway.url}/health/ready`)).status === 200, { what: 'gateway ready' })
  })

  after(async () => {
    await Promise.all([product, order, gateway].filter(Boolean).map((p) => p.stop()))
    await registry?.stop()
    await receiver?.close()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('puts the spans of one order, in the order and product services, in one trace with the right parents', async () => {
    const created = await http('POST', `${product.url}/products`, { name: 'Traced', price: 2.5 })
    assert.equal(created.status, 201)
    const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736'
    const callerSpan = '00f067aa0ba902b7'
    const placed = await http('POST', `${order.url}/orders`, { product_id: created.body.id, quantity: 2 }, { traceparent: `00-${callerTrace}-${callerSpan}-01` })
    assert.equal(placed.status, 201)

    const inTrace = (service: string, kind: number, name: string) => (span: ReceivedSpan) =>
      span.traceId === callerTrace && span.service === service && span.kind === kind && span.name === name
    const spans = await waitFor(
      () => {
        const orderServer = receiver.spans.find(inTrace('order', SERVER, 'POST /orders'))
        // Its first discovery of product is a GET in this trace too: pick the call to product.
        const orderClient = receiver.spans.find((s) => inTrace('order', CLIENT, 'GET')(s) && String(s.attributes['url.path']).startsWith('/products/'))
        const productServer = receiver.spans.find(inTrace('product', SERVER, 'GET /products/:id'))
        const productQuery = receiver.spans.find((s) => s.traceId === callerTrace && s.service === 'product' && s.name.startsWith('SELECT'))
        const orderInsert = receiver.spans.find((s) => s.traceId === callerTrace && s.service === 'order' && s.name.startsWith('INSERT'))
        return orderServer && orderClient && productServer && productQuery && orderInsert && { orderServer, orderClient, productServer, productQuery, orderInsert }
      },
      { timeoutMs: 10_000, what: 'the spans of the order trace' },
    )

    // The caller's span -> order's server span -> its call to product -> product's server span -> its query.
    assert.equal(spans.orderServer.parentSpanId, callerSpan)
    assert.equal(spans.orderClient.parentSpanId, spans.orderServer.spanId)
    assert.equal(spans.productServer.parentSpanId, spans.orderClient.spanId)
    assert.equal(spans.productQuery.parentSpanId, spans.productServer.spanId)
    assert.equal(spans.orderInsert.parentSpanId, spans.orderServer.spanId)
    assert.equal(spans.productServer.attributes['http.route'], '/products/:id')
    assert.equal(spans.productServer.attributes['http.response.status_code'], 200)

    // Resource: the role as service.name, the registry instance id as service.instance.id.
    const discovered = await http('GET', `${registry.url}/discover/product`)
    assert.equal(spans.productServer.instanceId, discovered.body.instances[0].id)

    // The request log lines carry the same trace id and the instance id.
    const line = await order.waitForLog((l) => l.msg === 'request' && l.route === '/orders' && l.method === 'POST')
    assert.equal(line.trace_id, callerTrace)
    assert.match(String(line.service_instance_id), /^order-[0-9a-f]{12}$/)
  })

  it('puts one order through the gateway in one trace, and its log lines on every hop carry its trace and request ids', async () => {
    const created = await http('POST', `${product.url}/products`, { name: 'Gatewayed', price: 1.25 })
    assert.equal(created.status, 201)
    const traceId = 'a3ce929d0e0e47364bf92f3577b34da6'
    const callerSpan = 'b7ad6b7169203331'
    const placed = await http('POST', `${gateway.url}/orders`, { product_id: created.body.id, quantity: 3 }, { traceparent: `00-${traceId}-${callerSpan}-01` })
    assert.equal(placed.status, 201)
    // The gateway's own request id (the caller sent none), answered and sent on.
    const requestId = placed.headers.get('x-request-id') ?? ''
    assert.match(requestId, /^[0-9a-f-]{36}$/)

    const inTrace = (service: string, kind: number, name: string, path?: (p: string) => boolean) => (span: ReceivedSpan) =>
      span.traceId === traceId && span.service === service && span.kind === kind && span.name === name && (!path || path(String(span.attributes['url.path'])))
    const spans = await waitFor(
      () => {
        const gatewayServer = receiver.spans.find(inTrace('gateway', SERVER, 'POST /orders'))
        const gatewayClient = receiver.spans.find(inTrace('gateway', CLIENT, 'POST', (p) => p === '/orders'))
        const orderServer = receiver.spans.find(inTrace('order', SERVER, 'POST /orders'))
        const orderClient = receiver.spans.find(inTrace('order', CLIENT, 'GET', (p) => p.startsWith('/products/')))
        const productServer = receiver.spans.find(inTrace('product', SERVER, 'GET /products/:id'))
        const productQuery = receiver.spans.find((s) => s.traceId === traceId && s.service === 'product' && s.name.startsWith('SELECT'))
        return (
          gatewayServer &&
          gatewayClient &&
          orderServer &&
          orderClient &&
          productServer &&
          productQuery && { gatewayServer, gatewayClient, orderServer, orderClient, productServer, productQuery }
        )
      },
      { timeoutMs: 10_000, what: 'the spans of the order through the gateway' },
    )

    // The gateway continues the caller's trace, and each hop's server span is a child of the
    // client span that called it (not of the caller's span, whose traceparent the gateway replaces).
    assert.equal(spans.gatewayServer.parentSpanId, callerSpan)
    assert.equal(spans.gatewayClient.parentSpanId, spans.gatewayServer.spanId)
    assert.equal(spans.orderServer.parentSpanId, spans.gatewayClient.spanId)
    assert.equal(spans.orderClient.parentSpanId, spans.orderServer.spanId)
    assert.equal(spans.productServer.parentSpanId, spans.orderClient.spanId)
    assert.equal(spans.productQuery.parentSpanId, spans.productServer.spanId)
    assert.equal(spans.gatewayClient.attributes['http.response.status_code'], 201)

    // Every line written for the request, on every hop, carries its request id and trace id; each
    // request line names its own process's server span.
    const server = { gateway: spans.gatewayServer, order: spans.orderServer, product: spans.productServer }
    for (const proc of [gateway, order, product]) {
      const line = await proc.waitForLog((l) => l.msg === 'request' && l.reqId === requestId)
      assert.equal(line.trace_id, traceId, `${proc.role} request line`)
      assert.equal(line.span_id, server[proc.role as keyof typeof server].spanId, `${proc.role} request line`)
      const lines = proc.logs.filter((l: LogLine) => l.reqId === requestId)
      assert.ok(
        lines.every((l) => l.trace_id === traceId),
        `${proc.role}: ${JSON.stringify(lines)}`,
      )
    }
  })

  it("traces the registry too, and its log lines written for a request carry that request's ids", async () => {
    const listening = await registry.waitForLog((l) => l.event === 'listening')
    const registered = await registry.waitForLog((l) => l.event === 'registered' && l.service_name === 'gateway')
    const span = await waitFor(
      () => receiver.spans.find((s) => s.service === 'registry' && s.kind === SERVER && s.name === 'POST /register' && s.traceId === registered.trace_id),
      { what: "the registry's span of the gateway's registration" },
    )
    assert.equal(span.instanceId, `registry-${String(listening.epoch)}`)
    // Written by the route's handler through the registry's own logger, not the request's.
    assert.equal(registered.span_id, span.spanId)
    // Traced, the requests the fast path would answer before Fastify take the route, and are traced
    // like any other: heartbeats, and a plain discovery (here continuing a caller's trace).
    await waitFor(() => receiver.spans.find((s) => s.service === 'registry' && s.kind === SERVER && s.name === 'POST /heartbeat'), { what: 'a traced heartbeat' })
    const callerTrace = '0af7651916cd43dd8448eb211c80319c'
    const callerSpan = '00f067aa0ba902b7'
    const discovered = await http('GET', `${registry.url}/discover/product`, undefined, { traceparent: `00-${callerTrace}-${callerSpan}-01` })
    assert.equal(discovered.status, 200)
    const discover = await waitFor(() => receiver.spans.find((s) => s.service === 'registry' && s.traceId === callerTrace), { what: 'the span of a plain discovery' })
    assert.equal(discover.name, 'GET /discover/:service_name')
    assert.equal(discover.parentSpanId, callerSpan)
  })

  it('starts no trace from a background call: heartbeats, registrations and watches send no client span of their own', async () => {
    // By now every service has registered, heartbeated many times and watched.
    await waitFor(() => receiver.spans.filter((s) => s.service === 'registry' && s.name === 'POST /heartbeat').length >= 6, { what: 'heartbeats' })
    const rootClients = receiver.spans.filter((s) => s.kind === CLIENT && s.parentSpanId === '')
    assert.deepEqual(
      rootClients.map((s) => `${s.service} ${s.name} ${String(s.attributes['url.path'])}`),
      [],
    )
  })

  it('serves Prometheus metrics on every process, labelled by route template', async () => {
    const created = await http('POST', `${product.url}/products`, { name: 'Metered', price: 1 })
    await http('GET', `${product.url}/products/${created.body.id}`)
    await http('GET', `${product.url}/products/00000000-0000-4000-8000-000000000000`)
    await http('POST', `${order.url}/orders`, { product_id: created.body.id, quantity: 1 })

    const productMetrics = await http('GET', `${product.url}/metrics`)
    assert.equal(productMetrics.status, 200)
    assert.match(productMetrics.headers.get('content-type') ?? '', /text\/plain/)
    const text = productMetrics.text
    assert.match(text, /http_requests_total\{[^}]*method="GET"[^}]*route="\/products\/:id"[^}]*status="200"[^}]*\} [1-9]/)
    assert.match(text, /http_requests_total\{[^}]*route="\/products\/:id"[^}]*status="404"[^}]*\} [1-9]/)
    assert.match(text, /http_request_duration_seconds_bucket\{/)
    assert.match(text, /nodejs_eventloop_lag_seconds/)
    assert.match(text, /process_cpu_seconds_total/)
    assert.ok(!text.includes(created.body.id), 'no raw ids as label values')

    const orderMetrics = (await http('GET', `${order.url}/metrics`)).text
    assert.match(orderMetrics, /upstream_requests_total\{[^}]*service="product"[^}]*instance="product-[0-9a-f]{12}"[^}]*outcome="success"[^}]*\} [1-9]/)

    // Heartbeats come every 0.5 s: wait for the first to be counted.
    const registryMetrics = await waitFor(
      async () => {
        const text = (await http('GET', `${registry.url}/metrics`)).text
        return /registry_heartbeats_total\{[^}]*outcome="ok"[^}]*\} [1-9]/.test(text) && text
      },
      { what: 'a heartbeat in the registry metrics' },
    )
    assert.match(registryMetrics, /registry_instances\{[^}]*service="product"[^}]*status="up"[^}]*\} 1/)
    assert.match(registryMetrics, /registry_registrations_total\{[^}]*service="order"/)
    assert.match(registryMetrics, /registry_evictions_total/)
  })

  it('reports readiness with the checks that pass', async () => {
    const ready = await http('GET', `${product.url}/health/ready`)
    assert.equal(ready.status, 200)
    assert.deepEqual(ready.body, { status: 'ready', checks: { database: 'ok', registry: 'ok' } })
  })
})

describe('tracing with the collector down', () => {
  it('answers every request, and still stops cleanly and in time, logging the traces it lost', async () => {
    // A port that was free a moment ago: nothing listens there.
    const [port] = await freePorts(1)
    const registry = await startRole('registry', { env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_BSP_SCHEDULE_DELAY: '50' } })
    try {
      for (let i = 0; i < 3; i++) assert.equal((await http('GET', `${registry.url}/services`)).status, 200)
      const started = Date.now()
      // The unsent spans would hold the stop for the exporter's whole timeout (10 s), past the
      // registry's own deadline (8 s): it gives up on them instead, and says so.
      assert.deepEqual(await registry.stop(), { code: 0, signal: null })
      assert.ok(Date.now() - started < 6000, `stopped in ${Date.now() - started} ms`)
      assert.ok(
        registry.logs.some((l) => l.event === 'otel' && l.level === 'warn'),
        'the lost traces are logged',
      )
    } finally {
      await registry.stop('SIGKILL')
    }
  })
})
