// The registry's fast paths answer before Fastify. They are safe to live with only if nothing the
// app adds for their routes (auth, rate limits, tracing) can be silently skipped: a hook they do
// not honour turns them off, and the routes serve every request.
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, it } from 'node:test'
import { buildApp, fastPathOf } from '../../src/http/app.ts'
import type { RegistryApp } from '../../src/registry/server.ts'
import { silentLogger } from '../helpers/logger.ts'
import { closeRegistries, registry } from '../helpers/registry-app.ts'
import { STORE_KINDS } from '../helpers/stores.ts'

let open: Array<{ close: () => Promise<unknown> }> = []
afterEach(async () => {
  await Promise.all(open.map((app) => app.close()))
  open = []
  await closeRegistries()
})

async function origin(app: RegistryApp['app']): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

const heartbeat = (url: string) =>
  fetch(`${url}/heartbeat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service_name: 'product', url: 'http://10.0.0.1:8081' }) })

for (const kind of STORE_KINDS) {
  describe(`the registry fast paths (${kind.name})`, () => {
    it('serve as built: every hook on their routes is one they honour', async () => {
      // Fails when the registry gains a hook the fast paths would skip: reproduce its effect in
      // src/registry/fast-path.ts (and name it in HONOURED_HOOKS), or let the routes serve.
      const { app } = await registry(kind)
      await app.ready()
      assert.deepEqual(fastPathOf(app)?.unhonoured, [])
      assert.equal(fastPathOf(app)?.enabled, true)
    })

    it('turn off for a hook they do not honour, and the hook sees every request', async () => {
      const { app, store } = await registry(kind)
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:8081' })
      const seen: string[] = []
      app.addHook('onRequest', function requireToken(request, _reply, done) {
        seen.push(`${request.method} ${request.url}`)
        done()
      })
      const url = await origin(app)
      assert.equal(fastPathOf(app)?.enabled, false)
      assert.deepEqual(fastPathOf(app)?.unhonoured, ['onRequest:requireToken'])
      assert.equal((await fetch(`${url}/discover/product`)).status, 200)
      assert.equal((await heartbeat(url)).status, 200)
      assert.deepEqual(seen, ['GET /discover/product', 'POST /heartbeat'])
    })

    it('see hooks added by a plugin', async () => {
      const { app } = await registry(kind)
      // fastify-plugin style (no encapsulation): what an auth or rate-limit plugin does.
      const plugin = Object.assign(
        async (instance: typeof app) => {
          instance.addHook('preHandler', async function rateLimit() {})
        },
        { [Symbol.for('skip-override')]: true },
      )
      await app.register(plugin)
      await app.ready()
      assert.deepEqual(fastPathOf(app)?.unhonoured, ['preHandler:rateLimit'])
    })

    it('stay on for a hook in an unrelated plugin context', async () => {
      const { app } = await registry(kind)
      await app.register(async (child) => {
        child.addHook('onRequest', async function onlyForOthers() {})
        child.get('/other', async () => 'other')
      })
      await app.ready()
      assert.equal(fastPathOf(app)?.enabled, true)
    })

    it('take the server settings of the app: keep-alive and timeouts', async () => {
      const { app } = await registry(kind)
      await app.ready()
      assert.equal(app.server.keepAliveTimeout, app.initialConfig.keepAliveTimeout)
      // Fastify's default (no limit while a request is read), not Node's 300 s.
      assert.equal(app.server.requestTimeout, 0)
    })
  })
}

describe('a fast path that throws', () => {
  it('costs a slower answer, not a lost one: the route answers', async () => {
    const app = buildApp({
      logger: silentLogger(),
      fastPath: {
        handle: () => {
          throw new Error('a bug in the fast path')
        },
        routes: [{ method: 'GET', url: '/thing' }],
        honours: new Set(['onSend:closeWhenDraining', 'onResponse:countRequest']),
      },
    })
    open.push(app)
    app.get('/thing', async () => ({ from: 'route' }))
    await app.listen({ host: '127.0.0.1', port: 0 })
    assert.equal(fastPathOf(app)?.enabled, true)
    const response = await fetch(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/thing`)
    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), { from: 'route' })
  })
})
