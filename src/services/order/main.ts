import type { ServiceConfig } from '../../config/index.ts'
import { connectWithRetry } from '../../db/connect.ts'
import { migrate, openDatabase } from '../../db/database.ts'
import { Resolver } from '../../discovery/resolver.ts'
import { ServiceClient } from '../../discovery/service-client.ts'
import type { Logger } from '../../platform/logger.ts'
import { breakerMetrics, upstreamObserver } from '../../platform/metrics.ts'
import { balancerFor } from '../../discovery/balancer.ts'
import type { Telemetry } from '../../platform/telemetry.ts'
import { createService, type RunningService } from '../../platform/service.ts'
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
      registerOrderRoutes(app, new OrderRepository(database.db), new ProductClient(client))
      return {
        checks: { database: async () => (await database.ping(), true) },
        details: () => ({ discovery: resolver.status() }),
        closers: [
          { name: 'stop watches', run: () => resolver.close() },
          { name: 'close product client', run: () => client.close() },
          { name: 'close database', run: () => database.close() },
        ],
      }
    },
  })
}
