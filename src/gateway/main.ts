import type { App } from '../http/app.ts'
import type { RoleRuntime } from '../runtime/role.ts'
import { buildService, type Service, type ServiceOptions } from '../runtime/service.ts'
import { upstreamClient, type UpstreamOptions } from '../runtime/upstream.ts'
import { type GatewayAuthOptions, registerGatewayAuth } from './auth.ts'
import { combineOpenApi, routedProblems } from './openapi.ts'
import { routeReadiness } from './readiness.ts'
import { registerGatewayRoutes } from './routes.ts'
import type { Route } from './routing.ts'

export type GatewayOptions = ServiceOptions &
  UpstreamOptions & {
    routes: Route[]
    /** Undefined: no authentication (the default). */
    auth?: GatewayAuthOptions | undefined
  }

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
      // The proxied routes in a scope of their own, behind the authentication hook; the gateway's
      // own routes (health, metrics, documents) stay outside it, open.
      await app.register(async (scope) => {
        const proxied = scope as unknown as App
        registerGatewayAuth(proxied, { auth: options.auth, logger })
        await registerGatewayRoutes(proxied, {
          routes: options.routes,
          client: upstream.client,
          timeoutMs: options.upstreamTimeoutSeconds * 1000,
          connectTimeoutMs: options.upstreamConnectTimeoutSeconds * 1000,
        })
      })
      logger.info({ event: 'routes', routes: options.routes }, 'gateway routing table')
      // What is checked, never the secret.
      const auth = options.auth
      logger.info(
        auth === undefined
          ? { event: 'auth', enabled: false }
          : { event: 'auth', enabled: true, keys: auth.keys.kind === 'secret' ? 'secret (HS256)' : auth.keys.url, issuer: auth.issuer, audience: auth.audience },
        auth === undefined ? 'gateway authentication off: every request passes as anonymous' : 'gateway authentication on: bearer tokens required except for reads of /products',
      )
      const readiness = routeReadiness(options.routes, upstream.client)
      return {
        openapi: combineOpenApi(options.routes, upstream.client, routedProblems(auth !== undefined)),
        ...upstream.parts,
        checks: { routes: readiness.check },
        details: () => ({ ...upstream.parts.details(), ...readiness.details() }),
      }
    },
  })
}
