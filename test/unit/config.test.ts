import assert from 'node:assert/strict'
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
    })
    assert.equal(registry.healthCheckIntervalSeconds, 10)
    assert.equal(registry.healthCheckFailures, 3)
    assert.equal(registry.maxInstances, 10_000)
    assert.equal(registry.warmupSeconds, 15)
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
        LOG_LEVEL: 'DEBUG',
      },
      'product',
    )
    assert.equal(config.heartbeatIntervalSeconds, 0.5)
    assert.deepEqual(config.registryUrls, ['http://r1:8080', 'http://r2:8080'])
    assert.equal(config.serviceUrl, 'http://10.1.2.3:8081')
    assert.equal(config.databaseUrl, 'postgres://u:p@db:5432/shop')
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
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }, 'registry'],
    ['LOG_FORMAT', { LOG_FORMAT: 'xml' }, 'registry'],
    ['REGISTRY_HEALTH_CHECK_FAILURES', { REGISTRY_HEALTH_CHECK_FAILURES: '0' }, 'registry'],
    ['HOST', { HOST: 'bad host!' }, 'registry'],
    ['PRODUCT_PORTS', { PRODUCT_PORTS: '8081,8081' }, 'all'],
    ['ORDER_PORTS', { ORDER_PORTS: '8083,x' }, 'all'],
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

  it('advertises the bind address, or a non-loopback address when binding every interface', () => {
    assert.equal(advertisedUrl('127.0.0.1', 8081), 'http://127.0.0.1:8081')
    assert.equal(advertisedUrl('::1', 8081), 'http://[::1]:8081')
    assert.match(advertisedUrl('0.0.0.0', 8081), /^http:\/\/\d+\.\d+\.\d+\.\d+:8081$/)
    assert.ok(!advertisedUrl('0.0.0.0', 8081).startsWith('http://0.0.0.0'))
  })
})
