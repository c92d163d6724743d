import type { ServiceConfig } from '../../config/index.ts'
import { migrate, openDatabase } from '../../db/database.ts'
import type { Logger } from '../../platform/logger.ts'
import { createService, type RunningService } from '../../platform/service.ts'
import { productMigrations, ProductRepository, type ProductDatabase } from './repository.ts'
import { registerProductRoutes } from './routes.ts'
import { connectWithRetry } from '../../db/connect.ts'

export async function startProductService(config: ServiceConfig, logger: Logger): Promise<RunningService> {
  const database = openDatabase<ProductDatabase>({ name: 'product', dataDir: config.dataDir, databaseUrl: config.databaseUrl })
  await connectWithRetry(database, logger, () => migrate(database, 'product', productMigrations))
  return createService({
    name: 'product',
    config,
    logger,
    setup: ({ app }) => {
      registerProductRoutes(app, new ProductRepository(database.db))
      return {
        checks: { database: async () => (await database.ping(), true) },
        closers: [{ name: 'close database', run: () => database.close() }],
      }
    },
  })
}
