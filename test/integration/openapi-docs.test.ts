// The API documentation of real processes: every operation of /openapi.json documents its error
// answers as problems, and the Swagger UI page at /docs loads under its Content-Security-Policy
// with no console error and no violation, in real headless Chromium. The page is opened by a host
// name that is not loopback (mapped to 127.0.0.1 inside the browser), as a browser in front of a
// container or a LAN address would: a policy that upgrades its plain-HTTP assets to HTTPS shows a
// blank page there, though it works on localhost.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { launchChromium } from '../helpers/browser.ts'
import { http } from '../helpers/http.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { waitFor } from '../helpers/wait.ts'

const HOST = 'docs.test'
const UI_TIMEOUT_MS = 15_000
const PROBLEM = 'application/problem+json'

type Responses = Record<string, { content?: Record<string, unknown> }>

describe('API documentation of running processes', () => {
  let registry: RunningProcess
  let product: RunningProcess
  let gateway: RunningProcess
  let browser: Browser
  const dataDir = mkdtempSync(join(tmpdir(), 'msa-docs-'))

  before(async () => {
    browser = await launchChromium([`--host-resolver-rules=MAP ${HOST} 127.0.0.1`])
    registry = await startRole('registry')
    product = await startRole('product', { env: { REGISTRY_URL: registry.url, DATA_DIR: dataDir } })
    gateway = await startRole('gateway', { env: { REGISTRY_URL: registry.url } })
    // The gateway's document takes in the product service's once it finds an instance.
    await waitFor(async () => '/products/{id}' in ((await http('GET', `${gateway.url}/openapi.json`)).body?.paths ?? {}), {
      what: "the product service's paths in the gateway's document",
    })
  })

  after(async () => {
    await browser?.close()
    await gateway?.stop()
    await product?.stop()
    await registry?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('documents the error answers of every operation, as problems with their codes', async () => {
    for (const process of [registry, product, gateway]) {
      const document = (await http('GET', `${process.url}/openapi.json`)).body as { paths: Record<string, Record<string, { responses: Responses }>> }
      let operations = 0
      for (const [path, item] of Object.entries(document.paths)) {
        for (const [method, operation] of Object.entries(item)) {
          operations++
          const errors = Object.entries(operation.responses).filter(([status]) => status === 'default' || /^[45]/.test(status))
          assert.ok(errors.length > 0, `${process.role}: ${method} ${path} documents its errors`)
          assert.ok(operation.responses.default?.content?.[PROBLEM], `${process.role}: ${method} ${path} answers any other error as a problem`)
        }
      }
      assert.ok(operations >= 5, `${process.role} documents its operations (${operations})`)
    }
    // The service's, and the gateway's, which passes them on.
    for (const process of [product, gateway]) {
      const products = (await http('GET', `${process.url}/openapi.json`)).body
      assert.deepEqual(products.paths['/products/{id}'].get.responses['404'].content[PROBLEM].schema.properties.code.enum, ['PRODUCT_NOT_FOUND'], process.role)
      assert.deepEqual(products.paths['/products'].post.responses['415'].content[PROBLEM].schema.properties.code.enum, ['UNSUPPORTED_MEDIA_TYPE'], process.role)
      // A database outage is a 503 on every route that reads or writes it, and on no other.
      for (const operation of [products.paths['/products/{id}'].get, products.paths['/products'].post, products.paths['/products'].get]) {
        assert.ok(operation.responses['503'].content[PROBLEM].schema.properties.code.enum.includes('DATABASE_UNAVAILABLE'), process.role)
      }
    }
    const productDoc = (await http('GET', `${product.url}/openapi.json`)).body
    assert.equal(productDoc.paths['/health/live'].get.responses['503'], undefined, 'the liveness probe reads no database')
    const codes = (operation: { responses: Record<string, { content?: Record<string, { schema: { properties: { code: { enum: string[] } } } }> }> }, status: string) =>
      operation.responses[status]?.content?.[PROBLEM]?.schema.properties.code.enum ?? []
    // The gateway adds what it may answer itself to each routed operation, beside the service's own.
    const viaGateway = (await http('GET', `${gateway.url}/openapi.json`)).body
    const productById = viaGateway.paths['/products/{id}'].get
    assert.deepEqual(codes(productById, '404'), ['PRODUCT_NOT_FOUND'])
    assert.ok(codes(productById, '503').includes('NO_HEALTHY_INSTANCE'), JSON.stringify(productById.responses['503']))
    assert.deepEqual(codes(productById, '502'), ['UPSTREAM_FAILED'])
    assert.deepEqual(codes(productById, '504'), ['UPSTREAM_TIMEOUT'])
    assert.ok(codes(viaGateway.paths['/products'].post, '400').includes('VALIDATION_FAILED') && codes(viaGateway.paths['/products'].post, '400').includes('INVALID_PATH'))
    assert.equal(productById.responses['401'], undefined, 'no token needed: the gateway runs without auth here')
    // The registry's own: who may write, what a registration may be refused for, and Consul's.
    const registryDoc = (await http('GET', `${registry.url}/openapi.json`)).body
    const register = registryDoc.paths['/register'].post
    assert.deepEqual(codes(register, '403').sort(), ['NOT_OWNER', 'PROTECTED_MODE', 'TOKEN_NOT_ALLOWED'])
    assert.deepEqual(codes(register, '409'), ['INSTANCE_ID_CONFLICT'])
    assert.ok(codes(register, '503').includes('REGISTRY_FULL') && codes(register, '503').includes('STORE_UNAVAILABLE'))
    assert.deepEqual(codes(registryDoc.paths['/heartbeat'].post, '404'), ['INSTANCE_NOT_FOUND'])
    assert.ok(codes(registryDoc.paths['/discover/{service_name}'].get, '503').includes('TOO_MANY_WATCHERS'))
    assert.ok(codes(registryDoc.paths['/v1/agent/service/register'].put, '400').includes('BAD_CONSUL_CHECK'))
    assert.deepEqual(codes(registryDoc.paths['/v1/agent/check/pass/{check_id}'].put, '404'), ['INSTANCE_NOT_FOUND'])
  })

  /** Opens /docs, records every console error, page error and CSP violation, and returns them with the page. */
  async function openDocs(url: string): Promise<{ page: Page; problems: string[] }> {
    const problems: string[] = []
    const page = await browser.newPage()
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`)
    })
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
    page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()} ${request.failure()?.errorText}`))
    // A string, evaluated in the page (the test is type-checked without the DOM library).
    await page.addInitScript(
      "document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile))",
    )
    await page.goto(url)
    return { page, problems }
  }

  it('serves Swagger UI that loads under its Content-Security-Policy with no error, by any host name', async () => {
    for (const process of [registry, product, gateway]) {
      const url = `http://${HOST}:${process.port}/docs`
      const response = await http('GET', `${process.url}/docs`)
      const csp = response.headers.get('content-security-policy') ?? ''
      assert.match(csp, /default-src 'self'/)
      assert.match(csp, /script-src 'self'(;|$)/)
      assert.doesNotMatch(csp, /upgrade-insecure-requests|unsafe-inline|unsafe-eval|https:/, 'nothing from elsewhere, nothing upgraded')
      const { page, problems } = await openDocs(url)
      try {
        await page.locator('.opblock').first().waitFor({ timeout: UI_TIMEOUT_MS })
        assert.ok((await page.locator('.opblock').count()) >= 3, `${process.role}: the operations are shown`)
        // An operation opened shows its error answers.
        const operation = process === registry ? page.locator('.opblock-post', { hasText: '/register' }) : page.locator('.opblock-get', { hasText: '/products/{id}' })
        await operation.locator('.opblock-summary').first().click()
        await operation.locator('tr.response[data-code="400"]').waitFor({ timeout: UI_TIMEOUT_MS })
        if (process !== registry) await operation.locator('tr.response[data-code="404"]').waitFor({ timeout: UI_TIMEOUT_MS })
        // Whatever was still loading has loaded (or failed, and said so).
        await page.waitForLoadState('networkidle')
        assert.deepEqual(problems, [], `${process.role}: no console errors, failed requests or CSP violations`)
      } finally {
        await page.close()
      }
    }
  })
})
