import { buildApp, QUIET_ROUTES, type App } from '../http/app.ts'
import { registerHealthRoutes } from '../http/health.ts'
import type { Logger } from '../lib/logger.ts'
import { Metrics } from '../http/metrics.ts'
import { noopTelemetry, type Telemetry } from '../http/telemetry.ts'
import { HealthChecker } from './health-checker.ts'
import { MemoryStore, type Clock } from './memory-store.ts'
import { randomBytes } from 'node:crypto'
import { registerRegistryRoutes, type RegistryEvents } from './routes.ts'
import { changeEvent } from './views.ts'
import { DiscoveryResponses, discoverFastPath, heartbeatFastPath, registryFastPath } from './fast-path.ts'
import { WatchHub } from './watch.ts'
import { type RoleRuntime, startRole } from '../runtime/role.ts'
import { localUrl } from '../runtime/address.ts'
import { registerDashboard } from './dashboard/routes.ts'
import { effectiveStatus, type InstanceRecord, type RegistryStore, type SweepResult } from './store.ts'
import rateLimit from '@fastify/rate-limit'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { RegistryAuth, refusalError } from './auth.ts'
import { registryError } from './errors.ts'
import type { ProblemKind } from '../http/errors.ts'
import { registerPrometheusSd } from './prometheus-sd.ts'
import { registerConsulApi } from './consul.ts'
import type { DnsServer } from './dns.ts'

export interface RegistryAppOptions {
  logger: Logger
  ttlMs: number
  /** After start, clients keep their previous view while instances re-register; default TTL/2. */
  warmupMs?: number
  maxInstances?: number
  maxInstancesPerService?: number
  /** Blocking queries and event streams at once (REGISTRY_MAX_WATCHERS); default 1024. */
  maxWatchers?: number
  /** Unsent bytes an event stream may hold before it is dropped as a slow consumer; default 1 MiB. */
  maxStreamBufferBytes?: number
  /** Who may read and write; by default protected mode (writes from loopback only, reads open). */
  auth?: RegistryAuth
  /** Writes per minute per client address (0: no limit); default 1200. */
  writeRateLimitPerMinute?: number
  /** The most bytes an instance's metadata may take as JSON; default 4096. */
  maxMetadataBytes?: number
  /** Hosts a health URL may name besides the instance's own (REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS). */
  healthCheckAllowedHosts?: readonly string[]
  clock?: Clock
  store?: RegistryStore
  metrics?: Metrics
  /** Traces requests when enabled; a no-op by default. */
  telemetry?: Telemetry
}

export interface RegistryApp {
  app: App
  auth: RegistryAuth
  store: RegistryStore
  metrics: Metrics
  hub: WatchHub
  epoch: string
  /** Evicts expired instances once and logs each; the sweeper calls this on an interval. */
  sweep: () => Promise<void>
  /**
   * Starts the warm-up over from now: called when the registry begins to listen, so that the time
   * it took to start (modules, a busy machine) does not eat into the instances' time to re-register.
   */
  restartWarmup: () => void
}

/** What REGISTRY_READ_TOKEN guards: the registry's data, not its health or documentation. */
const READ_ROUTES = new Set([
  '/discover/:service_name',
  '/events',
  '/services',
  '/metrics',
  '/sd/prometheus',
  '/v1/catalog/services',
  '/v1/catalog/service/:service',
  '/v1/health/service/:service',
])

const fields = (instance: InstanceRecord) => ({ service_name: instance.serviceName, instance_id: instance.id, url: instance.url })

/** Heartbeats are the registry's most frequent request: counted in plain numbers. */
function heartbeatCounts(metrics: Metrics) {
  const count = metrics.hotCounter('registry_heartbeats_total', 'Heartbeats, by whether the instance was known', ['outcome'])
  return { known: count({ outcome: 'ok' }), unknown: count({ outcome: 'unknown_instance' }) }
}

/** Registry metrics: instances by service and status, and counters of what happened. */
function registryMetrics(metrics: Metrics, store: RegistryStore, hub: WatchHub) {
  metrics.gauge('registry_watchers', 'Open watches: blocking queries and event streams', ['kind'], (gauge) => {
    gauge.set({ kind: 'blocking_query' }, hub.blockingQueries)
    gauge.set({ kind: 'event_stream' }, hub.streams)
  })
  const watchersDropped = metrics.counter('registry_watchers_dropped_total', 'Watchers the registry dropped, by reason', ['reason'])
  // Shown from the start, at 0, so that an alert can take its rate.
  watchersDropped.inc({ reason: 'slow_consumer' }, 0)
  metrics.gauge('registry_instances', 'Unexpired instances by service and status', ['service', 'status'], (gauge) => {
    gauge.reset()
    for (const service of store.services()) {
      for (const instance of service.instances) gauge.inc({ service: service.serviceName, status: effectiveStatus(instance) })
    }
  })
  return {
    registrations: metrics.counter('registry_registrations_total', 'Registrations, new and refreshed', ['service', 'kind']),
    deregistrations: metrics.counter('registry_deregistrations_total', 'Deregistrations', ['service']),
    heartbeats: heartbeatCounts(metrics),
    evictions: metrics.counter('registry_evictions_total', 'Instances evicted for missing heartbeats', ['service']),
    healthChecks: metrics.counter('registry_health_checks_total', 'Health check probes, by outcome', ['outcome']),
    watchersDropped,
  }
}

export function buildRegistryApp(options: RegistryAppOptions): RegistryApp & { counters: ReturnType<typeof registryMetrics> } {
  const { logger } = options
  const store =
    options.store ?? new MemoryStore({ ttlMs: options.ttlMs, clock: options.clock, maxInstances: options.maxInstances, maxInstancesPerService: options.maxInstancesPerService })
  const auth = options.auth ?? new RegistryAuth({ logger })
  const metrics = options.metrics ?? new Metrics('registry')
  const clock = options.clock ?? Date.now
  const hub = new WatchHub(store, {
    changeEvent: (serviceName) => changeEvent(store.members(serviceName)),
    maxWatchers: options.maxWatchers,
    maxStreamBufferBytes: options.maxStreamBufferBytes,
    onDropped: (stream, reason, bufferedBytes) => {
      counters.watchersDropped.inc({ reason })
      logger.warn(
        { event: 'watcher_dropped', reason, peer: stream.peer, service: stream.service, buffered_bytes: bufferedBytes },
        'event stream dropped: its client does not read what it is sent',
      )
    },
  })
  const counters = registryMetrics(metrics, store, hub)
  // A memory store's state is the process's: a new process is a new epoch. A shared store names
  // its own (the same on every replica), once it has loaded.
  const processEpoch = randomBytes(8).toString('hex')
  const epoch = () => store.epoch ?? processEpoch
  // On etcd the state outlives the process: nothing to wait for after a start.
  const warmupMs = store.kind === 'etcd' ? 0 : (options.warmupMs ?? options.ttlMs / 2)
  let warmupUntil = warmupMs === 0 ? 0 : clock() + warmupMs
  const warmupRemainingMs = () => Math.max(0, warmupUntil - clock())
  const responses = new DiscoveryResponses()
  let draining = false
  const telemetry = options.telemetry ?? noopTelemetry
  const app = buildApp({
    logger,
    metrics,
    telemetry,
    openapi: { title: 'Service registry', description: 'Register, discover, heartbeat, watch.', problems: registryProblems },
    // Every instance heartbeats every few seconds: those request lines are debug. A reported
    // status other than up, and every registration, deregistration and eviction, are info.
    quietRoutes: new Set([...QUIET_ROUTES, '/heartbeat']),
    // Answered before Fastify while no hook they skip applies; traced, for instance, the routes
    // serve every request rather than some going untraced (see fast-path.ts).
    fastPath: registryFastPath(
      discoverFastPath({ store, responses, epoch, warmupRemainingMs, metrics, logger, auth, closing: () => draining }),
      heartbeatFastPath({ store, metrics, logger, auth, closing: () => draining, onHeartbeat: (instance) => events.heartbeat(instance) }),
    ),
  })
  // With REGISTRY_READ_TOKEN, what the registry knows (and its metrics) is for token holders only.
  app.addHook('onRequest', function requireReadToken(request, reply, done) {
    if (!auth.readsNeedToken || !READ_ROUTES.has(request.routeOptions.url ?? '') || auth.mayRead(request.raw)) return done()
    done(refusalError(auth.readRefusal, (name, value) => reply.header(name, value)))
  })
  app.addHook('preClose', async () => {
    draining = true
    // Long polls and event streams would hold the server open: release them.
    hub.close()
  })

  const events: RegistryEvents = {
    registered: (instance, created) => {
      counters.registrations.inc({ service: instance.serviceName, kind: created ? 'new' : 'refresh' })
      logger.info(
        { event: created ? 'registered' : 're-registered', ...fields(instance), status: effectiveStatus(instance), owner: instance.owner },
        created ? 'instance registered' : 'instance re-registered',
      )
    },
    deregistered: (instance) => {
      counters.deregistrations.inc({ service: instance.serviceName })
      logger.info({ event: 'deregistered', ...fields(instance) }, 'instance deregistered')
      forgetIfGone(instance.serviceName)
    },
    heartbeat: (instance) => {
      if (!instance) return counters.heartbeats.unknown.inc()
      counters.heartbeats.known.inc()
      // Heartbeat request lines are debug; a status other than up is worth a line of its own.
      if (instance.reportedStatus !== 'up') {
        logger.info({ event: 'status_reported', ...fields(instance), status: instance.reportedStatus }, `instance reports ${instance.reportedStatus}`)
      }
    },
  }
  // A service that is gone leaves no label sets behind: names cannot pile up in /metrics either.
  const forgetIfGone = (service: string) => {
    if (store.members(service).instances.length > 0) return
    counters.registrations.remove({ service, kind: 'new' })
    counters.registrations.remove({ service, kind: 'refresh' })
    counters.deregistrations.remove({ service })
    counters.evictions.remove({ service })
  }
  const writesPerMinute = options.writeRateLimitPerMinute ?? 1200
  // Routes go in a plugin registered after the OpenAPI one, which documents them.
  void app.register(async (scoped) => {
    const routes = scoped as unknown as App
    await routes.register(rateLimit, { global: false })
    // Per client address, over a minute; a named hook, so the heartbeat fast path can honour it.
    const limiter = routes.rateLimit({
      max: writesPerMinute === 0 ? Number.MAX_SAFE_INTEGER : writesPerMinute,
      timeWindow: 60_000,
      errorResponseBuilder: (_request, context) => registryError('RATE_LIMITED', `At most ${context.max} writes a minute from one address; retry in ${context.after}`),
    })
    const limitWrites = async function limitWrites(request: FastifyRequest, reply: FastifyReply) {
      // A client already gone has no address (the limiter would throw on it) and gets no answer.
      if (request.raw.socket.remoteAddress === undefined) return
      if (writesPerMinute > 0) await (limiter as unknown as (request: FastifyRequest, reply: FastifyReply) => Promise<void>).call(routes, request, reply)
    }
    const writes = registerRegistryRoutes(routes, {
      store,
      events,
      hub,
      epoch,
      warmupRemainingMs,
      responses,
      auth,
      limitWrites,
      maxMetadataBytes: options.maxMetadataBytes ?? 4096,
      healthCheckAllowedHosts: options.healthCheckAllowedHosts ?? [],
    })
    registerPrometheusSd(routes, { store })
    registerConsulApi(routes, { store, hub, writes, auth, limitWrites })
    registerHealthRoutes(routes, {
      // Not ready until the store holds the registry (etcd: the first load); a stale cache still
      // answers discovery, so it stays ready, and says so in the details.
      checks: { store: () => store.status().ready || (store.status().detail ?? 'not loaded') },
      isDraining: () => draining,
      details: () => {
        const status = store.status()
        return { store: { kind: store.kind, stale: status.stale, ...(status.detail === undefined ? {} : { detail: status.detail }) } }
      },
    })
  })
  registerDashboard(app, { ttlMs: options.ttlMs })

  const sweep = async () => {
    let result: SweepResult
    try {
      result = await store.evictExpired()
    } catch (error) {
      return logger.warn({ event: 'sweep_failed', err: error }, 'could not sweep expired instances; trying again next time')
    }
    for (const instance of result.critical) {
      logger.warn(
        { event: 'check_critical', ...fields(instance), check_id: instance.consul?.checkId, last_pass: new Date(instance.lastHeartbeat).toISOString() },
        "Consul TTL check critical: no pass within the check's TTL",
      )
    }
    for (const instance of result.evicted) {
      counters.evictions.inc({ service: instance.serviceName })
      const last = new Date(instance.lastHeartbeat).toISOString()
      if (instance.consul === undefined) logger.info({ event: 'evicted', ...fields(instance), last_heartbeat: last }, 'instance evicted: no heartbeat within the TTL')
      else
        logger.info(
          { event: 'evicted', ...fields(instance), check_id: instance.consul.checkId, last_pass: last },
          'instance deregistered: its Consul check stayed critical for DeregisterCriticalServiceAfter',
        )
      forgetIfGone(instance.serviceName)
    }
  }
  return {
    app,
    store,
    metrics,
    hub,
    get epoch() {
      return epoch()
    },
    sweep,
    restartWarmup: () => {
      if (warmupMs > 0) warmupUntil = clock() + warmupMs
    },
    counters,
    auth,
  }
}

const kinds = (...codes: Array<Parameters<typeof registryError.kind>[0]>): ProblemKind[] => codes.map((code) => registryError.kind(code))
const WRITE_PROBLEMS = kinds('UNAUTHORIZED', 'PROTECTED_MODE', 'TOKEN_NOT_ALLOWED', 'NOT_OWNER', 'RATE_LIMITED', 'STORE_UNAVAILABLE')
const REGISTER_PROBLEMS = kinds('INSTANCE_ID_CONFLICT', 'REGISTRY_FULL', 'SERVICE_FULL', 'METADATA_TOO_LARGE', 'HEALTH_URL_HOST_NOT_ALLOWED')
/** Reads that need the read token when there is one, and a loaded store. */
const READS = new Set(['/discover/:service_name', '/events', '/services', '/sd/prometheus', '/v1/catalog/services', '/v1/catalog/service/:service', '/v1/health/service/:service'])
const BLOCKING = new Set(['/discover/:service_name', '/events', '/v1/catalog/services', '/v1/catalog/service/:service', '/v1/health/service/:service'])

/** The registry's own errors each route may answer, for its OpenAPI document (HTTP's are added by the app). */
function registryProblems(route: { method: string; url: string }): readonly ProblemKind[] {
  const { method, url } = route
  if (method === 'GET' || method === 'HEAD') {
    if (!READS.has(url)) return url === '/metrics' ? kinds('UNAUTHORIZED') : []
    return [...kinds('UNAUTHORIZED', 'STORE_UNAVAILABLE'), ...(BLOCKING.has(url) ? kinds('TOO_MANY_WATCHERS') : [])]
  }
  if (url === '/register') return [...WRITE_PROBLEMS, ...REGISTER_PROBLEMS]
  if (url === '/v1/agent/service/register') return [...WRITE_PROBLEMS, ...REGISTER_PROBLEMS, ...kinds('BAD_CONSUL_CHECK', 'BAD_CONSUL_ADDRESS', 'INSTANCE_NOT_FOUND')]
  if (url.startsWith('/v1/agent/check/')) return [...WRITE_PROBLEMS, ...kinds('INSTANCE_NOT_FOUND', 'BAD_CONSUL_CHECK')]
  return [...WRITE_PROBLEMS, ...kinds('INSTANCE_NOT_FOUND')]
}

/**
 * How often the sweeper runs: a quarter of the TTL, between 50 ms and 1 s (Consul TTL checks,
 * which have their own TTLs, turn critical within a second of lapsing).
 */
export function sweepIntervalMs(ttlMs: number): number {
  return Math.min(1000, Math.max(50, ttlMs / 4))
}

/** What the registry needs to know to run (the configuration has more). */
export interface RegistryOptions {
  host: string
  port: number
  ttlSeconds: number
  warmupSeconds: number
  maxInstances: number
  maxInstancesPerService: number
  /** Blocking queries and event streams at once (REGISTRY_MAX_WATCHERS). */
  maxWatchers: number
  /** Writes per minute per client address; 0: no limit. */
  writeRateLimitPerMinute: number
  /** REGISTRY_TOKEN: writes anything. None (and no ACL file): protected mode, writes from loopback only. */
  adminToken: string | undefined
  /** REGISTRY_READ_TOKEN: when set, reads need a token. */
  readToken: string | undefined
  /** REGISTRY_ACL_FILE: scoped tokens, reloaded on SIGHUP and when the file changes. */
  aclFile: string | undefined
  healthCheckIntervalSeconds: number
  healthCheckTimeoutSeconds: number
  healthCheckFailures: number
  /** REGISTRY_HEALTH_CHECK_CONCURRENCY: the most health probes in flight at once. */
  healthCheckConcurrency: number
  /** REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS: hosts a health URL may name besides its instance's own. */
  healthCheckAllowedHosts: string[]
  shutdownTimeoutSeconds: number
  /** REGISTRY_DNS_PORT (UDP and TCP; 0: no DNS server) and REGISTRY_DNS_DOMAIN. */
  dnsPort: number
  dnsDomain: string
  /** REGISTRY_STORE: memory (one process) or etcd (ETCD_ENDPOINTS, ETCD_PREFIX: any number of replicas). */
  store: StoreChoice
}

export type StoreChoice = { kind: 'memory' } | { kind: 'etcd'; endpoints: string[]; prefix: string }

/** The registry, built and ready for `inject()`; `start` listens, sweeps and health-checks. */
export interface Registry extends RegistryApp {
  start: () => Promise<{ url: string; port: number; shutdown: (reason: string) => Promise<void> }>
}

/** The store the options name; etcd's client is loaded only by a registry that uses it. */
async function openStore(options: RegistryOptions, logger: Logger): Promise<{ store: RegistryStore; start: () => Promise<void> } | undefined> {
  if (options.store.kind === 'memory') return undefined
  const { EtcdStore } = await import('./etcd-store.ts')
  const store = new EtcdStore({
    endpoints: options.store.endpoints,
    prefix: options.store.prefix,
    ttlMs: options.ttlSeconds * 1000,
    logger,
    maxInstances: options.maxInstances,
    maxInstancesPerService: options.maxInstancesPerService,
  })
  if (store.leaseSeconds !== options.ttlSeconds) {
    logger.warn(
      { event: 'ttl_rounded', ttl_seconds: options.ttlSeconds, lease_seconds: store.leaseSeconds },
      `etcd leases are whole seconds: instances expire ${store.leaseSeconds} s after their last heartbeat`,
    )
  }
  return { store, start: () => store.start() }
}

export async function buildRegistry(options: RegistryOptions, runtime: RoleRuntime): Promise<Registry> {
  const { logger, telemetry } = runtime
  const ttlMs = options.ttlSeconds * 1000
  const shared = await openStore(options, logger)
  const auth = new RegistryAuth({ adminToken: options.adminToken, readToken: options.readToken, aclFile: options.aclFile, logger })
  auth.loadSync()
  const registry = buildRegistryApp({
    logger,
    ttlMs,
    warmupMs: options.warmupSeconds * 1000,
    maxInstances: options.maxInstances,
    maxInstancesPerService: options.maxInstancesPerService,
    maxWatchers: options.maxWatchers,
    writeRateLimitPerMinute: options.writeRateLimitPerMinute,
    auth,
    telemetry,
    ...(shared ? { store: shared.store } : {}),
  })
  const start = async () => {
    const checker = new HealthChecker({
      store: registry.store,
      logger,
      intervalMs: options.healthCheckIntervalSeconds * 1000,
      timeoutMs: options.healthCheckTimeoutSeconds * 1000,
      failuresToDown: options.healthCheckFailures,
      concurrency: options.healthCheckConcurrency,
      allowedHosts: options.healthCheckAllowedHosts,
      onResult: (outcome) => registry.counters.healthChecks.inc({ outcome }),
    })
    let sweeper: NodeJS.Timeout | undefined
    let dns: DnsServer | undefined
    const running = await startRole({
      app: registry.app,
      logger,
      host: options.host,
      port: options.port,
      shutdownTimeoutMs: options.shutdownTimeoutSeconds * 1000,
      stop: runtime.stop,
      // Scoped tokens rotate without a restart: SIGHUP (or a change to the file) re-reads them.
      ...(options.aclFile === undefined ? {} : { onHangup: () => void auth.reload('SIGHUP') }),
      listening: async (port) => {
        // Clients are told the warm-up left from now, when they can first reach the registry.
        registry.restartWarmup()
        // The epoch names this registry process to its clients (a response header): the same name
        // on its spans ties the two together.
        await telemetry.start({ serviceName: 'registry', instanceId: `registry-${registry.epoch}`, logger })
        // Loads the registry from etcd in the background: until then, not ready (and it says why).
        void shared?.start()
        // The DNS interface (and its packet codec) is loaded only when it is on.
        if (options.dnsPort !== 0) {
          const { startDnsServer } = await import('./dns.ts')
          dns = await startDnsServer({ store: registry.store, logger, host: options.host, port: options.dnsPort, domain: options.dnsDomain })
        }
        sweeper = setInterval(() => void registry.sweep(), sweepIntervalMs(ttlMs))
        sweeper.unref()
        checker.start()
        auth.watch()
        logger.info(
          {
            event: 'listening',
            port,
            ttl_seconds: options.ttlSeconds,
            epoch: registry.epoch,
            warmup_seconds: shared ? 0 : options.warmupSeconds,
            store: options.store.kind,
            ...(options.store.kind === 'etcd' ? { etcd_endpoints: options.store.endpoints, etcd_prefix: options.store.prefix } : {}),
          },
          `registry listening on ${localUrl(options.host, port)}`,
        )
        logger.info(
          {
            event: 'auth',
            writes: auth.protectedMode ? 'loopback only (protected mode: no REGISTRY_TOKEN or REGISTRY_ACL_FILE)' : 'token required',
            reads: auth.readsNeedToken ? 'token required' : 'open',
            acl_file: options.aclFile,
          },
          auth.protectedMode ? 'no registry token configured: writes accepted from this machine only' : 'registry writes need a token',
        )
      },
      shutdownSteps: () => [
        { name: 'close server', run: () => registry.app.close() },
        {
          name: 'stop sweeping and health checks',
          run: () => {
            clearInterval(sweeper)
            auth.close()
            return checker.stop()
          },
        },
        { name: 'close the DNS server', run: async () => dns?.close() },
        { name: 'close the store', run: () => registry.store.close() },
        { name: 'flush traces', run: () => telemetry.shutdown() },
      ],
    })
    return { url: `http://127.0.0.1:${running.port}`, port: running.port, shutdown: running.shutdown }
  }
  return { ...registry, start }
}
