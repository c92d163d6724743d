import type { ServiceConfig } from '../../config/index.ts'
import { migrate, openDatabase } from '../../db/database.ts'
import type { Logger } from '../../platform/logger.ts'
import type { Telemetry } from '../../platform/telemetry.ts'
import { createService, type RunningService } from '../../platform/service.ts'
import { productMigrations, ProductRepository, type ProductDatabase } from './repository.ts'
import { registerProductRoutes } from './routes.ts'
import { connectWithRetry } from '../../db/connect.ts'

export async function startProductService(config: ServiceConfig, logger: Logger, telemetry: Telemetry): Promise<RunningService> {
  const database = openDatabase<ProductDatabase>({ name: 'product', dataDir: config.dataDir, databaseUrl: config.databaseUrl, tracer: telemetry.tracer })
  await connectWithRetry(database, logger, () => migrate(database, 'product', productMigrations))
  return createService({
    name: 'product',
    description: 'Products: create, read, list.',
    config,
    logger,
    telemetry,
    setup: ({ app }) => {
      registerProductRoutes(app, new ProductRepository(database.db))
      return {
        checks: { database: async () => (await database.ping(), true) },
        closers: [{ name: 'close database', run: () => database.close() }],
      }
    },
  })
}
