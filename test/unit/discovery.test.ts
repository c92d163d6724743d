import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, it } from 'node:test'
import { backoffDelay, jitter } from '../../src/lib/backoff.ts'
import { RegistryClient } from '../../src/discovery/registry-client.ts'
import { Registration } from '../../src/discovery/registration.ts'
import { Resolver } from '../../src/discovery/resolver.ts'
import { RegistryAuth } from '../../src/registry/auth.ts'
import { buildRegistryApp, type RegistryApp } from '../../src/registry/server.ts'
import { silentLogger } from '../helpers/logger.ts'
import { waitFor } from '../helpers/wait.ts'

async function startRegistry(port = 0): Promise<RegistryApp & { url: string; port: number }> {
  const registry = buildRegistryApp({ logger: silentLogger(), ttlMs: 60_000 })
  await registry.app.listen({ host: '127.0.0.1', port })
  const bound = (registry.app.server.address() as AddressInfo).port
  return { ...registry, url: `http://127.0.0.1:${bound}`, port: bound }
}

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

describe('backoff', () => {
  it('grows exponentially up to the cap, with jitter inside [cap/2, cap]', async () => {
    const options = { initialMs: 100, maxMs: 1000 }
    assert.equal(
      backoffDelay(0, options, () => 1),
      100,
    )
    assert.equal(
      backoffDelay(0, options, () => 0),
      50,
    )
    assert.equal(
      backoffDelay(3, options, () => 1),
      800,
    )
    assert.equal(
      backoffDelay(10, options, () => 1),
      1000,
    )
    assert.equal(
      backoffDelay(10, options, () => 0),
      500,
    )
  })

  it('jitters a period by at most the fraction', async () => {
    assert.equal(
      jitter(1000, 0.1, () => 0),
      900,
    )
    assert.equal(
      jitter(1000, 0.1, () => 1),
      1100,
    )
    assert.equal(
      jitter(1000, 0.1, () => 0.5),
      1000,
    )
  })
})

describe('registration', () => {
  it('deregisters on stop even when stop comes while its registration is on the way', async () => {
    const registry = buildRegistryApp({ logger: silentLogger(), ttlMs: 60_000 })
    // Hold /register until the test lets it through, and note when it has been answered.
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => (release = resolve))
    let held = 0
    let answered = 0
    registry.app.addHook('preHandler', async (request) => {
      if (request.url === '/register') {
        held++
        await gate
      }
    })
    registry.app.addHook('onResponse', async (request) => {
      if (request.url === '/register') answered++
    })
    await registry.app.listen({ host: '127.0.0.1', port: 0 })
    cleanups.push(() => registry.app.close())
    const client = new RegistryClient({ urls: [`http://127.0.0.1:${(registry.app.server.address() as AddressInfo).port}`] })
    cleanups.push(() => client.close())
    const registration = new Registration({ client, serviceName: 'product', url: 'http://10.9.9.9:3', heartbeatIntervalMs: 60_000, logger: silentLogger() })
    registration.start()
    await waitFor(() => held === 1, { what: 'the registration to reach the registry' })
    const stopping = registration.stop()
    release()
    await stopping
    await waitFor(() => answered === 1, { what: 'the registration to be answered' })
    assert.deepEqual(registry.store.members('product').instances, [], 'nothing left registered')
    assert.equal(registration.state.kind, 'stopped')
  })

  it('registers, heartbeats, registers again after the registry forgot it, and deregisters on stop', async () => {
    const registry = await startRegistry()
    cleanups.push(() => registry.app.close())
    const client = new RegistryClient({ urls: [registry.url] })
    cleanups.push(() => client.close())
    const registration = new Registration({ client, serviceName: 'product', url: 'http://10.9.9.9:1', heartbeatIntervalMs: 50, logger: silentLogger() })
    registration.start()
    assert.ok(await registration.whenRegistered(5000))
    const first = registry.store.discover('product').instances[0]!
    await waitFor(() => registry.store.discover('product').instances[0]!.lastHeartbeat > first.lastHeartbeat, { what: 'a heartbeat' })

    // The registry loses the instance (restart, eviction): the next heartbeat's 404 re-registers it.
    await registry.store.deregister({ service_name: 'product', url: 'http://10.9.9.9:1' })
    await waitFor(() => registry.store.discover('product').instances.length === 1, { what: 're-registration' })

    const statuses: string[] = []
    registry.store.watch(() => statuses.push(...registry.store.members('product').instances.map((i) => i.reportedStatus)))
    await registration.stop()
    assert.deepEqual(registry.store.discover('product').instances, [])
    assert.equal(registration.state.kind, 'stopped')
    assert.deepEqual(statuses, ['draining'], 'it reported draining, then left')
  })

  it('keeps retrying while the registry is down and registers once it comes up', async () => {
    // Find a free port, then leave it closed for a while.
    const probe = await startRegistry()
    const port = probe.port
    await probe.app.close()
    const client = new RegistryClient({ urls: [`http://127.0.0.1:${port}`], timeoutMs: 500 })
    cleanups.push(() => client.close())
    const registration = new Registration({
      client,
      serviceName: 'order',
      url: 'http://10.9.9.9:2',
      heartbeatIntervalMs: 1000,
      logger: silentLogger(),
      backoff: { initialMs: 20, maxMs: 100 },
    })
    cleanups.push(() => registration.stop())
    registration.start()
    await waitFor(() => registration.state.kind === 'registering' && registration.state.attempt >= 2, { what: 'a few failed attempts' })
    const registry = await startRegistry(port)
    cleanups.push(() => registry.app.close())
    assert.ok(await registration.whenRegistered(5000))
    assert.equal(registry.store.discover('order').instances.length, 1)
  })

  it('fails over to the next registry in the list', async () => {
    const down = await startRegistry()
    const downUrl = down.url
    await down.app.close()
    const up = await startRegistry()
    cleanups.push(() => up.app.close())
    const client = new RegistryClient({ urls: [downUrl, up.url], timeoutMs: 500 })
    cleanups.push(() => client.close())
    const instance = await client.register({ service_name: 'product', url: 'http://10.9.9.9:3' })
    assert.equal(instance.service_name, 'product')
    assert.equal(client.currentUrl, up.url)
  })
})

describe('resolver', () => {
  it('serves the last known instances while the registry is unreachable', async () => {
    const registry = await startRegistry()
    await registry.store.register({ service_name: 'product', url: 'http://10.9.9.9:4' })
    const client = new RegistryClient({ urls: [registry.url], timeoutMs: 300 })
    const resolver = new Resolver({ client, logger: silentLogger(), waitMs: 200 })
    cleanups.push(
      () => client.close(),
      async () => resolver.close(),
    )
    assert.equal((await resolver.resolve('product')).length, 1)
    await registry.app.close()
    await waitFor(() => !resolver.status().registryReachable, { what: 'the resolver to notice the outage' })
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(
        (await resolver.resolve('product')).map((instance) => instance.url),
        ['http://10.9.9.9:4'],
      )
    }
    assert.equal(resolver.status().services.product?.instances, 1)
  })

  it('says the registry refused its token (not that it is unreachable) when reads need one', async () => {
    const logger = silentLogger()
    const auth = new RegistryAuth({ logger, readToken: 'read-token-0123456789abcdef' })
    const registry = buildRegistryApp({ logger, ttlMs: 60_000, auth })
    await registry.app.listen({ host: '127.0.0.1', port: 0 })
    cleanups.push(() => registry.app.close())
    const url = `http://127.0.0.1:${(registry.app.server.address() as AddressInfo).port}`
    const lines: Array<{ level: string; fields: Record<string, unknown> }> = []
    const record = (level: string) => (fields: Record<string, unknown>) => void lines.push({ level, fields })
    const capture = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') }
    for (const [token, refused] of [
      [undefined, true],
      ['read-token-0123456789abcdef', false],
    ] as const) {
      lines.length = 0
      const client = new RegistryClient({ urls: [url], ...(token ? { token } : {}) })
      const resolver = new Resolver({ client, logger: capture })
      cleanups.push(async () => {
        resolver.close()
        await client.close()
      })
      if (refused) {
        await assert.rejects(resolver.resolve('product'))
        const line = lines.find((l) => l.fields.event === 'discovery_refused')
        assert.equal(line?.level, 'error')
        assert.equal(line?.fields.status, 401)
        assert.equal(
          lines.find((l) => l.fields.event === 'registry_unreachable'),
          undefined,
        )
      } else {
        assert.deepEqual(await resolver.resolve('product'), [])
        assert.equal(
          lines.find((l) => l.fields.event === 'discovery_refused'),
          undefined,
        )
      }
    }
  })

  it('fails when it has never reached the registry', async () => {
    const probe = await startRegistry()
    const url = probe.url
    await probe.app.close()
    const client = new RegistryClient({ urls: [url], timeoutMs: 300 })
    const resolver = new Resolver({ client, logger: silentLogger() })
    cleanups.push(
      () => client.close(),
      async () => resolver.close(),
    )
    await assert.rejects(resolver.resolve('product'))
  })

  it('learns of a registration and a removal through its watch, without polling', async () => {
    const registry = await startRegistry()
    const client = new RegistryClient({ urls: [registry.url] })
    const changes: number[] = []
    const resolver = new Resolver({ client, logger: silentLogger(), waitMs: 30_000, onChange: (_name, list) => changes.push(list.length) })
    cleanups.push(
      () => registry.app.close(),
      () => client.close(),
      async () => resolver.close(),
    )
    assert.deepEqual(await resolver.resolve('product'), [])
    await registry.store.register({ service_name: 'product', url: 'http://10.9.9.9:7' })
    // The watch waits up to 30 s: seeing the change well before proves it was pushed, not polled.
    await waitFor(async () => (await resolver.resolve('product')).length === 1, { timeoutMs: 2000, what: 'the registration' })
    await registry.store.deregister({ service_name: 'product', url: 'http://10.9.9.9:7' })
    await waitFor(async () => (await resolver.resolve('product')).length === 0, { timeoutMs: 2000, what: 'the removal' })
    assert.deepEqual(changes, [0, 1, 0])
  })

  it('while its view is provisional, waits no longer than the warm-up the registry reported', async () => {
    // A scripted registry: the client's view is two instances, then a restarted registry (new
    // epoch) knows one with 5 ms of warm-up left, then the warm-up has ended with nothing else
    // changed. The third question must not block for the full watch interval (30 s): it asks to
    // wait at most the 5 ms the registry reported, and the view becomes final.
    const instance = (port: number) => ({
      id: `product-${port}`,
      service_name: 'product',
      url: `http://10.9.9.9:${port}`,
      status: 'up',
      metadata: {},
      registered_at: '2026-11-29T00:00:00.000Z',
      last_heartbeat: '2026-11-29T00:00:00.000Z',
    })
    const script = [
      { epoch: 'first', warmup: 0, instances: [instance(8), instance(9)] },
      { epoch: 'second', warmup: 5, instances: [instance(8)] },
      { epoch: 'second', warmup: 0, instances: [instance(8)] },
    ]
    const asked: Array<string | null> = []
    const server = createServer((request, response) => {
      const query = new URL(request.url ?? '/', 'http://x').searchParams
      const step = script[asked.length]
      asked.push(query.get('wait'))
      if (!step) return void request.socket.on('close', () => response.destroy()) // later questions: block
      response.writeHead(200, { 'content-type': 'application/json', 'x-registry-index': '1', 'x-registry-epoch': step.epoch, 'x-registry-warmup-ms': String(step.warmup) })
      response.end(JSON.stringify({ service_name: 'product', instances: step.instances }))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const client = new RegistryClient({ urls: [`http://127.0.0.1:${(server.address() as AddressInfo).port}`] })
    const resolver = new Resolver({ client, logger: silentLogger(), waitMs: 30_000 })
    cleanups.push(
      async () => new Promise((resolve) => server.close(resolve)),
      () => client.close(),
      async () => resolver.close(),
    )
    assert.equal((await resolver.resolve('product')).length, 2)
    await waitFor(async () => (await resolver.resolve('product')).length === 1, { what: 'the final view' })
    assert.deepEqual(asked.slice(0, 3), [null, '30000ms', '5ms'])
    assert.equal(resolver.status().services.product?.provisional, false)
  })

  it('keeps its view when a restarted registry knows nobody yet, until the warm-up ends', async () => {
    const first = buildRegistryApp({ logger: silentLogger(), ttlMs: 60_000 })
    await first.app.listen({ host: '127.0.0.1', port: 0 })
    const port = (first.app.server.address() as AddressInfo).port
    await first.store.register({ service_name: 'product', url: 'http://10.9.9.9:8' })
    await first.store.register({ service_name: 'product', url: 'http://10.9.9.9:9' })
    const client = new RegistryClient({ urls: [`http://127.0.0.1:${port}`], timeoutMs: 500 })
    const resolver = new Resolver({ client, logger: silentLogger(), waitMs: 30_000 })
    cleanups.push(
      () => client.close(),
      async () => resolver.close(),
    )
    assert.equal((await resolver.resolve('product')).length, 2)
    await first.app.close()

    // The registry comes back empty, warming up for 600 ms; one instance re-registers at once.
    const second = buildRegistryApp({ logger: silentLogger(), ttlMs: 60_000, warmupMs: 600 })
    await second.app.listen({ host: '127.0.0.1', port })
    cleanups.push(() => second.app.close())
    await second.store.register({ service_name: 'product', url: 'http://10.9.9.9:8' })
    await waitFor(() => resolver.status().services.product?.epoch === second.epoch, { what: 'the new epoch' })
    assert.equal((await resolver.resolve('product')).length, 2, 'the instance that has not re-registered yet is kept')
    assert.equal(resolver.status().services.product?.provisional, true)
    // After the warm-up, the registry's word is final.
    await waitFor(async () => (await resolver.resolve('product')).length === 1, { timeoutMs: 5000, what: 'the warm-up to end' })
    assert.deepEqual(
      (await resolver.resolve('product')).map((i) => i.url),
      ['http://10.9.9.9:8'],
    )
  })
})
