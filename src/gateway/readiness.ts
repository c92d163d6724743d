import { describe } from '../lib/errors.ts'
import type { ServiceClient } from '../discovery/service-client.ts'
import type { ReadinessCheck } from '../http/health.ts'
import type { Route } from './routing.ts'

export interface RouteStatus {
  prefix: string
  service: string
  /** Live instances the gateway can send the route's requests to (null: discovery has not answered). */
  instances: number | null
}

export interface RouteReadiness {
  /** `routes` in /health/ready's checks: ok once every route has had an instance to go to. */
  check: ReadinessCheck
  /** For /health/ready's details: every route's instances when last checked, and those with none. */
  details: () => { routes: RouteStatus[]; routes_without_instances: string[] }
}

/**
 * Whether the gateway can route: it is not ready until every route of its table has had at least
 * one instance, so that an orchestrator does not send it traffic it could only answer with 503.
 * After that, a route left with no instance does not make it unready again (its other routes still
 * serve; taking the gateway out would turn one service's outage into an outage of all of them, as
 * with the registry check): the details name such routes. Each check asks discovery, which answers
 * from memory once the service is watched (the first check starts the watches).
 */
export function routeReadiness(routes: readonly Route[], client: Pick<ServiceClient, 'instances'>): RouteReadiness {
  const served = new Set<string>()
  let last: RouteStatus[] = routes.map((route) => ({ prefix: route.prefix, service: route.service, instances: null }))
  const check = async (): Promise<true | string> => {
    last = await Promise.all(
      routes.map(async (route) => {
        const instances = await client.instances(route.service).then(
          (found) => found.length,
          () => null,
        )
        if (instances !== null && instances > 0) served.add(route.prefix)
        return { prefix: route.prefix, service: route.service, instances }
      }),
    )
    const waiting = last.filter((route) => !served.has(route.prefix))
    if (waiting.length === 0) return true
    return `no instance yet for ${waiting.map((route) => `${route.prefix} (${route.service}${route.instances === null ? ': discovery has not answered' : ''})`).join(', ')}`
  }
  return {
    check: () => check().catch((error: unknown) => describe(error)),
    details: () => ({ routes: last, routes_without_instances: last.filter((route) => route.instances === null || route.instances === 0).map((route) => route.prefix) }),
  }
}
