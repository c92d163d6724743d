import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Env, databaseUrl, fromEnvOrFile, host, hostnameList, httpUrlList, integer, oneOf, optionalHttpUrl, port, ports, secret, seconds, text } from './parse.ts'

import { LB_STRATEGIES, type LbStrategy } from '../discovery/balancer.ts'
import type { RegistryOptions, StoreChoice } from '../registry/server.ts'
import type { DatabaseOptions } from '../runtime/database.ts'
import type { ServiceOptions } from '../runtime/service.ts'
import type { UpstreamOptions } from '../runtime/upstream.ts'

import { DEFAULT_ROUTES, parseRoutes, type Route } from '../gateway/routing.ts'
import type { GatewayAuthOptions } from '../gateway/auth.ts'
import { ConfigError } from './parse.ts'

export { ConfigError }
export type { Env } from './parse.ts'

export const ROLES = ['registry', 'product', 'order', 'gateway', 'all'] as const
export type Role = (typeof ROLES)[number]

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** Every default in one place. */
export const DEFAULTS = {
  host: '0.0.0.0',
  port: { registry: 8080, product: 8081, order: 8083, gateway: 8000 },
  allPorts: { registry: 8080, product: [8081, 8082], order: [8083], gateway: 8000 },
  registryUrl: 'http://localhost:8080',
  heartbeatIntervalSeconds: 10,
  registryTtlSeconds: 30,
  dataDir: './data',
  logLevel: 'info' as LogLevel,
  healthCheckIntervalSeconds: 10,
  healthCheckTimeoutSeconds: 2,
  healthCheckFailures: 3,
  healthCheckConcurrency: 16,
  maxInstances: 10_000,
  maxInstancesPerService: 1000,
  maxWatchers: 1024,
  writeRateLimitPerMinute: 1200,
  shutdownTimeoutSeconds: 8,
  upstreamTimeoutSeconds: 5,
  databaseQueryTimeoutSeconds: 10,
  upstreamConnectTimeoutSeconds: 1,
  lbStrategy: 'round_robin' as LbStrategy,
  breakerFailures: 5,
  breakerHalfOpenSeconds: 5,
  retryBudgetPercent: 20,
  drainSeconds: 1,
  etcdEndpoints: 'http://127.0.0.1:2379',
  etcdPrefix: '/microservices-advanced',
  dnsPort: 8600,
  dnsDomain: 'consul',
} as const

export type LogFormat = 'json' | 'pretty'

export interface CommonConfig {
  host: string
  port: number
  logLevel: LogLevel
  /** Undefined: pretty on a terminal, JSON otherwise. */
  logFormat: LogFormat | undefined
  shutdownTimeoutSeconds: number
}

// Each role's configuration is what its layer asks for (declared there, next to the code that
// uses it) plus what every process shares.
export interface RegistryConfig extends CommonConfig, RegistryOptions {}

export interface ServiceConfig extends CommonConfig, ServiceOptions, DatabaseOptions, UpstreamOptions {}

export interface GatewayConfig extends ServiceConfig {
  routes: Route[]
  /** Undefined: no authentication (the default). */
  auth: GatewayAuthOptions | undefined
}

export interface AllConfig {
  host: string
  logLevel: LogLevel
  logFormat: LogFormat | undefined
  registryPort: number
  productPorts: number[]
  orderPorts: number[]
  /** 0: no gateway. */
  gatewayPort: number
  /** The registry's DNS port (REGISTRY_DNS_PORT; 0: none). */
  registryDnsPort: number
}

/** `npm start`: the variable that sets each port of the system, as a person would change it. */
export const ALL_PORT_VARIABLES = {
  registry: 'REGISTRY_PORT',
  product: 'PRODUCT_PORTS',
  order: 'ORDER_PORTS',
  gateway: 'GATEWAY_PORT',
  dns: 'REGISTRY_DNS_PORT',
} as const

function logFormat(env: Env): LogFormat | undefined {
  const value = env.LOG_FORMAT?.trim()
  return value ? oneOf(env, 'LOG_FORMAT', 'json', ['json', 'pretty'] as const) : undefined
}

function common(env: Env, role: Exclude<Role, 'all'>): CommonConfig {
  return {
    host: host(env, 'HOST', DEFAULTS.host),
    port: port(env, 'PORT', DEFAULTS.port[role]),
    logLevel: oneOf(env, 'LOG_LEVEL', DEFAULTS.logLevel, LOG_LEVELS),
    logFormat: logFormat(env),
    shutdownTimeoutSeconds: seconds(env, 'SHUTDOWN_TIMEOUT_SECONDS', DEFAULTS.shutdownTimeoutSeconds, { min: 0.1, max: 300 }),
  }
}

const readSecretFile = (path: string) => readFileSync(path, 'utf8')

// The ACL parser (and the TypeBox schema it checks with) is required when REGISTRY_ACL_FILE is set,
// not imported: the supervisor of `npm start` reads this configuration too, and would otherwise
// carry TypeBox (about 25 MB) for nothing. Node 24 requires ES modules synchronously.
const AUTH_MODULE = `../registry/auth${extname(fileURLToPath(import.meta.url))}`
const parseAcl = (text: string) => (createRequire(import.meta.url)(AUTH_MODULE) as typeof import('../registry/auth.ts')).parseAcl(text)

/** REGISTRY_ACL_FILE, checked now so that a broken file stops the start with a clear message. */
function aclFile(env: Env): string | undefined {
  const path = text(env, 'REGISTRY_ACL_FILE', '')
  if (path === '') return undefined
  try {
    parseAcl(readFileSync(path, 'utf8'))
  } catch (error) {
    throw new ConfigError('REGISTRY_ACL_FILE', path, `a readable JSON file {"tokens":[{"name","sha256","services"}]}: ${error instanceof Error ? error.message : String(error)}`)
  }
  return path
}

export function loadRegistryConfig(env: Env): RegistryConfig {
  const ttlSeconds = seconds(env, 'REGISTRY_TTL_SECONDS', DEFAULTS.registryTtlSeconds, { min: 0.1, max: 86_400 })
  const readToken = secret(env, 'REGISTRY_READ_TOKEN', readSecretFile)
  return {
    ...common(env, 'registry'),
    ttlSeconds,
    // Long enough for every instance to heartbeat (and so re-register) once: half the TTL.
    warmupSeconds: seconds(env, 'REGISTRY_WARMUP_SECONDS', ttlSeconds / 2, { min: 0, max: 86_400 }),
    maxInstances: integer(env, 'REGISTRY_MAX_INSTANCES', DEFAULTS.maxInstances, { min: 1, max: 1_000_000 }),
    maxInstancesPerService: integer(env, 'REGISTRY_MAX_INSTANCES_PER_SERVICE', DEFAULTS.maxInstancesPerService, { min: 1, max: 1_000_000 }),
    maxWatchers: integer(env, 'REGISTRY_MAX_WATCHERS', DEFAULTS.maxWatchers, { min: 1, max: 1_000_000 }),
    writeRateLimitPerMinute: integer(env, 'REGISTRY_WRITE_RATE_LIMIT', DEFAULTS.writeRateLimitPerMinute, { min: 0, max: 10_000_000 }),
    adminToken: secret(env, 'REGISTRY_TOKEN', readSecretFile),
    readToken,
    aclFile: aclFile(env),
    healthCheckIntervalSeconds: seconds(env, 'REGISTRY_HEALTH_CHECK_INTERVAL_SECONDS', DEFAULTS.healthCheckIntervalSeconds, { min: 0.05, max: 3600 }),
    healthCheckTimeoutSeconds: seconds(env, 'REGISTRY_HEALTH_CHECK_TIMEOUT_SECONDS', DEFAULTS.healthCheckTimeoutSeconds, { min: 0.05, max: 60 }),
    healthCheckFailures: integer(env, 'REGISTRY_HEALTH_CHECK_FAILURES', DEFAULTS.healthCheckFailures, { min: 1, max: 100 }),
    healthCheckConcurrency: integer(env, 'REGISTRY_HEALTH_CHECK_CONCURRENCY', DEFAULTS.healthCheckConcurrency, { min: 1, max: 1000 }),
    healthCheckAllowedHosts: hostnameList(env, 'REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS'),
    store: storeChoice(env),
    // DNS carries no token: where reads need one, it is off unless asked for by its port.
    dnsPort: port(env, 'REGISTRY_DNS_PORT', readToken === undefined ? DEFAULTS.dnsPort : 0),
    dnsDomain: dnsDomain(env),
  }
}

/** REGISTRY_DNS_DOMAIN: one or more DNS labels, such as `consul` or `registry.internal`. */
function dnsDomain(env: Env): string {
  const value = text(env, 'REGISTRY_DNS_DOMAIN', DEFAULTS.dnsDomain).toLowerCase().replace(/\.$/, '')
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(value) || value.length > 200) {
    throw new ConfigError('REGISTRY_DNS_DOMAIN', value, 'a DNS domain such as consul or registry.internal')
  }
  return value
}

/** REGISTRY_STORE, and for etcd ETCD_ENDPOINTS and ETCD_PREFIX. */
function storeChoice(env: Env): StoreChoice {
  const kind = oneOf(env, 'REGISTRY_STORE', 'memory', ['memory', 'etcd'] as const)
  if (kind === 'memory') return { kind }
  const prefix = text(env, 'ETCD_PREFIX', DEFAULTS.etcdPrefix)
  // Keys are built from it: a plain path, so that one registry's keys never overlap another's.
  if (!/^\/[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(prefix)) {
    throw new ConfigError('ETCD_PREFIX', prefix, 'a key prefix such as /microservices-advanced: "/"-separated letters, digits, ".", "_", "-", no trailing "/"')
  }
  return { kind, endpoints: httpUrlList(env, 'ETCD_ENDPOINTS', DEFAULTS.etcdEndpoints), prefix }
}

export function loadServiceConfig(env: Env, role: 'product' | 'order' | 'gateway'): ServiceConfig {
  return {
    ...common(env, role),
    registryUrls: httpUrlList(env, 'REGISTRY_URL', DEFAULTS.registryUrl),
    registryToken: secret(env, 'REGISTRY_TOKEN', readSecretFile),
    serviceUrl: optionalHttpUrl(env, 'SERVICE_URL'),
    heartbeatIntervalSeconds: seconds(env, 'HEARTBEAT_INTERVAL_SECONDS', DEFAULTS.heartbeatIntervalSeconds, { min: 0.05, max: 3600 }),
    dataDir: text(env, 'DATA_DIR', DEFAULTS.dataDir),
    databaseUrl: databaseUrl(env, 'DATABASE_URL', readSecretFile),
    databaseQueryTimeoutSeconds: seconds(env, 'DATABASE_QUERY_TIMEOUT_SECONDS', DEFAULTS.databaseQueryTimeoutSeconds, { min: 0.1, max: 3600 }),
    upstreamTimeoutSeconds: seconds(env, 'UPSTREAM_TIMEOUT_SECONDS', DEFAULTS.upstreamTimeoutSeconds, { min: 0.05, max: 300 }),
    upstreamConnectTimeoutSeconds: seconds(env, 'UPSTREAM_CONNECT_TIMEOUT_SECONDS', DEFAULTS.upstreamConnectTimeoutSeconds, { min: 0.05, max: 60 }),
    lbStrategy: oneOf(env, 'LB_STRATEGY', DEFAULTS.lbStrategy, LB_STRATEGIES),
    breakerFailures: integer(env, 'BREAKER_FAILURES', DEFAULTS.breakerFailures, { min: 1, max: 1000 }),
    breakerHalfOpenSeconds: seconds(env, 'BREAKER_HALF_OPEN_SECONDS', DEFAULTS.breakerHalfOpenSeconds, { min: 0.05, max: 3600 }),
    retryBudgetPercent: integer(env, 'RETRY_BUDGET_PERCENT', DEFAULTS.retryBudgetPercent, { min: 0, max: 100 }),
    drainSeconds: seconds(env, 'DRAIN_SECONDS', DEFAULTS.drainSeconds, { min: 0, max: 300 }),
  }
}

export function loadGatewayConfig(env: Env): GatewayConfig {
  const text = env.GATEWAY_ROUTES?.trim() || DEFAULT_ROUTES
  const routes = parseRoutes(text)
  if (!routes) throw new ConfigError('GATEWAY_ROUTES', text, 'comma-separated /prefix=service pairs with distinct prefixes, e.g. /products=product,/orders=order')
  return { ...loadServiceConfig(env, 'gateway'), routes, auth: gatewayAuth(env) }
}

/**
 * GATEWAY_JWT_SECRET (or _FILE; HS256, at least 32 bytes) or GATEWAY_JWKS_URL, never both, plus the
 * optional GATEWAY_JWT_ISSUER and GATEWAY_JWT_AUDIENCE. None set: no authentication. The secret
 * never appears in an error.
 */
function gatewayAuth(env: Env): GatewayAuthOptions | undefined {
  const { value: secretValue, variable: secretVariable, file } = fromEnvOrFile(env, 'GATEWAY_JWT_SECRET', readSecretFile, 'the secret')
  const jwksUrl = text(env, 'GATEWAY_JWKS_URL', '')
  const issuer = text(env, 'GATEWAY_JWT_ISSUER', '')
  const audience = text(env, 'GATEWAY_JWT_AUDIENCE', '')
  if (secretValue !== undefined && jwksUrl !== '') {
    throw new ConfigError('GATEWAY_JWKS_URL', jwksUrl, `unset when ${secretVariable} is set: tokens are checked with a shared secret or with a JWKS, not both`)
  }
  const extras = { issuer: issuer === '' ? undefined : issuer, audience: audience === '' ? undefined : audience }
  if (secretValue !== undefined) {
    const bytes = Buffer.byteLength(secretValue, 'utf8')
    if (bytes < 32 || bytes > 4096) {
      throw new ConfigError(secretVariable, file ?? '<redacted>', 'an HS256 secret of 32 to 4096 bytes (e.g. openssl rand -hex 32)')
    }
    return { keys: { kind: 'secret', secret: secretValue }, ...extras }
  }
  if (jwksUrl !== '') {
    let url: URL | undefined
    try {
      url = new URL(jwksUrl)
    } catch {
      url = undefined
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password || url.hash) {
      // A URL with credentials is not repeated in the message.
      const shown = url && (url.username || url.password) ? `${url.protocol}//…` : jwksUrl
      throw new ConfigError('GATEWAY_JWKS_URL', shown, 'an absolute http:// or https:// URL of a JSON Web Key Set, without credentials or fragment')
    }
    return { keys: { kind: 'jwks', url: url.href }, ...extras }
  }
  if (issuer !== '') throw new ConfigError('GATEWAY_JWT_ISSUER', issuer, 'set only together with GATEWAY_JWT_SECRET, GATEWAY_JWT_SECRET_FILE or GATEWAY_JWKS_URL')
  if (audience !== '') throw new ConfigError('GATEWAY_JWT_AUDIENCE', audience, 'set only together with GATEWAY_JWT_SECRET, GATEWAY_JWT_SECRET_FILE or GATEWAY_JWKS_URL')
  return undefined
}

export function loadAllConfig(env: Env): AllConfig {
  const config: AllConfig = {
    host: host(env, 'HOST', DEFAULTS.host),
    logLevel: oneOf(env, 'LOG_LEVEL', DEFAULTS.logLevel, LOG_LEVELS),
    logFormat: logFormat(env),
    registryPort: port(env, ALL_PORT_VARIABLES.registry, DEFAULTS.allPorts.registry),
    productPorts: ports(env, ALL_PORT_VARIABLES.product, [...DEFAULTS.allPorts.product]),
    orderPorts: ports(env, ALL_PORT_VARIABLES.order, [...DEFAULTS.allPorts.order]),
    gatewayPort: port(env, ALL_PORT_VARIABLES.gateway, DEFAULTS.allPorts.gateway),
    registryDnsPort: loadRegistryConfig(env).dnsPort,
  }
  if (config.registryPort === 0) throw new ConfigError(ALL_PORT_VARIABLES.registry, '0', 'a TCP port from 1 to 65535: the services are told where the registry is')
  // Two processes on one port: the second could never start.
  const taken = new Map<number, string>()
  const claims: Array<[string, number[]]> = [
    [ALL_PORT_VARIABLES.registry, [config.registryPort]],
    [ALL_PORT_VARIABLES.product, config.productPorts],
    [ALL_PORT_VARIABLES.order, config.orderPorts],
    [ALL_PORT_VARIABLES.gateway, [config.gatewayPort]],
    // UDP and TCP: it shares no port with the HTTP servers either.
    [ALL_PORT_VARIABLES.dns, [config.registryDnsPort]],
  ]
  for (const [variable, values] of claims) {
    for (const value of values) {
      const other = value === 0 ? undefined : taken.get(value)
      if (other !== undefined) throw new ConfigError(variable, values.join(','), `ports that ${other} does not also name (${value}: each process of npm start needs its own)`)
      taken.set(value, variable)
    }
  }
  return config
}
