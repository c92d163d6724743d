import type { RoleRuntime } from '../../runtime/role.ts'
import { serviceDatabase, type DatabaseOptions } from '../../runtime/database.ts'
import { buildService, type Service, type ServiceOptions } from '../../runtime/service.ts'
import { productMigrations, ProductRepository, type ProductDatabase } from './repository.ts'
import { registerProductRoutes } from './routes.ts'

export type ProductServiceOptions = ServiceOptions & DatabaseOptions

/** The product service, built: its database reached and migrated, its routes ready for `inject()`. */
export async function buildProductService(options: ProductServiceOptions, runtime: RoleRuntime): Promise<Service> {
  const { logger, telemetry } = runtime
  const { database, ...resources } = await serviceDatabase<ProductDatabase>('product', productMigrations, { ...options, logger, tracer: telemetry.tracer })
  return buildService({
    name: 'product',
    description: 'Products: create, read, list.',
    options,
    ...runtime,
    setup: ({ app }) => {
      registerProductRoutes(app, new ProductRepository(database.db))
      return resources
    },
  })
}
