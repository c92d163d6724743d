import type { ServiceClient } from '../discovery/service-client.ts'
import type { Route } from './routing.ts'

type Document = Record<string, unknown>

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * The gateway's OpenAPI document: its own (health) plus, for each route, the paths under the
 * route's prefix from the service's own /openapi.json, fetched through discovery. A service that
 * cannot be reached is left out (and named in the description) rather than failing the document.
 */
export function combineOpenApi(routes: readonly Route[], client: ServiceClient) {
  return async (own: Document): Promise<Document> => {
    const paths: Record<string, unknown> = isObject(own.paths) ? { ...own.paths } : {}
    const schemas: Record<string, unknown> = {}
    const missing: string[] = []
    await Promise.all(
      routes.map(async (route) => {
        try {
          const response = await client.request(route.service, { method: 'GET', path: '/openapi.json' })
          const document = response.body
          if (response.status !== 200 || !isObject(document) || !isObject(document.paths)) throw new Error(`answered ${response.status}`)
          for (const [path, item] of Object.entries(document.paths)) {
            if (path === route.prefix || path.startsWith(`${route.prefix}/`)) paths[path] = item
          }
          const components = document.components
          if (isObject(components) && isObject(components.schemas)) Object.assign(schemas, components.schemas)
        } catch {
          missing.push(route.service)
        }
      }),
    )
    const services = [...new Set(routes.map((r) => r.service))].join(', ')
    return {
      ...own,
      info: {
        title: 'API gateway',
        version: isObject(own.info) ? own.info.version : '0.1.0',
        description: `One entry point for: ${services}.${missing.length ? ` Not reachable just now, so not included: ${missing.sort().join(', ')}.` : ''}`,
      },
      paths,
      components: { ...(isObject(own.components) ? own.components : {}), schemas },
    }
  }
}
