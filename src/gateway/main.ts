import type { RoleRuntime } from '../runtime/role.ts'
import { buildService, type Service, type ServiceOptions } from '../runtime/service.ts'
import { upstreamClient, type UpstreamOptions } from '../runtime/upstream.ts'
import { combineOpenApi } from './openapi.ts'
import { registerGatewayRoutes } from './routes.ts'
import type { Route } from './routing.ts'

export type GatewayOptions = ServiceOptions & UpstreamOptions & { routes: Route[] }

/** The gateway, built: its routing table in place, ready for `inject()`. */
export async function buildGateway(options: GatewayOptions, runtime: RoleRuntime): Promise<Service> {
  const { logger } = runtime
  return buildService({
    name: 'gateway',
    description: 'One entry point in front of the services.',
    options,
    ...runtime,
    setup: async ({ app, registryClient, metrics }) => {
      const upstream = upstreamClient(options, { registryClient, logger, metrics })
      await registerGatewayRoutes(app, { routes: options.routes, client: upstream.client, timeoutMs: options.upstreamTimeoutSeconds * 1000 })
      logger.info({ event: 'routes', routes: options.routes }, 'gateway routing table')
      return { openapi: combineOpenApi(options.routes, upstream.client), ...upstream.parts }
    },
  })
}
