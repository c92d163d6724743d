// One request id across a request's hops: the caller's X-Request-Id when it looks like one, else a
// new UUID; never whatever bytes a client chose to send.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { buildApp } from '../../src/http/app.ts'
import { silentLogger } from '../helpers/logger.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('request ids', () => {
  it("keep a caller's id that looks like one, and replace any other with a UUID", async () => {
    const app = buildApp({ logger: silentLogger() })
    app.get('/id', async (request) => ({ id: request.id }))
    try {
      const idOf = async (header?: string) => (await app.inject({ method: 'GET', url: '/id', headers: header === undefined ? {} : { 'x-request-id': header } })).json().id
      assert.equal(await idOf('order-7f3a:1'), 'order-7f3a:1')
      for (const bad of [undefined, '', 'x'.repeat(129), 'has space', 'caf\u00e9', 'a\tb']) {
        const id = await idOf(bad)
        assert.match(id, UUID, `${JSON.stringify(bad)?.slice(0, 20)} is replaced`)
      }
      assert.notEqual(await idOf(), await idOf(), 'a new id each time')
    } finally {
      await app.close()
    }
  })
})
