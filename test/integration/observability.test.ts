// Traces across services, metrics on every process, and log lines that carry both ids.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import { startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { waitFor } from '../helpers/wait.ts'

// OTLP span kinds
const SERVER = 2
const CLIENT = 3

describe('observability across real processes', () => {
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>
  let registry: RunningProcess
  let product: RunningProcess
  let order: RunningProcess
  const dataDir = mkdtempSync(join(tmpdir(), 'msa-obs-'))

  before(async () => {
    receiver = await startOtlpReceiver()
    const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' }
    registry = await startRole('registry')
    const env = { REGISTRY_URL: registry.url, DATA_DIR: dataDir, HEARTBEAT_INTERVAL_SECONDS: '0.5', ...otel }
    ;[product, order] = await Promise.all([startRole('product', { env }), startRole('order', { env })])
    await waitFor(async () => (await http('GET', `${order.url}/health/ready`)).status === 200, { what: 'order ready' })
  })

  after(async () => {
    await Promise.all([product, order].filter(Boolean).map((p) => p.stop()))
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
    const spans = await waitFor(() => {
      const orderServer = receiver.spans.find(inTrace('order', SERVER, 'POST /orders'))
      const orderClient = receiver.spans.find(inTrace('order', CLIENT, 'GET'))
      const productServer = receiver.spans.find(inTrace('product', SERVER, 'GET /products/:id'))
      const productQuery = receiver.spans.find((s) => s.traceId === callerTrace && s.service === 'product' && s.name.startsWith('SELECT'))
      const orderInsert = receiver.spans.find((s) => s.traceId === callerTrace && s.service === 'order' && s.name.startsWith('INSERT'))
      return orderServer && orderClient && productServer && productQuery && orderInsert && { orderServer, orderClient, productServer, productQuery, orderInsert }
    }, { timeoutMs: 10_000, what: 'the spans of the order trace' })

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
    assert.match(String(line.instance_id), /^order-[0-9a-f]{12}$/)
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
    const registryMetrics = await waitFor(async () => {
      const text = (await http('GET', `${registry.url}/metrics`)).text
      return /registry_heartbeats_total\{[^}]*outcome="ok"[^}]*\} [1-9]/.test(text) && text
    }, { what: 'a heartbeat in the registry metrics' })
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
