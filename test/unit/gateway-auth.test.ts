// The gateway's bearer-token check: tokens signed with a shared secret (HS256) or with keys from a
// JWKS served on port 0, the hook that guards the proxied routes, and its configuration.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { exportJWK, exportSPKI, generateKeyPair, type GenerateKeyPairResult, type JWTPayload, SignJWT } from 'jose'

type PrivateKey = GenerateKeyPairResult['privateKey']
import { ConfigError, loadGatewayConfig } from '../../src/config/index.ts'
import { type GatewayAuthOptions, registerGatewayAuth, tokenVerifier, type TokenVerdict } from '../../src/gateway/auth.ts'
import { buildGateway } from '../../src/gateway/main.ts'
import { buildApp, type App } from '../../src/http/app.ts'
import { noopTelemetry } from '../../src/http/telemetry.ts'
import { silentLogger } from '../helpers/logger.ts'

const SECRET = 'test-secret-0123456789abcdef-0123456789abcdef'
const secretKey = new TextEncoder().encode(SECRET)
const secretAuth = (extra: Partial<GatewayAuthOptions> = {}): GatewayAuthOptions => ({
  keys: { kind: 'secret', secret: SECRET },
  issuer: undefined,
  audience: undefined,
  ...extra,
})

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
const nowSeconds = () => Math.floor(Date.now() / 1000)

/** A signed token; `claims` may override or (with undefined) remove the defaults (sub, iat, exp). */
async function hsToken(claims: JWTPayload = {}, key: Uint8Array = secretKey, alg = 'HS256'): Promise<string> {
  const payload: JWTPayload = { sub: 'alice', iat: nowSeconds(), exp: nowSeconds() + 300, ...claims }
  for (const [name, value] of Object.entries(payload)) if (value === undefined) delete payload[name]
  return new SignJWT(payload).setProtectedHeader({ alg }).sign(key)
}

/** An unsigned token (`alg: none`), which must never pass. */
const noneToken = (claims: JWTPayload = {}) => `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'alice', exp: nowSeconds() + 300, ...claims })}.`

function refused(verdict: TokenVerdict, code: 'INVALID_TOKEN' | 'AUTH_UNAVAILABLE' = 'INVALID_TOKEN'): void {
  assert.equal(verdict.ok, false, 'the token must be refused')
  assert.equal(!verdict.ok && verdict.code, code)
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

async function close(server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
}

describe('gateway tokens signed with GATEWAY_JWT_SECRET (HS256)', () => {
  const verifier = tokenVerifier(secretAuth())

  it('accepts a valid token and yields its subject', async () => {
    assert.deepEqual(await verifier.verify(await hsToken({ sub: 'user-42' })), { ok: true, subject: 'user-42' })
  })

  it('refuses an expired token, and one not valid yet', async () => {
    refused(await verifier.verify(await hsToken({ iat: nowSeconds() - 7200, exp: nowSeconds() - 3600 })))
    refused(await verifier.verify(await hsToken({ nbf: nowSeconds() + 3600 })))
  })

  it('refuses a token signed with another secret', async () => {
    refused(await verifier.verify(await hsToken({}, new TextEncoder().encode('another-secret-0123456789abcdef-0123456789'))))
  })

  it('refuses alg none, and algorithms other than HS256 even with the right secret', async () => {
    refused(await verifier.verify(noneToken()))
    refused(await verifier.verify(await hsToken({}, secretKey, 'HS512')))
    const { privateKey } = await generateKeyPair('RS256')
    refused(await verifier.verify(await new SignJWT({ sub: 'alice', exp: nowSeconds() + 300 }).setProtectedHeader({ alg: 'RS256' }).sign(privateKey)))
  })

  it('refuses a token without a subject or an expiry, or with a subject no header can carry', async () => {
    refused(await verifier.verify(await hsToken({ sub: undefined })))
    refused(await verifier.verify(await hsToken({ exp: undefined })))
    refused(await verifier.verify(await hsToken({ sub: 'two words' })))
    refused(await verifier.verify(await hsToken({ sub: 'x'.repeat(256) })))
  })

  it('refuses garbage without throwing', async () => {
    for (const token of ['abc', 'a.b.c', '..', `${b64({ alg: 'HS256' })}.${b64('not an object')}.sig`, `${'e'.repeat(100)}.${'e'.repeat(100)}.${'e'.repeat(43)}`]) {
      refused(await verifier.verify(token))
    }
  })

  it('checks the issuer and audience when they are configured', async () => {
    const strict = tokenVerifier(secretAuth({ issuer: 'https://issuer.example', audience: 'shop' }))
    assert.equal((await strict.verify(await hsToken({ iss: 'https://issuer.example', aud: 'shop' }))).ok, true)
    assert.equal((await strict.verify(await hsToken({ iss: 'https://issuer.example', aud: ['other', 'shop'] }))).ok, true)
    refused(await strict.verify(await hsToken({ iss: 'https://issuer.example', aud: 'other' })))
    refused(await strict.verify(await hsToken({ iss: 'https://evil.example', aud: 'shop' })))
    refused(await strict.verify(await hsToken({ aud: 'shop' })))
    refused(await strict.verify(await hsToken({ iss: 'https://issuer.example' })))
  })
})

describe('gateway tokens checked against GATEWAY_JWKS_URL', () => {
  let jwksServer: Server
  let jwksUrl: string
  let jwksStatus = 200
  let fetches = 0
  let signingKey: PrivateKey
  let publicPem: string
  let publicJwk: Record<string, unknown>

  before(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true })
    signingKey = pair.privateKey
    publicPem = await exportSPKI(pair.publicKey)
    publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'key-1', alg: 'RS256', use: 'sig' }
    jwksServer = createServer((_request, response) => {
      fetches++
      response.writeHead(jwksStatus, { 'content-type': 'application/json' })
      response.end(jwksStatus === 200 ? JSON.stringify({ keys: [publicJwk] }) : '{"error":"down"}')
    })
    jwksUrl = `${await listen(jwksServer)}/.well-known/jwks.json`
  })

  after(async () => {
    await close(jwksServer)
  })

  const rsToken = (claims: JWTPayload = {}, key: PrivateKey = signingKey, header: Record<string, unknown> = { alg: 'RS256', kid: 'key-1' }) =>
    new SignJWT({ sub: 'alice', exp: nowSeconds() + 300, ...claims }).setProtectedHeader(header as { alg: string }).sign(key)

  it('accepts a token signed by a key of the set', async () => {
    const verifier = tokenVerifier({ keys: { kind: 'jwks', url: jwksUrl }, issuer: undefined, audience: undefined })
    assert.deepEqual(await verifier.verify(await rsToken({ sub: 'jwks-user' })), { ok: true, subject: 'jwks-user' })
    // The key set is cached: the next token needs no fetch.
    const before = fetches
    assert.equal((await verifier.verify(await rsToken())).ok, true)
    assert.equal(fetches, before)
  })

  it('refuses expired tokens, other keys, alg none and HS256 signed with the public key (algorithm confusion)', async () => {
    const verifier = tokenVerifier({ keys: { kind: 'jwks', url: jwksUrl }, issuer: 'https://issuer.example', audience: 'shop' })
    const good = { iss: 'https://issuer.example', aud: 'shop' }
    assert.equal((await verifier.verify(await rsToken(good))).ok, true)
    refused(await verifier.verify(await rsToken({ ...good, exp: nowSeconds() - 3600 })))
    refused(await verifier.verify(await rsToken({ ...good, aud: 'other' })))
    refused(await verifier.verify(await rsToken({ ...good, iss: 'https://evil.example' })))
    const { privateKey: stranger } = await generateKeyPair('RS256')
    refused(await verifier.verify(await rsToken(good, stranger)))
    refused(await verifier.verify(noneToken(good)))
    // The classic confusion: the public key (known to all) used as an HMAC secret.
    for (const secret of [publicPem, JSON.stringify(publicJwk)]) {
      const forged = await new SignJWT({ sub: 'alice', exp: nowSeconds() + 300, ...good }).setProtectedHeader({ alg: 'HS256', kid: 'key-1' }).sign(new TextEncoder().encode(secret))
      refused(await verifier.verify(forged))
    }
  })

  it('answers AUTH_UNAVAILABLE, not INVALID_TOKEN, when the key set cannot be fetched', async () => {
    jwksStatus = 500
    try {
      const verifier = tokenVerifier({ keys: { kind: 'jwks', url: jwksUrl }, issuer: undefined, audience: undefined })
      refused(await verifier.verify(await rsToken()), 'AUTH_UNAVAILABLE')
    } finally {
      jwksStatus = 200
    }
    const gone = createServer()
    const goneUrl = await listen(gone)
    await close(gone)
    const unreachable = tokenVerifier({ keys: { kind: 'jwks', url: `${goneUrl}/jwks.json` }, issuer: undefined, audience: undefined })
    refused(await unreachable.verify(await rsToken()), 'AUTH_UNAVAILABLE')
    // A token that is not even a JWS is the client's problem, whatever the key set's state.
    refused(await unreachable.verify('not-a-token'))
  })
})

/** An app shaped like the gateway: its proxied routes in a scope behind the hook, echoing the subject the upstream would get. */
async function guardedApp(auth: GatewayAuthOptions | undefined): Promise<App> {
  const app = buildApp({ logger: silentLogger() })
  app.get('/health/live', async () => ({ status: 'ok' }))
  await app.register(async (scope) => {
    const proxied = scope as unknown as App
    registerGatewayAuth(proxied, { auth, logger: silentLogger() })
    for (const prefix of ['/products', '/orders']) {
      const echo = async (request: { headers: Record<string, unknown> }) => ({ subject: request.headers['x-auth-subject'] ?? null })
      proxied.all(prefix, echo)
      proxied.all(`${prefix}/*`, echo)
    }
  })
  await app.ready()
  return app
}

describe('the gateway authentication hook', () => {
  let open: App
  let guarded: App

  before(async () => {
    open = await guardedApp(undefined)
    guarded = await guardedApp(secretAuth())
  })

  after(async () => {
    await open.close()
    await guarded.close()
  })

  it('off: lets everything through, but always strips a subject the client claims', async () => {
    for (const [method, url] of [
      ['GET', '/orders'],
      ['POST', '/orders'],
      ['GET', '/products/1'],
    ] as const) {
      const response = await open.inject({ method, url, headers: { 'x-auth-subject': 'mallory' } })
      assert.equal(response.statusCode, 200)
      assert.deepEqual(response.json(), { subject: null })
    }
  })

  it('on: reads of /products are open, as anonymous; a claimed subject is stripped', async () => {
    for (const [method, url] of [
      ['GET', '/products'],
      ['GET', '/products/5f0c?limit=1'],
      ['HEAD', '/products'],
    ] as const) {
      const response = await guarded.inject({ method, url, headers: { 'x-auth-subject': 'mallory' } })
      assert.equal(response.statusCode, 200, `${method} ${url}`)
      if (method === 'GET') assert.deepEqual(response.json(), { subject: null })
    }
  })

  it('on: everything else needs a bearer token: 401 problem+json with WWW-Authenticate', async () => {
    const requests = [
      ['POST', '/products'],
      ['PUT', '/products/1'],
      ['DELETE', '/products/1'],
      ['GET', '/orders'],
      ['GET', '/orders/1'],
      ['POST', '/orders'],
      // Not a read of /products once resolved.
      ['GET', '/products/../orders'],
      ['GET', '/products/%2e%2e/orders'],
    ] as const
    for (const [method, url] of requests) {
      const response = await guarded.inject({ method, url, headers: { 'x-auth-subject': 'alice' } })
      assert.equal(response.statusCode, 401, `${method} ${url}`)
      assert.equal(response.json().code, 'UNAUTHENTICATED')
      assert.match(response.headers['content-type'] ?? '', /application\/problem\+json/)
      assert.equal(response.headers['www-authenticate'], 'Bearer realm="gateway"')
    }
    for (const authorization of ['Basic YWxpY2U6cHc=', 'Bearer', 'Bearer ', 'alice']) {
      const response = await guarded.inject({ method: 'GET', url: '/orders', headers: { authorization } })
      assert.equal(response.statusCode, 401, authorization)
      assert.equal(response.json().code, 'UNAUTHENTICATED')
    }
  })

  it('on: a bad token is 401 INVALID_TOKEN, never a 500', async () => {
    const expired = await hsToken({ iat: nowSeconds() - 7200, exp: nowSeconds() - 3600 })
    const wrongKey = await hsToken({}, new TextEncoder().encode('another-secret-0123456789abcdef-0123456789'))
    for (const token of [expired, wrongKey, noneToken(), 'garbage', 'a.b.c']) {
      const response = await guarded.inject({ method: 'GET', url: '/orders', headers: { authorization: `Bearer ${token}` } })
      assert.equal(response.statusCode, 401)
      assert.equal(response.json().code, 'INVALID_TOKEN')
      assert.equal(response.headers['www-authenticate'], 'Bearer realm="gateway", error="invalid_token"')
      assert.ok(!response.body.includes(token), 'the token is not echoed')
    }
  })

  it("on: a valid token passes, and the upstream gets the token's subject, never the claimed one", async () => {
    const token = await hsToken({ sub: 'alice' })
    for (const [method, url] of [
      ['GET', '/orders'],
      ['POST', '/orders'],
      ['POST', '/products'],
      ['GET', '/products'],
    ] as const) {
      const response = await guarded.inject({ method, url, headers: { authorization: `bearer ${token}`, 'x-auth-subject': 'mallory' } })
      assert.equal(response.statusCode, 200, `${method} ${url}`)
      const expected = method === 'GET' && url === '/products' ? null : 'alice'
      assert.deepEqual(response.json(), { subject: expected })
    }
  })

  it('leaves routes outside its scope alone', async () => {
    assert.equal((await guarded.inject({ method: 'GET', url: '/health/live' })).statusCode, 200)
  })
})

describe('the gateway with GATEWAY_JWT_SECRET', () => {
  it('keeps its own health, metrics and documents open and guards the routes', async () => {
    const config = loadGatewayConfig({ GATEWAY_JWT_SECRET: SECRET, REGISTRY_URL: 'http://127.0.0.1:9', LOG_LEVEL: 'silent' })
    const gateway = await buildGateway(config, { logger: silentLogger(), telemetry: noopTelemetry })
    try {
      for (const url of ['/health/live', '/metrics', '/docs/']) {
        assert.equal((await gateway.app.inject({ method: 'GET', url })).statusCode, 200, url)
      }
      const refused = await gateway.app.inject({ method: 'POST', url: '/orders', payload: { product_id: 'x', quantity: 1 } })
      assert.equal(refused.statusCode, 401)
      assert.equal(refused.json().code, 'UNAUTHENTICATED')
    } finally {
      await gateway.app.close()
      await gateway.registryClient.close()
    }
  })
})

describe('gateway authentication configuration', () => {
  const dir = mkdtempSync(join(tmpdir(), 'msa-gateway-auth-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  function configError(env: Record<string, string>): ConfigError {
    try {
      loadGatewayConfig(env)
    } catch (error) {
      assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`)
      return error
    }
    assert.fail(`expected a ConfigError for ${JSON.stringify(Object.keys(env))}`)
  }

  it('is off by default', () => {
    assert.equal(loadGatewayConfig({}).auth, undefined)
  })

  it('reads a secret, from the variable or from a file without its trailing newline', () => {
    assert.deepEqual(loadGatewayConfig({ GATEWAY_JWT_SECRET: SECRET }).auth, secretAuth())
    const file = join(dir, 'secret')
    writeFileSync(file, `${SECRET}\n`)
    assert.deepEqual(loadGatewayConfig({ GATEWAY_JWT_SECRET_FILE: file, GATEWAY_JWT_ISSUER: 'https://issuer.example', GATEWAY_JWT_AUDIENCE: 'shop' }).auth, {
      keys: { kind: 'secret', secret: SECRET },
      issuer: 'https://issuer.example',
      audience: 'shop',
    })
  })

  it('reads a JWKS URL', () => {
    assert.deepEqual(loadGatewayConfig({ GATEWAY_JWKS_URL: 'https://login.example/keys?tenant=1' }).auth, {
      keys: { kind: 'jwks', url: 'https://login.example/keys?tenant=1' },
      issuer: undefined,
      audience: undefined,
    })
  })

  it('refuses a short secret without showing it, both ways at once, a bad URL, and claims checks without keys', () => {
    const short = configError({ GATEWAY_JWT_SECRET: 'short-secret-value' })
    assert.equal(short.variable, 'GATEWAY_JWT_SECRET')
    assert.ok(!short.message.includes('short-secret-value'), 'the secret is not in the message')
    // 31 bytes is short; 32 is enough.
    assert.equal(configError({ GATEWAY_JWT_SECRET: 'x'.repeat(31) }).variable, 'GATEWAY_JWT_SECRET')
    assert.ok(loadGatewayConfig({ GATEWAY_JWT_SECRET: 'x'.repeat(32) }).auth)
    assert.equal(configError({ GATEWAY_JWT_SECRET: SECRET, GATEWAY_JWKS_URL: 'https://login.example/keys' }).variable, 'GATEWAY_JWKS_URL')
    assert.equal(configError({ GATEWAY_JWT_SECRET: SECRET, GATEWAY_JWT_SECRET_FILE: join(dir, 'secret') }).variable, 'GATEWAY_JWT_SECRET_FILE')
    assert.equal(configError({ GATEWAY_JWT_SECRET_FILE: join(dir, 'missing') }).variable, 'GATEWAY_JWT_SECRET_FILE')
    for (const url of ['not a url', 'ftp://login.example/keys', 'https://user:pw@login.example/keys', '/keys']) {
      const error = configError({ GATEWAY_JWKS_URL: url })
      assert.equal(error.variable, 'GATEWAY_JWKS_URL')
      assert.ok(!error.message.includes(':pw@'), 'credentials are not repeated')
    }
    assert.equal(configError({ GATEWAY_JWT_ISSUER: 'https://issuer.example' }).variable, 'GATEWAY_JWT_ISSUER')
    assert.equal(configError({ GATEWAY_JWT_AUDIENCE: 'shop' }).variable, 'GATEWAY_JWT_AUDIENCE')
  })
})
