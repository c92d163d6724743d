import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ConfigError, DEFAULTS, loadAllConfig, loadGatewayConfig, loadRegistryConfig, loadServiceConfig } from '../../src/config/index.ts'
import { advertisedUrl } from '../../src/runtime/address.ts'

function configError(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`)
    return error
  }
  assert.fail('expected a ConfigError')
}

describe('configuration', () => {
  it('has the documented defaults', () => {
    const registry = loadRegistryConfig({})
    assert.equal(registry.port, 8080)
    assert.equal(registry.host, '0.0.0.0')
    assert.equal(registry.ttlSeconds, 30)
    const product = loadServiceConfig({}, 'product')
    assert.equal(product.port, 8081)
    assert.deepEqual(product.registryUrls, ['http://localhost:8080'])
    assert.equal(product.heartbeatIntervalSeconds, 10)
    assert.equal(product.dataDir, DEFAULTS.dataDir)
    assert.equal(product.databaseUrl, undefined)
    assert.equal(product.databaseQueryTimeoutSeconds, 10)
    assert.equal(product.serviceUrl, undefined)
    assert.equal(loadServiceConfig({}, 'order').port, 8083)
    assert.deepEqual(loadAllConfig({}), {
      host: '0.0.0.0',
      logLevel: 'info',
      logFormat: undefined,
      registryPort: 8080,
      productPorts: [8081, 8082],
      orderPorts: [8083],
      gatewayPort: 8000,
      registryDnsPort: 8600,
    })
    assert.equal(registry.healthCheckIntervalSeconds, 10)
    assert.equal(registry.healthCheckFailures, 3)
    assert.equal(registry.maxInstances, 10_000)
    assert.equal(registry.warmupSeconds, 15)
  })

  it('reads the health check concurrency and allowed hosts', () => {
    assert.equal(loadRegistryConfig({}).healthCheckConcurrency, 16)
    assert.deepEqual(loadRegistryConfig({}).healthCheckAllowedHosts, [])
    const config = loadRegistryConfig({
      REGISTRY_HEALTH_CHECK_CONCURRENCY: '1000',
      REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS: ' Health.Internal, 10.0.0.5,,::1 ,[FD00::2]',
    })
    assert.equal(config.healthCheckConcurrency, 1000)
    assert.deepEqual(config.healthCheckAllowedHosts, ['health.internal', '10.0.0.5', '[::1]', '[fd00::2]'])
    assert.equal(loadRegistryConfig({ REGISTRY_HEALTH_CHECK_CONCURRENCY: '1' }).healthCheckConcurrency, 1)
  })

  it('reads the store and DNS settings; DNS is off by default where reads need a token', () => {
    assert.deepEqual(loadRegistryConfig({}).store, { kind: 'memory' })
    assert.deepEqual(loadRegistryConfig({ REGISTRY_STORE: 'etcd', ETCD_ENDPOINTS: 'http://a:2379,http://b:2379' }).store, {
      kind: 'etcd',
      endpoints: ['http://a:2379', 'http://b:2379'],
      prefix: '/microservices-advanced',
    })
    assert.throws(
      () => loadRegistryConfig({ REGISTRY_STORE: 'etcd', ETCD_PREFIX: 'no-slash' }),
      (error: unknown) => error instanceof ConfigError && error.variable === 'ETCD_PREFIX',
    )
    assert.throws(
      () => loadRegistryConfig({ REGISTRY_STORE: 'zookeeper' }),
      (error: unknown) => error instanceof ConfigError && error.variable === 'REGISTRY_STORE',
    )
    assert.equal(loadRegistryConfig({}).dnsPort, 8600)
    assert.equal(loadRegistryConfig({}).dnsDomain, 'consul')
    assert.equal(loadRegistryConfig({ REGISTRY_DNS_DOMAIN: 'Registry.Internal.' }).dnsDomain, 'registry.internal')
    assert.throws(
      () => loadRegistryConfig({ REGISTRY_DNS_DOMAIN: 'bad_domain' }),
      (error: unknown) => error instanceof ConfigError && error.variable === 'REGISTRY_DNS_DOMAIN',
    )
    // DNS cannot carry a token: with a read token it is off unless its port is given.
    const token = 'read-token-0123456789abcdefgh'
    assert.equal(loadRegistryConfig({ REGISTRY_READ_TOKEN: token }).dnsPort, 0)
    assert.equal(loadRegistryConfig({ REGISTRY_READ_TOKEN: token, REGISTRY_DNS_PORT: '8600' }).dnsPort, 8600)
  })

  it('reads the watcher cap', () => {
    assert.equal(loadRegistryConfig({}).maxWatchers, 1024)
    assert.equal(loadRegistryConfig({ REGISTRY_MAX_WATCHERS: '50' }).maxWatchers, 50)
  })

  it('reads the gateway routing table and refuses a malformed one', () => {
    assert.deepEqual(loadGatewayConfig({}).routes, [
      { prefix: '/products', service: 'product' },
      { prefix: '/orders', service: 'order' },
    ])
    assert.equal(loadGatewayConfig({}).port, 8000)
    assert.deepEqual(loadGatewayConfig({ GATEWAY_ROUTES: '/api/v1/items=items' }).routes, [{ prefix: '/api/v1/items', service: 'items' }])
    for (const bad of ['products=product', '/products', '/a=x,/a=y', '/a=Bad Name']) {
      const error = configError(() => loadGatewayConfig({ GATEWAY_ROUTES: bad }))
      assert.equal(error.variable, 'GATEWAY_ROUTES')
    }
  })

  it('reads the resilience settings', () => {
    const config = loadServiceConfig(
      { LB_STRATEGY: 'least_outstanding', BREAKER_FAILURES: '3', BREAKER_HALF_OPEN_SECONDS: '0.5', RETRY_BUDGET_PERCENT: '10', DRAIN_SECONDS: '0' },
      'order',
    )
    assert.equal(config.lbStrategy, 'least_outstanding')
    assert.equal(config.breakerFailures, 3)
    assert.equal(config.breakerHalfOpenSeconds, 0.5)
    assert.equal(config.retryBudgetPercent, 10)
    assert.equal(config.drainSeconds, 0)
    assert.equal(configError(() => loadServiceConfig({ LB_STRATEGY: 'fastest' }, 'order')).variable, 'LB_STRATEGY')
  })

  it('accepts fractional seconds, URL lists and PostgreSQL URLs', () => {
    const config = loadServiceConfig(
      {
        HEARTBEAT_INTERVAL_SECONDS: '0.5',
        REGISTRY_URL: 'http://r1:8080, http://r2:8080/',
        SERVICE_URL: 'http://10.1.2.3:8081',
        DATABASE_URL: 'postgres://u:p@db:5432/shop',
        DATABASE_QUERY_TIMEOUT_SECONDS: '2.5',
        LOG_LEVEL: 'DEBUG',
      },
      'product',
    )
    assert.equal(config.heartbeatIntervalSeconds, 0.5)
    assert.deepEqual(config.registryUrls, ['http://r1:8080', 'http://r2:8080'])
    assert.equal(config.serviceUrl, 'http://10.1.2.3:8081')
    assert.equal(config.databaseUrl, 'postgres://u:p@db:5432/shop')
    assert.equal(config.databaseQueryTimeoutSeconds, 2.5)
    assert.equal(config.logLevel, 'debug')
    assert.equal(loadRegistryConfig({ REGISTRY_TTL_SECONDS: '1.5' }).ttlSeconds, 1.5)
  })

  const bad: Array<[string, Record<string, string>, 'registry' | 'product' | 'all']> = [
    ['PORT', { PORT: '70000' }, 'registry'],
    ['PORT', { PORT: 'eighty' }, 'product'],
    ['PORT', { PORT: '-1' }, 'product'],
    ['REGISTRY_TTL_SECONDS', { REGISTRY_TTL_SECONDS: '0' }, 'registry'],
    ['REGISTRY_TTL_SECONDS', { REGISTRY_TTL_SECONDS: '30s' }, 'registry'],
    ['HEARTBEAT_INTERVAL_SECONDS', { HEARTBEAT_INTERVAL_SECONDS: '-5' }, 'product'],
    ['REGISTRY_URL', { REGISTRY_URL: 'localhost:8080' }, 'product'],
    ['REGISTRY_URL', { REGISTRY_URL: 'ftp://r:21' }, 'product'],
    ['SERVICE_URL', { SERVICE_URL: 'not a url' }, 'product'],
    ['DATABASE_URL', { DATABASE_URL: 'mysql://db/x' }, 'product'],
    ['DATABASE_QUERY_TIMEOUT_SECONDS', { DATABASE_QUERY_TIMEOUT_SECONDS: '0' }, 'product'],
    ['DATABASE_QUERY_TIMEOUT_SECONDS', { DATABASE_QUERY_TIMEOUT_SECONDS: '10s' }, 'product'],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }, 'registry'],
    ['LOG_FORMAT', { LOG_FORMAT: 'xml' }, 'registry'],
    ['REGISTRY_MAX_WATCHERS', { REGISTRY_MAX_WATCHERS: '0' }, 'registry'],
    ['REGISTRY_MAX_WATCHERS', { REGISTRY_MAX_WATCHERS: 'lots' }, 'registry'],
    ['REGISTRY_HEALTH_CHECK_FAILURES', { REGISTRY_HEALTH_CHECK_FAILURES: '0' }, 'registry'],
    ['REGISTRY_HEALTH_CHECK_CONCURRENCY', { REGISTRY_HEALTH_CHECK_CONCURRENCY: '0' }, 'registry'],
    ['REGISTRY_HEALTH_CHECK_CONCURRENCY', { REGISTRY_HEALTH_CHECK_CONCURRENCY: '1001' }, 'registry'],
    ['REGISTRY_HEALTH_CHECK_CONCURRENCY', { REGISTRY_HEALTH_CHECK_CONCURRENCY: 'many' }, 'registry'],
    ['REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS', { REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS: 'http://health.internal' }, 'registry'],
    ['REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS', { REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS: 'health.internal:9000' }, 'registry'],
    ['REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS', { REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS: 'ok.internal,bad host' }, 'registry'],
    ['REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS', { REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS: '300.1.1.1' }, 'registry'],
    ['HOST', { HOST: 'bad host!' }, 'registry'],
    ['PRODUCT_PORTS', { PRODUCT_PORTS: '8081,8081' }, 'all'],
    ['ORDER_PORTS', { ORDER_PORTS: '8083,x' }, 'all'],
    // npm start: each process its own port (the second on a port could never start).
    ['PRODUCT_PORTS', { PRODUCT_PORTS: '8080,8082' }, 'all'],
    ['GATEWAY_PORT', { GATEWAY_PORT: '8083' }, 'all'],
    ['REGISTRY_DNS_PORT', { REGISTRY_DNS_PORT: '8000' }, 'all'],
    ['REGISTRY_PORT', { REGISTRY_PORT: '0' }, 'all'],
  ]
  for (const [variable, env, role] of bad) {
    it(`refuses ${variable}=${Object.values(env)[0]} with a message naming the variable, the value and what is expected`, () => {
      const load = role === 'registry' ? () => loadRegistryConfig(env) : role === 'all' ? () => loadAllConfig(env) : () => loadServiceConfig(env, 'product')
      const error = configError(load)
      assert.equal(error.variable, variable)
      assert.ok(error.message.startsWith(`${variable}=`))
      assert.match(error.message, /expected /)
      if (variable !== 'DATABASE_URL') assert.ok(error.message.includes(JSON.stringify(Object.values(env)[0])))
    })
  }

  it('never echoes a database password in an error', () => {
    const error = configError(() => loadServiceConfig({ DATABASE_URL: 'mysql://user:s3cret@db/x' }, 'product'))
    assert.ok(!error.message.includes('s3cret'))
  })

  it('reads DATABASE_URL_FILE (a Compose or Kubernetes secret): trailing newline dropped, never with DATABASE_URL, the URL never in an error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'config-test-'))
    try {
      const file = (name: string, content: string) => {
        writeFileSync(join(dir, name), content)
        return join(dir, name)
      }
      const good = file('good', 'postgres://app:s3cret@postgres:5432/app\n')
      assert.equal(loadServiceConfig({ DATABASE_URL_FILE: good }, 'product').databaseUrl, 'postgres://app:s3cret@postgres:5432/app')
      assert.equal(loadServiceConfig({ DATABASE_URL_FILE: file('crlf', 'postgresql://app:s3cret@db/app\r\n') }, 'order').databaseUrl, 'postgresql://app:s3cret@db/app')

      const both = configError(() => loadServiceConfig({ DATABASE_URL: 'postgres://app:s3cret@db/app', DATABASE_URL_FILE: good }, 'product'))
      assert.equal(both.variable, 'DATABASE_URL_FILE')
      const missing = configError(() => loadServiceConfig({ DATABASE_URL_FILE: join(dir, 'absent') }, 'product'))
      assert.equal(missing.variable, 'DATABASE_URL_FILE')
      assert.ok(missing.message.includes(join(dir, 'absent')), missing.message)
      // An empty file is a mistake, not a request for SQLite.
      assert.equal(configError(() => loadServiceConfig({ DATABASE_URL_FILE: file('empty', '') }, 'product')).variable, 'DATABASE_URL_FILE')
      for (const content of ['mysql://user:s3cret@db/x\n', 'user:s3cret@db', 's3cret']) {
        const error = configError(() => loadServiceConfig({ DATABASE_URL_FILE: file('bad', content) }, 'product'))
        assert.equal(error.variable, 'DATABASE_URL_FILE')
        assert.match(error.message, /expected /)
        for (const message of [error.message, both.message]) assert.ok(!message.includes('s3cret'), message)
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('reads registry tokens from the environment or a file (trailing newline dropped), never echoing one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'msa-config-tokens-'))
    try {
      const token = 'a-registry-token-0123456789'
      const file = join(dir, 'token')
      writeFileSync(file, `${token}\n`)
      assert.equal(loadRegistryConfig({ REGISTRY_TOKEN_FILE: file }).adminToken, token)
      assert.equal(loadServiceConfig({ REGISTRY_TOKEN_FILE: file }, 'product').registryToken, token)
      assert.equal(loadRegistryConfig({ REGISTRY_READ_TOKEN: token }).readToken, token)
      assert.equal(loadRegistryConfig({}).adminToken, undefined)
      assert.equal(configError(() => loadRegistryConfig({ REGISTRY_TOKEN: token, REGISTRY_TOKEN_FILE: file })).variable, 'REGISTRY_TOKEN_FILE')
      assert.equal(configError(() => loadServiceConfig({ REGISTRY_TOKEN_FILE: join(dir, 'missing') }, 'order')).variable, 'REGISTRY_TOKEN_FILE')
      const short = configError(() => loadRegistryConfig({ REGISTRY_TOKEN: 'short-secret' }))
      assert.equal(short.variable, 'REGISTRY_TOKEN')
      assert.ok(!short.message.includes('short-secret'), short.message)

      const acl = join(dir, 'acl.json')
      writeFileSync(acl, JSON.stringify({ tokens: [{ name: 'product', sha256: 'ab'.repeat(32), services: ['product'] }] }))
      assert.equal(loadRegistryConfig({ REGISTRY_ACL_FILE: acl }).aclFile, acl)
      writeFileSync(acl, '{"tokens": [{"name": "product"}]}')
      assert.match(configError(() => loadRegistryConfig({ REGISTRY_ACL_FILE: acl })).message, /REGISTRY_ACL_FILE/)
      assert.equal(configError(() => loadRegistryConfig({ REGISTRY_ACL_FILE: join(dir, 'none.json') })).variable, 'REGISTRY_ACL_FILE')
      assert.equal(loadRegistryConfig({ REGISTRY_WRITE_RATE_LIMIT: '0' }).writeRateLimitPerMinute, 0)
      assert.equal(loadRegistryConfig({ REGISTRY_MAX_INSTANCES_PER_SERVICE: '5' }).maxInstancesPerService, 5)
      assert.equal(configError(() => loadRegistryConfig({ REGISTRY_MAX_INSTANCES_PER_SERVICE: '0' })).variable, 'REGISTRY_MAX_INSTANCES_PER_SERVICE')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('advertises the bind address, or a non-loopback address when binding every interface', () => {
    assert.equal(advertisedUrl('127.0.0.1', 8081), 'http://127.0.0.1:8081')
    assert.equal(advertisedUrl('::1', 8081), 'http://[::1]:8081')
    assert.match(advertisedUrl('0.0.0.0', 8081), /^http:\/\/\d+\.\d+\.\d+\.\d+:8081$/)
    assert.ok(!advertisedUrl('0.0.0.0', 8081).startsWith('http://0.0.0.0'))
  })
})
