// The gateway's combined OpenAPI document: each routed operation carries the service's own error
// answers and those the gateway may give itself (its refusals, the upstream's failures, and with
// authentication on, the token's, except on the reads that stay public).
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { ServiceClient } from '../../src/discovery/service-client.ts'
import { combineOpenApi, routedProblems } from '../../src/gateway/openapi.ts'

const PROBLEM = 'application/problem+json'
const problem = (status: number, codes: string[]) => ({
  description: codes.join('; '),
  content: { [PROBLEM]: { schema: { type: 'object', properties: { status: { const: status }, code: { type: 'string', enum: codes } } } } },
})
const productDocument = {
  openapi: '3.1.0',
  paths: {
    '/products': {
      get: { responses: { 200: { description: 'the products' } } },
      post: { responses: { 201: { description: 'created' }, 400: problem(400, ['VALIDATION_FAILED']) } },
    },
    '/products/{id}': { get: { responses: { 200: { description: 'a product' }, 404: problem(404, ['PRODUCT_NOT_FOUND']) } } },
  },
}
const client = { request: async () => ({ status: 200, body: productDocument, headers: {} }) } as unknown as ServiceClient

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: { properties: { code: { enum: string[] } } } }> }> }>> }
const codes = (doc: Doc, path: string, method: string, status: string) => doc.paths[path]?.[method]?.responses[status]?.content?.[PROBLEM]?.schema.properties.code.enum

describe("the gateway's OpenAPI document", () => {
  it("adds the gateway's own codes beside the service's, and keeps the service's answers", async () => {
    const doc = (await combineOpenApi([{ prefix: '/products', service: 'product' }], client, routedProblems(false))({ paths: {} })) as Doc
    assert.deepEqual(codes(doc, '/products/{id}', 'get', '404'), ['PRODUCT_NOT_FOUND'])
    assert.deepEqual(codes(doc, '/products', 'post', '400'), ['VALIDATION_FAILED', 'INVALID_PATH', 'INVALID_HEADER'])
    assert.deepEqual(codes(doc, '/products', 'post', '413'), ['BODY_TOO_LARGE'])
    assert.deepEqual(codes(doc, '/products', 'get', '503'), ['NO_HEALTHY_INSTANCE', 'UPSTREAM_UNAVAILABLE'])
    assert.deepEqual(codes(doc, '/products', 'get', '502'), ['UPSTREAM_FAILED'])
    assert.equal(codes(doc, '/products', 'post', '401'), undefined, 'no token without authentication')
    assert.equal(doc.paths['/products']?.get?.responses['200'] !== undefined, true)
  })

  it('with authentication on, documents the token refusals where a token is needed, not on public reads', async () => {
    const doc = (await combineOpenApi([{ prefix: '/products', service: 'product' }], client, routedProblems(true))({ paths: {} })) as Doc
    assert.deepEqual(codes(doc, '/products', 'post', '401'), ['UNAUTHENTICATED', 'INVALID_TOKEN'])
    assert.ok(codes(doc, '/products', 'post', '503')?.includes('AUTH_UNAVAILABLE'))
    assert.equal(codes(doc, '/products', 'get', '401'), undefined, 'reading the catalogue is public')
    assert.equal(codes(doc, '/products/{id}', 'get', '401'), undefined, 'so is reading one product')
  })
})
