import type { GatewayConfig } from '../config/index.ts'
import type { Logger } from '../platform/logger.ts'
import { createService, type RunningService } from '../platform/service.ts'
import { upstreamClient } from '../platform/upstream.ts'
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
      const upstream = upstreamClient(config, { registryClient, logger, metrics, telemetry })
      await registerGatewayRoutes(app, { routes: config.routes, client: upstream.client, timeoutMs: config.upstreamTimeoutSeconds * 1000, tracer: telemetry.tracer })
      logger.info({ event: 'routes', routes: config.routes }, 'gateway routing table')
      return { openapi: combineOpenApi(config.routes, upstream.client), ...upstream.parts }
    },
  })
}
