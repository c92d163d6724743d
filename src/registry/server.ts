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
import { registerDashboard } from './dashboard/routes.ts'
import { effectiveStatus, type InstanceRecord, type RegistryStore } from './store.ts'

export interface RegistryAppOptions {
  logger: Logger
  ttlMs: number
  /** After start, clients keep their previous view while instances re-register; default TTL/2. */
  warmupMs?: number
  maxInstances?: number
  clock?: Clock
  store?: RegistryStore
  metrics?: Metrics
  /** Traces requests when enabled; a no-op by default. */
  telemetry?: Telemetry
}

export interface RegistryApp {
  app: App
  store: RegistryStore
  metrics: Metrics
  hub: WatchHub
  epoch: string
  /** Evicts expired instances once and logs each; the sweeper calls this on an interval. */
  sweep: () => void
}

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
  }
}

export function buildRegistryApp(options: RegistryAppOptions): RegistryApp & { counters: ReturnType<typeof registryMetrics> } {
  const { logger } = options
  const store = options.store ?? new MemoryStore({ ttlMs: options.ttlMs, clock: options.clock, maxInstances: options.maxInstances })
  const metrics = options.metrics ?? new Metrics('registry')
  const clock = options.clock ?? Date.now
  const hub = new WatchHub(store, (serviceName, streams) => {
    const event = changeEvent(store.members(serviceName))
    for (const stream of streams) if (stream.service === undefined || stream.service === serviceName) stream.response.write(event)
  })
  const counters = registryMetrics(metrics, store, hub)
  const epoch = randomBytes(8).toString('hex')
  const warmupUntil = clock() + (options.warmupMs ?? options.ttlMs / 2)
  const warmupRemainingMs = () => Math.max(0, warmupUntil - clock())
  const responses = new DiscoveryResponses()
  let draining = false
  const telemetry = options.telemetry ?? noopTelemetry
  const app = buildApp({
    logger,
    metrics,
    telemetry,
    openapi: { title: 'Service registry', description: 'Register, discover, heartbeat, watch.' },
    // Every instance heartbeats every few seconds: those request lines are debug. A reported
    // status other than up, and every registration, deregistration and eviction, are info.
    quietRoutes: new Set([...QUIET_ROUTES, '/heartbeat']),
    // Answered before Fastify while no hook they skip applies; traced, for instance, the routes
    // serve every request rather than some going untraced (see fast-path.ts).
    fastPath: registryFastPath(
      discoverFastPath({ store, responses, epoch, warmupRemainingMs, metrics, logger, closing: () => draining }),
      heartbeatFastPath({ store, metrics, logger, closing: () => draining, onHeartbeat: (instance) => events.heartbeat(instance) }),
    ),
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
        { event: created ? 'registered' : 're-registered', ...fields(instance), status: effectiveStatus(instance) },
        created ? 'instance registered' : 'instance re-registered',
      )
    },
    deregistered: (instance) => {
      counters.deregistrations.inc({ service: instance.serviceName })
      logger.info({ event: 'deregistered', ...fields(instance) }, 'instance deregistered')
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
  // Routes go in a plugin registered after the OpenAPI one, which documents them.
  void app.register(async (scoped) => {
    const routes = scoped as unknown as App
    registerRegistryRoutes(routes, { store, events, hub, epoch, warmupRemainingMs, responses })
    registerHealthRoutes(routes, { checks: {}, isDraining: () => draining })
  })
  registerDashboard(app, { ttlMs: options.ttlMs })

  const sweep = () => {
    for (const instance of store.evictExpired()) {
      counters.evictions.inc({ service: instance.serviceName })
      logger.info({ event: 'evicted', ...fields(instance), last_heartbeat: new Date(instance.lastHeartbeat).toISOString() }, 'instance evicted: no heartbeat within the TTL')
    }
  }
  return { app, store, metrics, hub, epoch, sweep, counters }
}

/** How often the sweeper runs: a quarter of the TTL, between 50 ms and 5 s. */
export function sweepIntervalMs(ttlMs: number): number {
  return Math.min(5000, Math.max(50, ttlMs / 4))
}

/** What the registry needs to know to run (the configuration has more). */
export interface RegistryOptions {
  host: string
  port: number
  ttlSeconds: number
  warmupSeconds: number
  maxInstances: number
  healthCheckIntervalSeconds: number
  healthCheckTimeoutSeconds: number
  healthCheckFailures: number
  shutdownTimeoutSeconds: number
}

/** The registry, built and ready for `inject()`; `start` listens, sweeps and health-checks. */
export interface Registry extends RegistryApp {
  start: () => Promise<{ url: string; port: number; shutdown: (reason: string) => Promise<void> }>
}

export function buildRegistry(options: RegistryOptions, runtime: RoleRuntime): Registry {
  const { logger, telemetry } = runtime
  const ttlMs = options.ttlSeconds * 1000
  const registry = buildRegistryApp({ logger, ttlMs, warmupMs: options.warmupSeconds * 1000, maxInstances: options.maxInstances, telemetry })
  const start = async () => {
    const checker = new HealthChecker({
      store: registry.store,
      logger,
      intervalMs: options.healthCheckIntervalSeconds * 1000,
      timeoutMs: options.healthCheckTimeoutSeconds * 1000,
      failuresToDown: options.healthCheckFailures,
      onResult: (outcome) => registry.counters.healthChecks.inc({ outcome }),
    })
    let sweeper: NodeJS.Timeout | undefined
    const running = await startRole({
      app: registry.app,
      logger,
      host: options.host,
      port: options.port,
      shutdownTimeoutMs: options.shutdownTimeoutSeconds * 1000,
      stop: runtime.stop,
      listening: async (port) => {
        // The epoch names this registry process to its clients (a response header): the same name
        // on its spans ties the two together.
        await telemetry.start({ serviceName: 'registry', instanceId: `registry-${registry.epoch}`, logger })
        sweeper = setInterval(registry.sweep, sweepIntervalMs(ttlMs))
        sweeper.unref()
        checker.start()
        logger.info(
          { event: 'listening', port, ttl_seconds: options.ttlSeconds, epoch: registry.epoch, warmup_seconds: options.warmupSeconds },
          `registry listening on ${options.host}:${port}`,
        )
      },
      shutdownSteps: () => [
        { name: 'close server', run: () => registry.app.close() },
        {
          name: 'stop sweeping and health checks',
          run: () => {
            clearInterval(sweeper)
            return checker.stop()
          },
        },
        { name: 'flush traces', run: () => telemetry.shutdown() },
      ],
    })
    return { url: `http://127.0.0.1:${running.port}`, port: running.port, shutdown: running.shutdown }
  }
  return { ...registry, start }
}
