import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'

export interface OpenApiInfo {
  title: string
  description: string
  version?: string
  /** Builds the served document from this app's own (the gateway merges its services' into it). */
  combine?: (own: Record<string, unknown>) => Promise<Record<string, unknown>>
}

/** A JSON value with TypeBox's internal `~` keys (kinds, refinements) removed: plain JSON Schema. */
export function plainJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(plainJson)
  if (value === null || typeof value !== 'object') return value
  const out: Record<string, unknown> = {}
  for (const [key, inner] of Object.entries(value)) {
    if (key.startsWith('~') || typeof inner === 'function') continue
    out[key] = plainJson(inner)
  }
  return out
}

/**
 * GET /openapi.json (OpenAPI 3.1) generated from the same schemas that validate the routes, and
 * Swagger UI at /docs (its assets come from the package: nothing is fetched from the network).
 * Must be registered before the routes it describes, which then go in plugins after it.
 */
export function registerOpenApi(app: FastifyInstance, info: OpenApiInfo): void {
  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: info.title, description: info.description, version: info.version ?? '0.1.0' },
    },
    transformObject: (document) => {
      const object = 'openapiObject' in document ? document.openapiObject : document.swaggerObject
      return plainJson(object) as typeof object
    },
  })
  const { combine } = info
  if (!combine) {
    void app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true })
    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
    return
  }
  // Combining takes calls to other services: keep the last result for the UI, which reads it
  // synchronously, and refresh it on each request for the document and every 30 s.
  let latest: Record<string, unknown> | undefined
  const refresh = async () => {
    try {
      latest = await combine(app.swagger() as unknown as Record<string, unknown>)
    } catch (error) {
      app.log.warn({ event: 'openapi_combine_failed', err_message: error instanceof Error ? error.message : String(error) }, 'could not combine the OpenAPI documents')
    }
    return latest ?? (app.swagger() as unknown as Record<string, unknown>)
  }
  const timer = setInterval(() => void refresh(), 30_000)
  timer.unref()
  app.addHook('onReady', async () => {
    setTimeout(() => void refresh(), 1000).unref()
  })
  app.addHook('onClose', async () => clearInterval(timer))
  void app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true, transformSpecification: (own) => latest ?? own })
  app.get('/openapi.json', { schema: { hide: true } }, refresh)
}
