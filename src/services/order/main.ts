import type { RoleRuntime } from '../../runtime/role.ts'
import { serviceDatabase, type DatabaseOptions } from '../../runtime/database.ts'
import { buildService, type Service, type ServiceOptions } from '../../runtime/service.ts'
import { upstreamClient, type UpstreamOptions } from '../../runtime/upstream.ts'
import { ProductClient } from './product-client.ts'
import { orderMigrations, OrderRepository, type OrderDatabase } from './repository.ts'
import { registerOrderRoutes } from './routes.ts'

export type OrderServiceOptions = ServiceOptions & DatabaseOptions & UpstreamOptions

/** The order service, built: its database reached and migrated, its routes ready for `inject()`. */
export async function buildOrderService(options: OrderServiceOptions, runtime: RoleRuntime): Promise<Service> {
  const { logger, telemetry } = runtime
  const { database, closers, ...resources } = await serviceDatabase<OrderDatabase>('order', orderMigrations, { ...options, logger, tracer: telemetry.tracer })
  return buildService({
    name: 'order',
    description: 'Orders priced from the product service.',
    options,
    ...runtime,
    setup: ({ app, registryClient, metrics }) => {
      const upstream = upstreamClient(options, { registryClient, logger, metrics })
      registerOrderRoutes(app, new OrderRepository(database.db), new ProductClient(upstream.client))
      return {
        ...resources,
        details: upstream.parts.details,
        closers: [...upstream.parts.closers, ...closers],
      }
    },
  })
}
