import type { GatewayConfig } from '../config/index.ts'
import { balancerFor } from '../discovery/balancer.ts'
import { Resolver } from '../discovery/resolver.ts'
import { ServiceClient } from '../discovery/service-client.ts'
import type { Logger } from '../platform/logger.ts'
import { breakerMetrics, upstreamObserver } from '../platform/metrics.ts'
import { createService, type RunningService } from '../platform/service.ts'
import type { Telemetry } from '../platform/telemetry.ts'
import { combineOpenApi } from './openapi.ts'
import { registerGatewayRoutes } from './routes.ts'

export async function startGateway(config: GatewayConfig, logger: Logger, telemetry: Telemetry): Promise<RunningService> {
  return createService({
    name: 'gateway',
    description: 'One entry point in front of the services.',
    config,
    logger,
    telemetry,
    setup: async ({ app, registryClient, metrics }) => {
      const resolver = new Resolver({ client: registryClient, logger })
      const client = new ServiceClient({
        resolver,
        logger,
        balancer: balancerFor(config.lbStrategy),
        timeoutMs: config.upstreamTimeoutSeconds * 1000,
        connectTimeoutMs: config.upstreamConnectTimeoutSeconds * 1000,
        breaker: { consecutiveFailures: config.breakerFailures, halfOpenAfterMs: config.breakerHalfOpenSeconds * 1000 },
        retryBudget: { ratio: config.retryBudgetPercent / 100, minPerSecond: 5 },
        tracer: telemetry.tracer,
        observer: upstreamObserver(metrics),
      })
      breakerMetrics(metrics, client)
      await registerGatewayRoutes(app, { routes: config.routes, client, timeoutMs: config.upstreamTimeoutSeconds * 1000, tracer: telemetry.tracer })
      logger.info({ event: 'routes', routes: config.routes }, 'gateway routing table')
      return {
        openapi: combineOpenApi(config.routes, client),
        details: () => ({ discovery: resolver.status() }),
        closers: [
          { name: 'stop watches', run: () => resolver.close() },
          { name: 'close upstream client', run: () => client.close() },
        ],
      }
    },
  })
}
