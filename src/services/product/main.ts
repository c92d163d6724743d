import type { ServiceConfig } from '../../config/index.ts'
import { serviceDatabase } from '../../db/connect.ts'
import type { Logger } from '../../platform/logger.ts'
import { createService, type RunningService } from '../../platform/service.ts'
import type { Telemetry } from '../../platform/telemetry.ts'
import { productMigrations, ProductRepository, type ProductDatabase } from './repository.ts'
import { registerProductRoutes } from './routes.ts'

export async function startProductService(config: ServiceConfig, logger: Logger, telemetry: Telemetry): Promise<RunningService> {
  const { database, checks, closers } = await serviceDatabase<ProductDatabase>('product', productMigrations, { ...config, logger, tracer: telemetry.tracer })
  return createService({
    name: 'product',
    description: 'Products: create, read, list.',
    config,
    logger,
    telemetry,
    setup: ({ app }) => {
      registerProductRoutes(app, new ProductRepository(database.db))
      return { checks, closers }
    },
  })
}
