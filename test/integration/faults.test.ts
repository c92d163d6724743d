// Fault injection under steady order traffic: each test counts the orders sent and failed while
// one thing goes wrong, on real processes. Figures are printed as test diagnostics.
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it, type TestContext } from 'node:test'
import { RegistryClient } from '../../src/discovery/registry-client.ts'
import { Registration } from '../../src/discovery/registration.ts'
import { http } from '../helpers/http.ts'
import { silentLogger } from '../helpers/logger.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { discover, startRoles, startTracked, stopAll, tempDir } from '../helpers/system.ts'
import { describeReport, orderTraffic } from '../helpers/traffic.ts'
import { waitFor } from '../helpers/wait.ts'

const HEARTBEAT_S = 0.3
const TTL_S = 2
const TIMEOUT_S = 0.5

interface System {
  registry: RunningProcess
  products: RunningProcess[]
  order: RunningProcess
  productId: string
  productEnv: Record<string, string>
  stop: () => Promise<void>
}

async function startSystem(t: TestContext, registryPort?: number): Promise<System> {
  const dir = tempDir('faults')
  // Whatever starts is stopped, even if a later start fails.
  const started: RunningProcess[] = []
  t.after(async () => {
    await stopAll(started)
    dir.remove()
  })
  const registry = await startTracked(started, 'registry', {
    env: { REGISTRY_TTL_SECONDS: String(TTL_S), REGISTRY_WARMUP_SECONDS: '1', ...(registryPort ? { PORT: String(registryPort) } : {}) },
  })
  const productEnv = { REGISTRY_URL: registry.url, DATA_DIR: dir.path, HEARTBEAT_INTERVAL_SECONDS: String(HEARTBEAT_S), DRAIN_SECONDS: '0.5' }
  const products = await startRoles(started, ['product', { env: productEnv }], ['product', { env: productEnv }], ['product', { env: productEnv }])
  const order = await startTracked(started, 'order', {
    env: {
      ...productEnv,
      UPSTREAM_TIMEOUT_SECONDS: String(TIMEOUT_S),
      UPSTREAM_CONNECT_TIMEOUT_SECONDS: '0.3',
      BREAKER_FAILURES: '3',
      BREAKER_HALF_OPEN_SECONDS: '1',
    },
  })
  await waitFor(async () => (await discover(registry.url, 'product')).length === 3, { what: '3 product instances' })
  const created = await http('POST', `${products[0]!.url}/products`, { name: 'Pencil', price: 0.1 })
  assert.equal(created.status, 201)
  const system: System = {
    registry,
    products,
    order,
    productId: created.body.id,
    productEnv,
    stop: async () => {
      for (const p of system.products) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGCONT')
      await Promise.all([...system.products, system.order].map((p) => p.stop('SIGTERM', 5000)))
      await system.registry.stop('SIGTERM', 5000)
    },
  }
  // Stop gracefully first (processes started later by a test are in `system`); the hook above
  // then only has leftovers to kill.
  t.after(system.stop)
  return system
}

describe('faults under steady order traffic', () => {
  it('kill -9 of a product instance: zero failed orders, and it leaves discovery within the TTL', async (t) => {
    const system = await startSystem(t)
    const traffic = orderTraffic(system.order.url, system.productId)
    await traffic.ordersFromNow(50)
    const victim = system.products[0]!
    const victimUrl = victim.url
    const killedAt = Date.now()
    victim.child.kill('SIGKILL')
    await waitFor(async () => !(await discover(system.registry.url, 'product')).some((i) => i.url === victimUrl), {
      timeoutMs: TTL_S * 1000 + 2000,
      what: 'the killed instance to leave discovery',
    })
    const goneAfterMs = Date.now() - killedAt
    await traffic.ordersFromNow(100)
    const report = await traffic.stop()
    t.diagnostic(describeReport('kill -9', report))
    t.diagnostic(`killed instance left discovery after ${goneAfterMs} ms (TTL ${TTL_S * 1000} ms)`)
    assert.deepEqual(report.failures, [])
    assert.ok(report.sent >= 150)
    assert.ok(goneAfterMs <= TTL_S * 1000 + 1000, `gone after ${goneAfterMs} ms`)
  })

  it('registry kill -9 for 30 s, then restart: zero failed orders, every instance back within two heartbeats', async (t) => {
    const system = await startSystem(t)
    const port = system.registry.port
    const traffic = orderTraffic(system.order.url, system.productId, { workers: 1, pauseMs: 20 })
    await traffic.ordersFromNow(20)
    system.registry.child.kill('SIGKILL')
    await system.registry.exited
    const downSince = Date.now()
    // Bounded wait of 30 s while traffic flows against the cached view.
    await new Promise((resolve) => setTimeout(resolve, 30_000))
    const sentWhileDown = traffic.sent
    system.registry = await startRole('registry', { env: { PORT: String(port), REGISTRY_TTL_SECONDS: String(TTL_S), REGISTRY_WARMUP_SECONDS: '1' } })
    const restartedAt = Date.now()
    const live = [...system.products, system.order].map((p) => p.url)
    await waitFor(
      async () => {
        const urls = [...(await discover(system.registry.url, 'product')), ...(await discover(system.registry.url, 'order'))].map((i) => i.url)
        return live.every((url) => urls.includes(url))
      },
      { timeoutMs: 5000, intervalMs: 10, what: 'every instance back in discovery' },
    )
    const backAfterMs = Date.now() - restartedAt
    await traffic.ordersFromNow(30)
    const report = await traffic.stop()
    t.diagnostic(describeReport('registry down 30 s', report))
    t.diagnostic(`registry down ${restartedAt - downSince} ms; ${sentWhileDown} orders sent before its restart; all instances back ${backAfterMs} ms after it listened`)
    assert.deepEqual(report.failures, [])
    assert.ok(sentWhileDown > 100, 'orders kept flowing while the registry was down')
    assert.ok(backAfterMs <= 2 * HEARTBEAT_S * 1000 + 300, `back after ${backAfterMs} ms`)
  })

  it('a product instance that hangs (SIGSTOP): orders succeed, slower by at most one timeout, and its breaker opens', async (t) => {
    const system = await startSystem(t)
    const traffic = orderTraffic(system.order.url, system.productId)
    await traffic.ordersFromNow(60)
    const baseline = await traffic.stop()
    const faulty = orderTraffic(system.order.url, system.productId)
    const victim = system.products[1]!
    const victimId = (await discover(system.registry.url, 'product')).find((i) => i.url === victim.url)!.id
    victim.child.kill('SIGSTOP')
    await system.order.waitForLog((l) => l.event === 'breaker' && l.instance_id === victimId && l.state === 'open', 10_000)
    await faulty.ordersFromNow(100)
    const report = await faulty.stop()
    victim.child.kill('SIGCONT')
    t.diagnostic(describeReport('baseline', baseline))
    t.diagnostic(describeReport('SIGSTOP', report))
    assert.deepEqual(report.failures, [])
    assert.ok(
      report.max <= baseline.max + TIMEOUT_S * 1000 + 250,
      `max ${report.max.toFixed(0)} ms vs baseline max ${baseline.max.toFixed(0)} ms + one ${TIMEOUT_S * 1000} ms timeout`,
    )
  })

  it('a product instance that answers 500: its breaker opens and traffic moves away', async (t) => {
    const system = await startSystem(t)
    let hits = 0
    const broken: Server = createServer((_request, response) => {
      hits++
      response.writeHead(500, { 'content-type': 'application/problem+json' })
      response.end('{"code":"INTERNAL"}')
    })
    await new Promise<void>((resolve) => broken.listen(0, '127.0.0.1', resolve))
    const brokenUrl = `http://127.0.0.1:${(broken.address() as AddressInfo).port}`
    const client = new RegistryClient({ urls: [system.registry.url] })
    const registration = new Registration({ client, serviceName: 'product', url: brokenUrl, heartbeatIntervalMs: HEARTBEAT_S * 1000, logger: silentLogger() })
    t.after(async () => {
      await registration.stop()
      await client.close()
      broken.closeAllConnections()
      await new Promise((resolve) => broken.close(resolve))
    })
    registration.start()
    await waitFor(async () => (await discover(system.registry.url, 'product')).length === 4, { what: 'the broken instance in discovery' })
    const brokenId = (await discover(system.registry.url, 'product')).find((i) => i.url === brokenUrl)!.id

    const traffic = orderTraffic(system.order.url, system.productId)
    await system.order.waitForLog((l) => l.event === 'breaker' && l.instance_id === brokenId && l.state === 'open', 10_000)
    const hitsAtOpen = hits
    const openedAt = Date.now()
    await traffic.ordersFromNow(150)
    const windowS = (Date.now() - openedAt) / 1000
    const report = await traffic.stop()
    t.diagnostic(describeReport('500s', report))
    t.diagnostic(`broken instance: ${hitsAtOpen} calls until its breaker opened, ${hits - hitsAtOpen} probes in the next ${windowS.toFixed(1)} s`)
    assert.deepEqual(report.failures, [])
    // Open for 1 s at a time: at most one probe per second (+1 for a probe in flight).
    assert.ok(hits - hitsAtOpen <= Math.ceil(windowS) + 1, `${hits - hitsAtOpen} calls after the breaker opened`)
    const metrics = (await http('GET', `${system.order.url}/metrics`)).text
    assert.match(metrics, new RegExp(`upstream_breaker_state\\{[^}]*instance="${brokenId}"[^}]*\\} [12]`))
  })

  it('rolling restart of every product instance: zero failed orders', async (t) => {
    const system = await startSystem(t)
    const traffic = orderTraffic(system.order.url, system.productId)
    await traffic.ordersFromNow(30)
    for (let k = 0; k < system.products.length; k++) {
      const old = system.products[k]!
      const replacement = await startRole('product', { env: system.productEnv })
      await waitFor(async () => (await discover(system.registry.url, 'product')).some((i) => i.url === replacement.url), { what: 'the replacement in discovery' })
      system.products[k] = replacement
      const exit = await old.stop('SIGTERM')
      assert.equal(exit.code, 0)
      await traffic.ordersFromNow(30)
    }
    const report = await traffic.stop()
    t.diagnostic(describeReport('rolling restart', report))
    assert.deepEqual(report.failures, [])
    assert.deepEqual((await discover(system.registry.url, 'product')).map((i) => i.url).sort(), system.products.map((p) => p.url).sort())
  })
})
