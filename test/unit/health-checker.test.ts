import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { HealthChecker, healthUrlAllowed } from '../../src/registry/health-checker.ts'
import { MemoryStore } from '../../src/registry/memory-store.ts'
import { effectiveStatus } from '../../src/registry/store.ts'
import { capturingLogger, silentLogger } from '../helpers/logger.ts'
import { waitFor } from '../helpers/wait.ts'

/** A health endpoint on 127.0.0.1 (port 0) that hands every request to `handle`. */
async function listen(handle: (request: IncomingMessage, response: ServerResponse) => void): Promise<{ server: Server; origin: string; close: () => Promise<void> }> {
  const server = createServer(handle)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const close = async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
  return { server, origin, close }
}

const healthOf = (store: MemoryStore, service: string, url: string) => store.members(service).instances.find((i) => i.url === url)?.health

describe('registry health checks', () => {
  let server: Server
  let healthUrl: string
  let answer = 200

  before(async () => {
    server = createServer((_request, response) => {
      response.writeHead(answer)
      response.end()
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    healthUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/health/ready`
  })

  after(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  it('marks an instance down after N consecutive failures and back up after a success', async () => {
    const store = new MemoryStore({ ttlMs: 60_000 })
    const checker = new HealthChecker({ store, logger: silentLogger(), intervalMs: 60_000, timeoutMs: 1000, failuresToDown: 3, allowedHosts: ['127.0.0.1'] })
    try {
      await store.register({ service_name: 'product', url: 'http://10.1.1.1:1', health_url: healthUrl })
      await store.register({ service_name: 'product', url: 'http://10.1.1.1:2' }) // no health URL: never probed
      const status = () =>
        store
          .members('product')
          .instances.map((i) => [i.url, effectiveStatus(i)])
          .sort()
      answer = 500
      await checker.runOnce()
      await checker.runOnce()
      assert.equal(store.discover('product').instances.length, 2, 'two failures are not enough')
      const indexBefore = store.discover('product').index
      await checker.runOnce()
      assert.deepEqual(status(), [
        ['http://10.1.1.1:1', 'down'],
        ['http://10.1.1.1:2', 'up'],
      ])
      assert.deepEqual(
        store.discover('product').instances.map((i) => i.url),
        ['http://10.1.1.1:2'],
      )
      assert.ok(store.discover('product').index > indexBefore, 'going down is a change watchers see')
      // Heartbeats do not bring a failing instance back; a passing check does.
      await store.heartbeat({ service_name: 'product', url: 'http://10.1.1.1:1' })
      assert.equal(store.discover('product').instances.length, 1)
      answer = 200
      await checker.runOnce()
      assert.deepEqual(status(), [
        ['http://10.1.1.1:1', 'up'],
        ['http://10.1.1.1:2', 'up'],
      ])
    } finally {
      await checker.stop()
    }
  })

  it('counts a refused connection as a failure', async () => {
    const store = new MemoryStore({ ttlMs: 60_000 })
    const checker = new HealthChecker({ store, logger: silentLogger(), intervalMs: 60_000, timeoutMs: 500, failuresToDown: 1, allowedHosts: ['127.0.0.1'] })
    try {
      await store.register({ service_name: 'order', url: 'http://10.1.1.1:3', health_url: 'http://127.0.0.1:1/health/ready' })
      await checker.runOnce()
      assert.deepEqual(store.discover('order').instances, [])
      assert.equal(effectiveStatus(store.members('order').instances[0]!), 'down')
    } finally {
      await checker.stop()
    }
  })
})

describe('health checks use bounded resources', () => {
  it('keeps at most `concurrency` probes in flight, and probes every instance', async () => {
    let inFlight = 0
    let most = 0
    const probed = new Set<string>()
    const endpoint = await listen((request, response) => {
      inFlight++
      most = Math.max(most, inFlight)
      probed.add(request.url ?? '')
      response.on('close', () => inFlight--)
      // Held open a while, so that probes sent together would overlap at the server.
      const timer = setTimeout(() => response.end('ok'), 300)
      response.on('close', () => clearTimeout(timer))
    })
    const store = new MemoryStore({ ttlMs: 60_000 })
    const checker = new HealthChecker({ store, logger: silentLogger(), intervalMs: 60_000, timeoutMs: 5000, failuresToDown: 1, concurrency: 2 })
    try {
      for (let n = 0; n < 6; n++) await store.register({ service_name: 'product', url: `http://127.0.0.1:${20_000 + n}`, health_url: `${endpoint.origin}/health/${n}` })
      await checker.runOnce()
      assert.deepEqual([...probed].sort(), ['/health/0', '/health/1', '/health/2', '/health/3', '/health/4', '/health/5'])
      assert.equal(most, 2, `at most 2 probes at once (the server saw ${most})`)
      // Nor does the checker keep a socket open to every instance between rounds.
      await waitFor(async () => (await new Promise<number>((resolve, reject) => endpoint.server.getConnections((error, n) => (error ? reject(error) : resolve(n))))) === 0, {
        timeoutMs: 2000,
        what: 'the probes to close their connections',
      })
      assert.deepEqual(
        store.members('product').instances.map((i) => i.health),
        Array(6).fill('passing'),
      )
    } finally {
      await endpoint.close()
      await checker.stop()
    }
  })

  it('fails a probe whose body trickles forever within the timeout, without stalling the others', async () => {
    const timeoutMs = 500
    let normalHits = 0
    const endpoint = await listen((request, response) => {
      if (request.url === '/trickle') {
        response.writeHead(200, { 'content-type': 'text/plain' })
        const timer = setInterval(() => response.write('.'), 50)
        response.on('close', () => clearInterval(timer))
      } else {
        normalHits++
        response.end('ok')
      }
    })
    const { logger, lines } = capturingLogger()
    const store = new MemoryStore({ ttlMs: 60_000 })
    const checker = new HealthChecker({ store, logger, intervalMs: 60_000, timeoutMs, failuresToDown: 1, concurrency: 2 })
    const trickling = 'http://127.0.0.1:20100'
    const normal = 'http://127.0.0.1:20101'
    try {
      await store.register({ service_name: 'product', url: trickling, health_url: `${endpoint.origin}/trickle` })
      await store.register({ service_name: 'product', url: normal, health_url: `${endpoint.origin}/ready` })
      const started = Date.now()
      let roundDone = false
      const round = checker.runOnce().then(() => {
        roundDone = true
      })
      await waitFor(() => healthOf(store, 'product', trickling) === 'failing', { timeoutMs: timeoutMs + 2000, what: 'the trickling instance to fail' })
      const elapsed = Date.now() - started
      assert.ok(elapsed >= timeoutMs - 50 && elapsed < timeoutMs + 1000, `failed after ${elapsed} ms, expected about ${timeoutMs} ms`)
      await waitFor(() => roundDone, { timeoutMs: 2000, what: 'the round to finish' })
      await round
      assert.equal(normalHits, 1, 'the other instance was probed in the same round')
      assert.equal(healthOf(store, 'product', normal), 'passing')
      assert.deepEqual(
        store.discover('product').instances.map((i) => i.url),
        [normal],
      )
      const failing = lines.find((line) => line.event === 'health_failing')
      assert.equal(failing?.url, trickling)
      assert.match(String(failing?.reason), /within 500 ms/)
    } finally {
      await endpoint.close()
      await checker.stop()
    }
  })

  it('stops at once, ending probes in flight without counting them as failures', async () => {
    let arrived = 0
    const endpoint = await listen(() => {
      arrived++ // and never answers
    })
    const store = new MemoryStore({ ttlMs: 60_000 })
    const checker = new HealthChecker({ store, logger: silentLogger(), intervalMs: 60_000, timeoutMs: 30_000, failuresToDown: 1, concurrency: 1 })
    try {
      await store.register({ service_name: 'product', url: 'http://127.0.0.1:20200', health_url: `${endpoint.origin}/hang` })
      await store.register({ service_name: 'product', url: 'http://127.0.0.1:20201', health_url: `${endpoint.origin}/next` })
      const round = checker.runOnce()
      await waitFor(() => arrived >= 1, { timeoutMs: 2000, what: 'the first probe to arrive' })
      const started = Date.now()
      await checker.stop()
      await round
      assert.ok(Date.now() - started < 1000, `stop took ${Date.now() - started} ms`)
      assert.equal(arrived, 1, 'no probe started after stop')
      assert.deepEqual(
        store.members('product').instances.map((i) => i.health),
        ['passing', 'passing'],
      )
    } finally {
      await endpoint.close()
    }
  })

  it('never connects to a health URL on another host than the instance', async () => {
    let hits = 0
    const endpoint = await listen((_request, response) => {
      hits++
      response.end('ok')
    })
    const port = new URL(endpoint.origin).port
    const register = async (store: MemoryStore) => await store.register({ service_name: 'product', url: `http://localhost:${port}`, health_url: `${endpoint.origin}/health/ready` })
    const { logger, lines } = capturingLogger()
    const store = new MemoryStore({ ttlMs: 60_000 })
    const checker = new HealthChecker({ store, logger, intervalMs: 60_000, timeoutMs: 1000, failuresToDown: 1 })
    // The same registration with 127.0.0.1 allowed: proof that the endpoint is reachable and counted.
    const allowedStore = new MemoryStore({ ttlMs: 60_000 })
    const allowedChecker = new HealthChecker({ store: allowedStore, logger: silentLogger(), intervalMs: 60_000, timeoutMs: 1000, failuresToDown: 1, allowedHosts: ['127.0.0.1'] })
    try {
      await register(store)
      await checker.runOnce()
      await checker.runOnce()
      assert.equal(hits, 0, 'no request reached the disallowed host')
      assert.equal(lines.filter((line) => line.event === 'health_url_refused').length, 1, 'refused once, and said so once')
      await register(allowedStore)
      await allowedChecker.runOnce()
      assert.equal(hits, 1)
    } finally {
      await endpoint.close()
      await checker.stop()
      await allowedChecker.stop()
    }
  })

  it("allows a health URL on the instance's own host or on an allowed host only", async () => {
    const cases: Array<[instanceUrl: string, healthUrl: string, allowedHosts: string[], expected: boolean]> = [
      ['http://10.0.0.5:8081', 'http://10.0.0.5:8081/health/ready', [], true],
      ['http://10.0.0.5:8081', 'http://10.0.0.5:9090/health', [], true],
      ['http://product.internal:8081', 'https://PRODUCT.Internal/health', [], true],
      ['http://10.0.0.5:8081', 'http://10.0.0.6:8081/health', [], false],
      ['http://localhost:8081', 'http://127.0.0.1:8081/health', [], false],
      ['http://10.0.0.5:8081', 'http://169.254.169.254/latest/meta-data/', [], false],
      ['http://10.0.0.5:8081', 'http://10.0.0.5.evil.example/health', [], false],
      ['http://10.0.0.5:8081', 'http://10.0.0.5@evil.example/health', [], false],
      ['http://10.0.0.5:8081', 'http://health.internal:9000/check', ['health.internal'], true],
      ['http://10.0.0.5:8081', 'http://health.internal:9000/check', ['HEALTH.internal'], true],
      ['http://10.0.0.5:8081', 'http://evil.health.internal/check', ['health.internal'], false],
      ['http://10.0.0.5:8081', 'http://health.internal/check', ['other.internal', '10.0.0.6'], false],
      ['http://10.0.0.5:8081', 'http://10.0.0.6/check', ['other.internal', '10.0.0.6'], true],
      ['http://[::1]:8081', 'http://[::1]:9000/health', [], true],
      ['http://[::1]:8081', 'http://[0:0:0:0:0:0:0:1]:9000/health', [], true],
      ['http://[::1]:8081', 'http://[::2]:8081/health', [], false],
      ['http://[::1]:8081', 'http://[fd00::2]:8081/health', ['fd00::2'], true],
      ['http://[::1]:8081', 'http://[fd00::2]:8081/health', ['[FD00::2]'], true],
      ['http://[::1]:8081', 'http://127.0.0.1:8081/health', [], false],
      ['http://10.0.0.5:8081', 'not a url', ['not a url'], false],
      ['not a url', 'http://10.0.0.5/health', [], false],
    ]
    for (const [instanceUrl, healthUrl, allowedHosts, expected] of cases) {
      assert.equal(healthUrlAllowed(instanceUrl, healthUrl, allowedHosts), expected, `${instanceUrl} ${healthUrl} [${allowedHosts.join(', ')}]`)
    }
  })
})

describe('instance status', () => {
  it('discovers only instances that report up, and shows the others in members', async () => {
    const store = new MemoryStore({ ttlMs: 60_000 })
    await store.register({ service_name: 'product', url: 'http://10.1.1.1:1', status: 'starting' })
    await store.register({ service_name: 'product', url: 'http://10.1.1.1:2' })
    assert.deepEqual(
      store.discover('product').instances.map((i) => i.url),
      ['http://10.1.1.1:2'],
    )
    const before = store.discover('product').index
    await store.heartbeat({ service_name: 'product', url: 'http://10.1.1.1:1', status: 'up' })
    assert.equal(store.discover('product').instances.length, 2)
    assert.ok(store.discover('product').index > before, 'a status change moves the index')
    await store.heartbeat({ service_name: 'product', url: 'http://10.1.1.1:2', status: 'draining' })
    assert.deepEqual(
      store.discover('product').instances.map((i) => i.url),
      ['http://10.1.1.1:1'],
    )
    const members = Object.fromEntries(store.members('product').instances.map((i) => [i.url, i.reportedStatus]))
    assert.deepEqual(members, { 'http://10.1.1.1:1': 'up', 'http://10.1.1.1:2': 'draining' })
  })
})
