import type { ServiceConfig } from '../../config/index.ts'
import { serviceDatabase } from '../../db/connect.ts'
import type { Logger } from '../../platform/logger.ts'
import type { Telemetry } from '../../platform/telemetry.ts'
import { createService, type RunningService } from '../../platform/service.ts'
import { upstreamClient } from '../../platform/upstream.ts'
import { ProductClient } from './product-client.ts'
import { orderMigrations, OrderRepository, type OrderDatabase } from './repository.ts'
import { registerOrderRoutes } from './routes.ts'

export async function startOrderService(config: ServiceConfig, logger: Logger, telemetry: Telemetry): Promise<RunningService> {
  const { database, checks, closers } = await serviceDatabase<OrderDatabase>('order', orderMigrations, { ...config, logger, tracer: telemetry.tracer })
  return createService({
    name: 'order',
    description: 'Orders priced from the product service.',
    config,
    logger,
    telemetry,
    setup: ({ app, registryClient, metrics }) => {
      const upstream = upstreamClient(config, { registryClient, logger, metrics, telemetry })
      registerOrderRoutes(app, new OrderRepository(database.db), new ProductClient(upstream.client))
      return {
        checks,
        details: upstream.parts.details,
        closers: [...upstream.parts.closers, ...closers],
      }
    },
  })
}
