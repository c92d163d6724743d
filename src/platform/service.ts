import type { ServiceConfig } from '../config/index.ts'
import { RegistryClient } from '../discovery/registry-client.ts'
import { Registration } from '../discovery/registration.ts'
import { instanceIdFor } from '../registry/memory-store.ts'
import { Metrics } from './metrics.ts'
import type { Telemetry } from './telemetry.ts'
import { advertisedUrl } from './address.ts'
import { buildApp, type App } from './app.ts'
import { registerHealthRoutes, type ReadinessCheck } from './health.ts'
import type { Logger } from './logger.ts'
import { handleSignals, type ShutdownStep } from './shutdown.ts'

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export interface ServiceContext {
  app: App
  logger: Logger
  registryClient: RegistryClient
  metrics: Metrics
  telemetry: Telemetry
}

export interface ServiceDefinition {
  name: string
  /** One line for the OpenAPI document. */
  description: string
  config: ServiceConfig
  logger: Logger
  telemetry: Telemetry
  /** Adds the service's routes; may return readiness checks and things to close at shutdown. */
  setup: (context: ServiceContext) => Promise<ServiceParts> | ServiceParts
}

export interface ServiceParts {
  /** Builds the served OpenAPI document from this service's own (the gateway merges others'). */
  openapi?: (own: Record<string, unknown>) => Promise<Record<string, unknown>>
  checks?: Record<string, ReadinessCheck>
  details?: () => Record<string, unknown>
  /** Closed after the server has drained, in order. */
  closers?: ShutdownStep[]
}

export interface RunningService {
  app: App
  url: string
  registration: Registration
  shutdown: (reason: string) => Promise<void>
}

/**
 * Everything a service shares: problem+json errors, health routes, registration with heartbeats,
 * and graceful shutdown (deregister first, then stop accepting, drain in-flight requests, close
 * resources, exit 0). A new service is its routes plus `createService`.
 */
export async function createService(definition: ServiceDefinition): Promise<RunningService> {
  const { config, logger, name, telemetry } = definition
  const metrics = new Metrics(name)
  let parts: ServiceParts = {}
  let draining = false
  const app = buildApp({
    logger,
    metrics,
    telemetry,
    draining: () => draining,
    openapi: {
      title: `${name} service`,
      description: definition.description,
      combine: async (own) => (parts.openapi ? parts.openapi(own) : own),
    },
  })
  const registryClient = new RegistryClient({ urls: config.registryUrls, tracer: telemetry.tracer })
  let registration: Registration | undefined
  // Routes go in a plugin registered after the OpenAPI one, which documents them.
  await app.register(async (scoped) => {
    const routes = scoped as unknown as App
    parts = await definition.setup({ app: routes, logger, registryClient, metrics, telemetry })
    registerHealthRoutes(routes, {
      checks: {
        ...parts.checks,
        // Ready once the registry has accepted us; a later registry outage does not make us unready.
        registry: () => registration?.hasRegistered === true || 'not registered with the registry yet',
      },
      isDraining: () => draining,
      ...(parts.details ? { details: parts.details } : {}),
    })
  })

  await app.listen({ host: config.host, port: config.port })
  const address = app.server.address()
  const port = typeof address === 'object' && address ? address.port : config.port
  const url = config.serviceUrl ?? advertisedUrl(config.host, port)
  const instanceId = instanceIdFor(name, url)
  // Fastify's own logger is a child made before the id was known: bind it there too.
  logger.setBindings({ instance_id: instanceId })
  app.log.setBindings({ instance_id: instanceId })
  await telemetry.start({ serviceName: name, instanceId, logger })

  registration = new Registration({
    client: registryClient,
    serviceName: name,
    url,
    healthUrl: `${url}/health/ready`,
    status: () => (draining ? 'draining' : 'up'),
    heartbeatIntervalMs: config.heartbeatIntervalSeconds * 1000,
    logger,
  })
  registration.start()
  logger.info({ event: 'listening', port, url, registry: config.registryUrls }, `${name} listening on ${config.host}:${port}, advertised as ${url}`)

  const { trigger } = handleSignals({
    logger,
    timeoutMs: config.shutdownTimeoutSeconds * 1000,
    steps: () => [
      // Leave discovery first: the registry tells every watcher at once, so callers stop choosing
      // this instance. Keep serving a moment for requests already on their way, then close.
      { name: 'deregister', run: () => { draining = true; return registration?.stop() } },
      { name: 'let watchers catch up', run: () => delay(config.drainSeconds * 1000) },
      { name: 'drain server', run: () => app.close() },
      ...(parts.closers ?? []),
      { name: 'close registry client', run: () => registryClient.close() },
      { name: 'flush traces', run: () => telemetry.shutdown() },
    ],
  })
  // Under `npm start` (role all) the supervisor is our parent: if it dies, we go too.
  if (process.send) process.on('disconnect', () => void trigger('supervisor exited'))

  return { app, url, registration, shutdown: trigger }
}
