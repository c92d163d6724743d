import { setTimeout as sleep } from 'node:timers/promises'
import { type RegistryAuthError, RegistryClient } from '../discovery/registry-client.ts'
import { Registration } from '../discovery/registration.ts'
import { buildApp, type App } from '../http/app.ts'
import type { AppError, ProblemKind } from '../http/errors.ts'
import { registerHealthRoutes, type ReadinessCheck } from '../http/health.ts'
import { Metrics } from '../http/metrics.ts'
import type { Telemetry } from '../http/telemetry.ts'
import type { Logger } from '../lib/logger.ts'
import { instanceIdFor } from '../protocol/registry.ts'
import { advertisedUrl, localUrl } from './address.ts'
import { type RoleRuntime, type RunningRole, startRole } from './role.ts'
import type { ShutdownStep } from './shutdown.ts'

/** What the runtime needs to know to run a service (the configuration has more). */
export interface ServiceOptions {
  host: string
  port: number
  registryUrls: string[]
  /** REGISTRY_TOKEN (or _FILE): sent to the registry with every request. */
  registryToken: string | undefined
  /** Advertised URL; undefined means derive it from the bound address once listening. */
  serviceUrl: string | undefined
  heartbeatIntervalSeconds: number
  /** After deregistering, keep serving this long so that watchers and in-flight calls catch up. */
  drainSeconds: number
  shutdownTimeoutSeconds: number
}

export interface ServiceContext {
  app: App
  logger: Logger
  registryClient: RegistryClient
  metrics: Metrics
  telemetry: Telemetry
}

export interface ServiceDefinition extends RoleRuntime {
  name: string
  /** One line for the OpenAPI document. */
  description: string
  options: ServiceOptions
  /** Adds the service's routes; may return readiness checks and things to close at shutdown. */
  setup: (context: ServiceContext) => Promise<ServiceParts> | ServiceParts
}

export interface ServiceParts {
  /** Builds the served OpenAPI document from this service's own (the gateway merges others'). */
  openapi?: (own: Record<string, unknown>) => Promise<Record<string, unknown>>
  checks?: Record<string, ReadinessCheck>
  details?: () => Record<string, unknown>
  /** Errors of the service's resources that deserve their own answer (a database outage: 503). */
  classifyError?: (error: Error) => AppError | undefined
  /** What `classifyError` may answer, documented on every route `setup` added. */
  problems?: readonly ProblemKind[]
  /** Closed after the server has drained, in order. */
  closers?: ShutdownStep[]
}

/** A service built and ready for `inject()`, not yet listening or registered. */
export interface Service {
  app: App
  registryClient: RegistryClient
  metrics: Metrics
  /** Listens, registers (with heartbeats) and installs the shutdown path. */
  start: () => Promise<RunningService>
}

export interface RunningService {
  app: App
  url: string
  registration: Registration
  shutdown: (reason: string) => Promise<void>
}

/**
 * Everything a service shares: problem+json errors, health routes, metrics, tracing,
 * registration with heartbeats, and graceful shutdown (deregister first, then stop accepting,
 * drain in-flight requests, close resources, exit). A new service is its routes plus this.
 */
export async function buildService(definition: ServiceDefinition): Promise<Service> {
  const { options, logger, name, telemetry } = definition
  const metrics = new Metrics(name)
  let parts: ServiceParts = {}
  let draining = false
  let registration: Registration | undefined
  /** The routes `setup` added ("GET /products/:id"): those its resources' errors may answer. */
  const ownRoutes = new Set<string>()
  const app = buildApp({
    logger,
    metrics,
    telemetry,
    draining: () => draining,
    classifyError: (error) => parts.classifyError?.(error),
    openapi: {
      title: `${name} service`,
      description: definition.description,
      combine: async (own) => (parts.openapi ? parts.openapi(own) : own),
      problems: (route) => (ownRoutes.has(`${route.method} ${route.url}`) ? (parts.problems ?? []) : []),
    },
  })
  const registryClient = new RegistryClient({ urls: options.registryUrls, token: options.registryToken })
  // Routes go in a plugin registered after the OpenAPI one, which documents them.
  await app.register(async (scoped) => {
    const routes = scoped as unknown as App
    let inSetup = true
    scoped.addHook('onRoute', (route) => {
      if (inSetup) for (const method of [route.method].flat()) ownRoutes.add(`${method} ${route.url}`)
    })
    parts = await definition.setup({ app: routes, logger, registryClient, metrics, telemetry })
    inSetup = false
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

  const start = async (): Promise<RunningService> => {
    let url = ''
    // A token the registry refuses is a configuration mistake that retrying cannot fix: say which
    // variable to set, and exit 1 (an orchestrator shows the crash loop; a log would go unread).
    const refused = (error: RegistryAuthError) => {
      const fix =
        error.code === 'PROTECTED_MODE'
          ? 'the registry has no token configured and accepts writes from its own machine only: set REGISTRY_TOKEN (or REGISTRY_TOKEN_FILE) on the registry and on this service'
          : `set REGISTRY_TOKEN (or REGISTRY_TOKEN_FILE) to a token the registry accepts for ${name}${options.registryToken === undefined ? ' (none is set)' : ''}`
      logger.fatal(
        { event: 'registry_refused', registry: error.registry, status: error.status, code: error.code, err_message: error.message },
        `the registry refused to register ${name}: ${fix}`,
      )
      void started.promise.then((running) => running.shutdown('registry refused the token', 1))
    }
    const started = Promise.withResolvers<RunningRole>()
    const running = await startRole({
      app,
      logger,
      host: options.host,
      port: options.port,
      shutdownTimeoutMs: options.shutdownTimeoutSeconds * 1000,
      stop: definition.stop,
      listening: async (port) => {
        url = options.serviceUrl ?? advertisedUrl(options.host, port)
        const instanceId = instanceIdFor(name, url)
        // Every line says which instance wrote it. Not `instance_id`: lines about another instance
        // (an upstream's breaker, a registration) carry that one, and a key twice in one JSON line
        // reads as the last (jq). The name is the trace resource's (service.instance.id). Fastify's
        // own logger is a child made before the id was known: bind it there too.
        logger.setBindings({ service_instance_id: instanceId })
        app.log.setBindings({ service_instance_id: instanceId })
        await telemetry.start({ serviceName: name, instanceId, logger })
        registration = new Registration({
          client: registryClient,
          serviceName: name,
          url,
          healthUrl: `${url}/health/ready`,
          status: () => (draining ? 'draining' : 'up'),
          heartbeatIntervalMs: options.heartbeatIntervalSeconds * 1000,
          logger,
          onRefused: refused,
        })
        registration.start()
        const local = localUrl(options.host, port)
        logger.info(
          { event: 'listening', port, host: options.host, url, registry: options.registryUrls },
          `${name} listening on ${local}${url === local ? '' : ` (advertised as ${url})`}`,
        )
      },
      shutdownSteps: () => [
        // Leave discovery first: the registry tells every watcher at once, so callers stop choosing
        // this instance. Keep serving a moment for requests already on their way, then close.
        {
          name: 'deregister',
          run: () => {
            draining = true
            return registration?.stop()
          },
        },
        { name: 'let watchers catch up', run: () => sleep(options.drainSeconds * 1000) },
        { name: 'drain server', run: () => app.close() },
        ...(parts.closers ?? []),
        { name: 'close registry client', run: () => registryClient.close() },
        { name: 'flush traces', run: () => telemetry.shutdown() },
      ],
    })
    started.resolve(running)
    return { app, url, registration: registration!, shutdown: running.shutdown }
  }
  return { app, registryClient, metrics, start }
}
