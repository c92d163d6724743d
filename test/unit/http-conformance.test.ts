// What every role's app answers, whatever its routes: 405 with `Allow` for a path asked with the
// wrong method, 415 for a body that is not JSON, validation errors that name the field and list
// the allowed values, and an OpenAPI document in which every operation shows its error answers.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Type } from 'typebox'
import { buildApp, type App } from '../../src/http/app.ts'
import { defineErrors } from '../../src/http/errors.ts'
import { registerHealthRoutes } from '../../src/http/health.ts'
import { describeValidation, MAX_DETAILS, type ValidationIssue } from '../../src/http/validation.ts'
import { buildRegistryApp } from '../../src/registry/server.ts'
import type { OrderRepository } from '../../src/services/order/repository.ts'
import type { ProductClient } from '../../src/services/order/product-client.ts'
import { registerOrderRoutes } from '../../src/services/order/routes.ts'
import type { ProductRepository } from '../../src/services/product/repository.ts'
import { registerProductRoutes } from '../../src/services/product/routes.ts'
import { silentLogger } from '../helpers/logger.ts'

const Thing = Type.Object(
  {
    name: Type.String({ minLength: 1, pattern: '^[a-z]+$', description: 'Lowercase letters only' }),
    colour: Type.Optional(Type.Union([Type.Literal('red'), Type.Literal('green'), Type.Literal('blue')])),
    size: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
)
const Ref = Type.Union([Type.Object({ id: Type.String() }), Type.Object({ name: Type.String(), owner: Type.String() })])
const Query = Type.Object({ sort: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')])) }, { additionalProperties: false })

function testApp(): App {
  const app = buildApp({ logger: silentLogger() })
  app.get('/things', { schema: { querystring: Query } }, async () => [])
  app.post('/things', { schema: { body: Thing } }, async (request, reply) => reply.code(201).send(request.body))
  app.get('/things/:id', async () => ({}))
  app.delete('/things/:id', async (_request, reply) => reply.code(204).send())
  app.post('/refs', { schema: { body: Ref } }, async () => ({ ok: true }))
  app.route({ method: ['GET', 'HEAD'], url: '/stream', handler: async () => '' })
  return app
}

describe('HTTP conformance of every app', () => {
  let app: App
  before(async () => {
    app = testApp()
    await app.ready()
  })
  after(() => app.close())

  it('answers a known path asked with another method 405, with the methods it takes in Allow', async () => {
    const cases: Array<[string, string, string]> = [
      ['PUT', '/things', 'GET, HEAD, POST'],
      ['DELETE', '/things', 'GET, HEAD, POST'],
      ['PATCH', '/things/42', 'GET, HEAD, DELETE'],
      ['POST', '/things/42?x=1', 'GET, HEAD, DELETE'],
      ['POST', '/stream', 'GET, HEAD'],
      ['OPTIONS', '/refs', 'POST'],
      ['PUT', '/things/', 'GET, HEAD, POST'],
    ]
    for (const [method, url, allow] of cases) {
      const response = await app.inject({ method: method as 'PUT', url })
      assert.equal(response.statusCode, 405, `${method} ${url}`)
      assert.equal(response.headers.allow, allow, `${method} ${url}`)
      assert.match(String(response.headers['content-type']), /^application\/problem\+json/)
      const body = response.json()
      assert.equal(body.code, 'METHOD_NOT_ALLOWED')
      assert.equal(body.status, 405)
    }
  })

  it('answers a path no route serves 404, without Allow', async () => {
    for (const [method, url] of [
      ['GET', '/nothing'],
      ['PUT', '/things/42/more'],
      ['POST', '/'],
    ] as const) {
      const response = await app.inject({ method, url })
      assert.equal(response.statusCode, 404, `${method} ${url}`)
      assert.equal(response.headers.allow, undefined)
      assert.equal(response.json().code, 'ROUTE_NOT_FOUND')
    }
  })

  it('answers a body that is not JSON 415 UNSUPPORTED_MEDIA_TYPE, naming what was sent', async () => {
    for (const type of ['text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'application/octet-stream', 'text/xml']) {
      const response = await app.inject({ method: 'POST', url: '/things', headers: { 'content-type': type }, payload: 'name=pen' })
      assert.equal(response.statusCode, 415, type)
      const body = response.json()
      assert.equal(body.code, 'UNSUPPORTED_MEDIA_TYPE', type)
      assert.ok(body.detail.includes(type.split(';')[0]), `${type}: ${body.detail}`)
    }
    // JSON, whatever its parameters, is parsed.
    const json = await app.inject({ method: 'POST', url: '/things', headers: { 'content-type': 'application/json; charset=utf-8' }, payload: '{"name":"pen"}' })
    assert.equal(json.statusCode, 201)
  })

  const refused = async (url: string, payload: unknown) => {
    const response = await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) })
    assert.equal(response.statusCode, 400, JSON.stringify(payload))
    const body = response.json()
    assert.equal(body.code, 'VALIDATION_FAILED')
    assert.equal(body.detail, `${body.errors[0].path}: ${body.errors[0].message}`, 'the detail is the first error')
    return body.errors as Array<{ path: string; message: string }>
  }

  it('names an unknown field, and the fields there are', async () => {
    const errors = await refused('/things', { name: 'pen', colour: 'red', weight: 3 })
    assert.deepEqual(errors, [{ path: 'body', message: 'unknown field `weight` (known fields: name, colour, size)' }])
    assert.ok(!JSON.stringify(errors).includes('schema is false'))
    const two = await refused('/things', { name: 'pen', a: 1, b: 2 })
    assert.deepEqual(
      two.map((e) => e.message.split(' (')[0]),
      ['unknown field `a`', 'unknown field `b`'],
    )
  })

  it('lists the allowed values of an enum', async () => {
    assert.deepEqual(await refused('/things', { name: 'pen', colour: 'purple' }), [{ path: 'body/colour', message: 'must be one of: red, green, blue' }])
    const query = await app.inject({ method: 'GET', url: '/things?sort=up' })
    assert.equal(query.statusCode, 400)
    assert.deepEqual(query.json().errors, [{ path: 'querystring/sort', message: 'must be one of: asc, desc' }])
    const unknown = await app.inject({ method: 'GET', url: '/things?order=asc' })
    assert.deepEqual(unknown.json().errors, [{ path: 'querystring', message: 'unknown parameter `order` (known parameters: sort)' }])
  })

  it("describes a pattern by the schema's description, and names a missing field", async () => {
    assert.deepEqual(await refused('/things', { name: 'Pen' }), [{ path: 'body/name', message: 'does not match the expected format: lowercase letters only' }])
    assert.deepEqual(await refused('/things', { colour: 'red' }), [{ path: 'body', message: 'missing required field `name`' }])
    assert.deepEqual(await refused('/things', { name: 'pen', size: 'big' }), [{ path: 'body/size', message: 'must be an integer' }])
  })

  it('explains a union by the branch that was meant, or lists the choices', async () => {
    // Neither shape: both are offered.
    assert.deepEqual(await refused('/refs', { owner: 'x' }), [{ path: 'body', message: 'must be an object with `id`, or an object with `name` and `owner`' }])
    assert.deepEqual(await refused('/refs', 'text'), [{ path: 'body', message: 'must be an object with `id`, or an object with `name` and `owner`' }])
    // The second shape, with a mistake inside it: that mistake only.
    assert.deepEqual(await refused('/refs', { name: 'x', owner: 5 }), [{ path: 'body/owner', message: 'must be a string' }])
  })

  it('keeps a problem bounded however many mistakes a request makes', () => {
    const issues: ValidationIssue[] = Array.from({ length: 500 }, (_, i) => ({
      keyword: 'additionalProperties',
      instancePath: '',
      schemaPath: '#',
      params: { additionalProperty: `field${i}${'x'.repeat(200)}` },
      message: 'must NOT have additional properties',
    }))
    const details = describeValidation(issues, 'body')
    assert.equal(details.length, MAX_DETAILS)
    assert.ok(
      details.every((d) => d.message.length < 120),
      'names from the request are cut short',
    )
  })
})

describe('OpenAPI error answers', () => {
  const problem = 'application/problem+json'
  type Operation = { responses: Record<string, { content?: Record<string, { schema: { properties: { code: { enum?: string[] } } } }> }> }
  const operations = (document: { paths: Record<string, Record<string, Operation>> }) =>
    Object.entries(document.paths).flatMap(([path, item]) => Object.entries(item).map(([method, operation]) => ({ name: `${method.toUpperCase()} ${path}`, operation })))
  const codes = (operation: Operation, status: string) => operation.responses[status]?.content?.[problem]?.schema.properties.code.enum ?? []

  /** Every operation documents at least one error, as a problem (with its codes when it has some). */
  function assertEveryOperationDocumentsErrors(document: { paths: Record<string, Record<string, Operation>> }) {
    const listed = operations(document)
    assert.ok(listed.length > 0)
    for (const { name, operation } of listed) {
      const errors = Object.entries(operation.responses).filter(([status]) => status === 'default' || /^[45]/.test(status))
      assert.ok(errors.length > 0, `${name} documents its errors`)
      for (const [status, response] of errors) {
        if (name.includes('/health/ready') && status === '503') continue
        assert.ok(response.content?.[problem], `${name} ${status} is a problem`)
      }
    }
  }

  it('lists, for every operation of a service, the statuses and codes it can answer', async () => {
    const app = buildApp({ logger: silentLogger(), openapi: { title: 'test', description: 'test' } })
    await app.register(async (scoped) => {
      const routes = scoped as unknown as App
      registerProductRoutes(routes, {} as ProductRepository)
      registerOrderRoutes(routes, {} as OrderRepository, {} as ProductClient)
      registerHealthRoutes(routes, { checks: {}, isDraining: () => false })
    })
    try {
      const document = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
      assertEveryOperationDocumentsErrors(document)
      const paths = document.paths
      assert.deepEqual(codes(paths['/products'].post, '400'), ['VALIDATION_FAILED', 'INVALID_JSON'])
      assert.deepEqual(codes(paths['/products'].post, '413'), ['BODY_TOO_LARGE'])
      assert.deepEqual(codes(paths['/products'].post, '415'), ['UNSUPPORTED_MEDIA_TYPE'])
      assert.deepEqual(codes(paths['/products/{id}'].get, '404'), ['PRODUCT_NOT_FOUND'])
      assert.deepEqual(codes(paths['/products/{id}'].get, '400'), ['VALIDATION_FAILED'])
      assert.deepEqual(codes(paths['/orders/{id}'].get, '404'), ['ORDER_NOT_FOUND'])
      assert.deepEqual(codes(paths['/orders'].post, '422'), ['UNKNOWN_PRODUCT', 'IDEMPOTENCY_KEY_REUSED'])
      assert.deepEqual(codes(paths['/orders'].post, '503'), ['NO_HEALTHY_INSTANCE', 'UPSTREAM_UNAVAILABLE'])
      assert.ok(paths['/orders'].post.responses['503'].headers['retry-after'], 'a 503 says when to retry')
      // The probe's 503 is its own answer, not a problem.
      assert.deepEqual(paths['/health/ready'].get.responses['503'].content['application/json'].schema.properties.status.enum, ['not_ready'])
      // The problem schema itself.
      const schema = paths['/products'].post.responses['400'].content[problem].schema
      assert.deepEqual(schema.required, ['type', 'title', 'status', 'detail', 'code'])
      assert.deepEqual(schema.properties.status.enum, [400])
    } finally {
      await app.close()
    }
  })

  it('documents error answers on every registry operation without the registry declaring them', async () => {
    const registry = buildRegistryApp({ logger: silentLogger(), ttlMs: 60_000 })
    try {
      const document = (await registry.app.inject({ method: 'GET', url: '/openapi.json' })).json()
      assertEveryOperationDocumentsErrors(document)
      assert.ok(codes(document.paths['/register'].post, '400').includes('VALIDATION_FAILED'))
      assert.deepEqual(codes(document.paths['/register'].post, '415'), ['UNSUPPORTED_MEDIA_TYPE'])
    } finally {
      await registry.app.close()
    }
  })

  it('lets an app document the errors of its own hooks, and a route its own', async () => {
    const fail = defineErrors({ TOKEN_MISSING: { status: 401, title: 'A token is required' }, GONE: { status: 410, title: 'Gone' } })
    const app = buildApp({
      logger: silentLogger(),
      openapi: { title: 'test', description: 'test', problems: (route) => (route.method === 'POST' ? [fail.kind('TOKEN_MISSING')] : []) },
    })
    await app.register(async (scoped) => {
      scoped.post('/things', { config: { problems: [fail.kind('GONE')] } }, async () => ({}))
      scoped.get('/things', async () => [])
    })
    try {
      const document = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
      assert.deepEqual(codes(document.paths['/things'].post, '401'), ['TOKEN_MISSING'])
      assert.deepEqual(codes(document.paths['/things'].post, '410'), ['GONE'])
      assert.equal(document.paths['/things'].get.responses['401'], undefined)
      assert.ok(document.paths['/things'].get.responses.default.content[problem])
    } finally {
      await app.close()
    }
  })
})

describe('the registry refuses what it would otherwise ignore', () => {
  it('names an unknown field of a registration (a misspelt health_url would leave the instance unchecked)', async () => {
    const registry = buildRegistryApp({ logger: silentLogger(), ttlMs: 60_000 })
    try {
      const response = await registry.app.inject({
        method: 'POST',
        url: '/register',
        payload: { service_name: 'product', url: 'http://127.0.0.1:18081', healthUrl: 'http://127.0.0.1:18081/health/ready' },
      })
      assert.equal(response.statusCode, 400)
      assert.equal(response.json().code, 'VALIDATION_FAILED')
      assert.match(response.json().detail, /unknown field `healthUrl`.*health_url/)
      const status = await registry.app.inject({ method: 'POST', url: '/heartbeat', payload: { service_name: 'product', url: 'http://127.0.0.1:18081', status: 'sleeping' } })
      assert.equal(status.statusCode, 400)
      assert.deepEqual(status.json().errors, [{ path: 'body/status', message: 'must be one of: starting, up, draining' }])
      // Metadata keys follow their rule: a key outside it is refused, and the rule is said.
      const metadata = await registry.app.inject({
        method: 'POST',
        url: '/register',
        payload: { service_name: 'product', url: 'http://127.0.0.1:18081', metadata: { zone: 'a', 'bad key': 'x' } },
      })
      assert.equal(metadata.statusCode, 400)
      assert.deepEqual(
        metadata.json().errors.map((e: { path: string }) => e.path),
        ['body/metadata'],
      )
      assert.match(metadata.json().detail, /key `bad key` is not allowed: .*keys of 1 to 64 letters/)
      const fine = await registry.app.inject({
        method: 'POST',
        url: '/register',
        payload: { service_name: 'product', url: 'http://127.0.0.1:18081', metadata: { zone: 'a', 'v/1.x_y-z': 'x' } },
      })
      assert.equal(fine.statusCode, 201)
    } finally {
      await registry.app.close()
    }
  })
})
