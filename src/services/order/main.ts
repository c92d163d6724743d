import type { ServiceConfig } from '../../config/index.ts'
import { connectWithRetry } from '../../db/connect.ts'
import { migrate, openDatabase } from '../../db/database.ts'
import type { Logger } from '../../platform/logger.ts'
import type { Telemetry } from '../../platform/telemetry.ts'
import { createService, type RunningService } from '../../platform/service.ts'
import { upstreamClient } from '../../platform/upstream.ts'
import { ProductClient } from './product-client.ts'
import { orderMigrations, OrderRepository, type OrderDatabase } from './repository.ts'
import { registerOrderRoutes } from './routes.ts'

export async function startOrderService(config: ServiceConfig, logger: Logger, telemetry: Telemetry): Promise<RunningService> {
  const database = openDatabase<OrderDatabase>({ name: 'order', dataDir: config.dataDir, databaseUrl: config.databaseUrl, tracer: telemetry.tracer })
  await connectWithRetry(database, logger, () => migrate(database, 'order', orderMigrations))
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
        checks: { database: async () => (await database.ping(), true) },
        details: upstream.parts.details,
        closers: [...upstream.parts.closers, { name: 'close database', run: () => database.close() }],
      }
    },
  })
}
