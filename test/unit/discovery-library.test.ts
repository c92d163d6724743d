// The discovery client as a library, used the way the README shows a service outside this
// repository using it: only through src/discovery/index.ts, against a real registry.
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { Registration, RegistryClient, Resolver, ServiceClient, silentLogger } from '../../src/discovery/index.ts'
import { buildRegistryApp, type RegistryApp } from '../../src/registry/server.ts'
import { silentLogger as quietPino } from '../helpers/logger.ts'

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

describe('the discovery client as a library', () => {
  let registry: RegistryApp
  let registryUrl = ''
  before(async () => {
    registry = buildRegistryApp({ logger: quietPino(), ttlMs: 60_000, warmupMs: 0 })
    registryUrl = await registry.app.listen({ host: '127.0.0.1', port: 0 })
  })
  after(() => registry.app.close())

  it('registers a plain node:http service, calls another through discovery, and leaves on stop', async () => {
    const client = new RegistryClient({ urls: [registryUrl] })
    // A product instance somewhere, found through the registry.
    const product = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' })
      response.end('{"items":[]}')
    })
    const productUrl = await listen(product)
    const productRegistration = new Registration({ client, serviceName: 'product', url: productUrl, heartbeatIntervalMs: 10_000 })
    // The service that uses the library.
    const hello = createServer((_request, response) => response.end('hello'))
    const helloUrl = await listen(hello)
    const registration = new Registration({ client, serviceName: 'hello', url: helloUrl, heartbeatIntervalMs: 10_000 })
    const resolver = new Resolver({ client })
    const products = new ServiceClient({ resolver, logger: silentLogger })
    try {
      productRegistration.start()
      registration.start()
      assert.equal(await registration.whenRegistered(5000), true)
      assert.equal(await productRegistration.whenRegistered(5000), true)
      assert.deepEqual(
        registry.store.discover('hello').instances.map((i) => i.url),
        [helloUrl],
      )

      const answer = await products.request('product', { method: 'GET', path: '/products' })
      assert.equal(answer.status, 200)
      assert.deepEqual(answer.body, { items: [] })
      assert.equal(answer.instance.url, productUrl)

      await registration.stop()
      assert.deepEqual(registry.store.discover('hello').instances, [], 'deregistered on stop')
    } finally {
      await productRegistration.stop()
      resolver.close()
      await Promise.all([products.close(), client.close()])
      await Promise.all([product, hello].map((server) => new Promise((resolve) => server.close(resolve))))
    }
  })
})
