import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { HealthChecker } from '../../src/registry/health-checker.ts'
import { MemoryStore } from '../../src/registry/memory-store.ts'
import { effectiveStatus } from '../../src/registry/store.ts'
import { silentLogger } from '../helpers/logger.ts'

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
    const checker = new HealthChecker({ store, logger: silentLogger(), intervalMs: 60_000, timeoutMs: 1000, failuresToDown: 3 })
    try {
      store.register({ service_name: 'product', url: 'http://10.1.1.1:1', health_url: healthUrl })
      store.register({ service_name: 'product', url: 'http://10.1.1.1:2' }) // no health URL: never probed
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
      store.heartbeat({ service_name: 'product', url: 'http://10.1.1.1:1' })
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
    const checker = new HealthChecker({ store, logger: silentLogger(), intervalMs: 60_000, timeoutMs: 500, failuresToDown: 1 })
    try {
      store.register({ service_name: 'order', url: 'http://10.1.1.1:3', health_url: 'http://127.0.0.1:1/health/ready' })
      await checker.runOnce()
      assert.deepEqual(store.discover('order').instances, [])
      assert.equal(effectiveStatus(store.members('order').instances[0]!), 'down')
    } finally {
      await checker.stop()
    }
  })
})

describe('instance status', () => {
  it('discovers only instances that report up, and shows the others in members', () => {
    const store = new MemoryStore({ ttlMs: 60_000 })
    store.register({ service_name: 'product', url: 'http://10.1.1.1:1', status: 'starting' })
    store.register({ service_name: 'product', url: 'http://10.1.1.1:2' })
    assert.deepEqual(
      store.discover('product').instances.map((i) => i.url),
      ['http://10.1.1.1:2'],
    )
    const before = store.discover('product').index
    store.heartbeat({ service_name: 'product', url: 'http://10.1.1.1:1', status: 'up' })
    assert.equal(store.discover('product').instances.length, 2)
    assert.ok(store.discover('product').index > before, 'a status change moves the index')
    store.heartbeat({ service_name: 'product', url: 'http://10.1.1.1:2', status: 'draining' })
    assert.deepEqual(
      store.discover('product').instances.map((i) => i.url),
      ['http://10.1.1.1:1'],
    )
    const members = Object.fromEntries(store.members('product').instances.map((i) => [i.url, i.reportedStatus]))
    assert.deepEqual(members, { 'http://10.1.1.1:1': 'up', 'http://10.1.1.1:2': 'draining' })
  })
})
