import type { IncomingHttpHeaders } from 'node:http'
import swagger from '@fastify/swagger'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifySchema, type RouteOptions } from 'fastify'
import { httpError, PROBLEM_CONTENT_TYPE, problem, type ProblemKind } from './errors.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The errors of its own this route may answer (`fail.kind('ORDER_NOT_FOUND')`), for its
     * OpenAPI operation. HTTP's own (a refused body, a failed validation) are added by themselves.
     */
    problems?: readonly ProblemKind[]
  }
}

/** A route as a documentation rule sees it. */
export interface DocumentedRoute {
  method: string
  url: string
}

export interface OpenApiInfo {
  title: string
  description: string
  version?: string
  /** Builds the served document from this app's own (the gateway merges its services' into it). */
  combine?: (own: Record<string, unknown>) => Promise<Record<string, unknown>>
  /**
   * Errors the app's own hooks may answer on some routes (a token check, a rate limit, a store
   * that is not ready), documented on each route they apply to.
   */
  problems?: (route: DocumentedRoute) => readonly ProblemKind[]
}

/** An RFC 9457 problem, as every error is answered. */
export const ProblemSchema = {
  type: 'object',
  description: 'RFC 9457 problem details; branch on `code`, never on the text',
  required: ['type', 'title', 'status', 'detail', 'code'],
  properties: {
    type: { type: 'string', format: 'uri' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string', description: 'What went wrong with this request' },
    code: { type: 'string', description: 'Stable, machine-readable code' },
    instance: { type: 'string' },
    errors: {
      type: 'array',
      description: 'Each mistake in the request (validation failures)',
      items: { type: 'object', required: ['path', 'message'], properties: { path: { type: 'string' }, message: { type: 'string' } } },
    },
  },
  additionalProperties: true,
} as const

export const PROBLEM_MEDIA_TYPE = 'application/problem+json'

/** Whether a request part's schema can refuse anything (`Type.Object({})` takes every query). */
function refuses(schema: unknown): boolean {
  if (typeof schema !== 'object' || schema === null) return false
  const s = schema as Record<string, unknown>
  const empty = (s.properties === undefined || Object.keys(s.properties as object).length === 0) && s.required === undefined
  return !(s.type === 'object' && empty && s.additionalProperties !== false)
}

/** HTTP's own errors a route may answer, from what it takes: its validated parts and its body. */
export function inputProblems(schema: FastifySchema | undefined): ProblemKind[] {
  if (!schema) return []
  const kinds: ProblemKind[] = []
  if (refuses(schema.body) || refuses(schema.querystring) || refuses(schema.params) || refuses(schema.headers)) kinds.push(httpError.kind('VALIDATION_FAILED'))
  if (schema.body !== undefined) {
    kinds.push(httpError.kind('INVALID_JSON'), httpError.kind('BODY_TOO_LARGE'), httpError.kind('UNSUPPORTED_MEDIA_TYPE'))
  }
  return kinds
}

const RETRY_AFTER = { 'retry-after': { type: 'string', description: 'Seconds to wait before trying again' } }

/**
 * OpenAPI responses for errors, one per status, each a problem whose `code` lists the codes that
 * status can carry; plus `default`, any other error, as a problem too.
 */
export function problemResponses(kinds: readonly ProblemKind[]): Record<string, unknown> {
  const byStatus = new Map<number, Map<string, ProblemKind>>()
  for (const kind of kinds) {
    const codes = byStatus.get(kind.status) ?? new Map<string, ProblemKind>()
    codes.set(kind.code, kind)
    byStatus.set(kind.status, codes)
  }
  const responses: Record<string, unknown> = {}
  for (const status of [...byStatus.keys()].sort((a, b) => a - b)) {
    const codes = [...byStatus.get(status)!.values()]
    const schema = {
      ...ProblemSchema,
      properties: { ...ProblemSchema.properties, status: { type: 'integer', const: status }, code: { type: 'string', enum: codes.map((k) => k.code) } },
    }
    responses[String(status)] = {
      description: codes.map((k) => `${k.code}: ${k.title}`).join('; '),
      ...(status === 503 || status === 429 ? { headers: RETRY_AFTER } : {}),
      content: { [PROBLEM_MEDIA_TYPE]: { schema } },
    }
  }
  responses.default = { description: 'Any other error (INTERNAL: 500)', content: { [PROBLEM_MEDIA_TYPE]: { schema: ProblemSchema } } }
  return responses
}

/** The route's documentation with its error answers added (its own responses win). */
function documentErrors(route: RouteOptions, schema: FastifySchema | undefined, rule: OpenApiInfo['problems']): FastifySchema {
  const methods = ([] as string[]).concat(route.method)
  const kinds = [...inputProblems(schema), ...(route.config?.problems ?? []), ...methods.flatMap((method) => rule?.({ method, url: route.url }) ?? [])]
  const own = (schema?.response ?? {}) as Record<string, unknown>
  return { ...schema, response: { ...problemResponses(kinds), ...own } }
}

// Swagger UI under a policy of its own, stricter than the package's: nothing from elsewhere (the
// package allows any https: style or font), and no `upgrade-insecure-requests`, which makes a
// browser that opened the page over plain HTTP on any name but localhost (a container's, a
// LAN address) ask for every asset over HTTPS, and show a blank page.
export const DOCS_CSP = [
  "default-src 'self'",
  "base-uri 'self'",
  "connect-src 'self'",
  "font-src 'self' data:",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "img-src 'self' data:",
  "object-src 'none'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self'",
].join('; ')

// The base layout: the standalone one adds a top bar whose inline SVG logo carries a <style>
// element, which the policy above (rightly) refuses, with a console error on every load. The
// bar's only other use is loading another document by URL.
const UI_CONFIG = { layout: 'BaseLayout', deepLinking: true }

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
 * Swagger UI at /docs (its assets come from the package: nothing is fetched from the network;
 * the package is loaded by the first request for it).
 * Must be registered before the routes it describes, which then go in plugins after it.
 */
export function registerOpenApi(app: FastifyInstance, info: OpenApiInfo): void {
  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: info.title, description: info.description, version: info.version ?? '0.1.0' },
    },
    transform: ({ schema, url, route }) => ({ schema: schema?.hide ? schema : documentErrors(route, schema, info.problems), url }),
    transformObject: (document) => {
      const object = 'openapiObject' in document ? document.openapiObject : document.swaggerObject
      return plainJson(object) as typeof object
    },
  })
  const { combine } = info
  if (!combine) {
    registerDocs(app, () => app.swagger() as unknown as Record<string, unknown>)
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
  registerDocs(app, () => latest ?? (app.swagger() as unknown as Record<string, unknown>))
  app.get('/openapi.json', { schema: { hide: true } }, refresh)
}

/** What a browser asks Swagger UI's assets with: conditional and range requests. */
const FORWARDED_HEADERS = ['accept', 'if-none-match', 'if-modified-since', 'range', 'if-range'] as const
/** Headers of the UI's answers that belong to its connection (this app's own are sent instead). */
const CONNECTION_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'date'])

function forwarded(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of FORWARDED_HEADERS) {
    const value = headers[name]
    if (typeof value === 'string') out[name] = value
  }
  return out
}

/** The error a Fastify error answer (`{statusCode, code, message}`) stands for. */
function uiError(statusCode: number, body: string): Error {
  let parsed: { code?: unknown; message?: unknown } = {}
  try {
    parsed = JSON.parse(body) as typeof parsed
  } catch {
    // not Fastify's JSON: the status says enough
  }
  const message = typeof parsed.message === 'string' ? parsed.message : `Swagger UI answered ${statusCode}`
  return Object.assign(new Error(message), { statusCode, ...(typeof parsed.code === 'string' ? { code: parsed.code } : {}) })
}

/**
 * Swagger UI at /docs, loaded by its first request: the package, @fastify/static and what they
 * load cost every process memory, and most processes never serve a page of documentation.
 * Fastify takes no routes once it listens, so the UI lives in a small Fastify instance of its own,
 * made on first use; this app's /docs routes hand each request to it (`inject`) and answer with
 * its answer, through this app's hooks (request log, metrics, draining, not-found problems).
 * `document` is what the UI shows (and /docs/json serves): this app's document, or the combined one.
 */
function registerDocs(app: FastifyInstance, document: () => Record<string, unknown>): void {
  let ui: Promise<FastifyInstance> | undefined
  const load = async () => {
    const { default: swaggerUi } = await import('@fastify/swagger-ui')
    const docs = Fastify({ logger: false, routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 } })
    // Swagger UI needs @fastify/swagger in its instance; it serves `document`, not that one's.
    await docs.register(swagger, { mode: 'static', specification: { document: { openapi: '3.1.0', info: { title: 'docs', version: '0' }, paths: {} } } })
    await docs.register(swaggerUi, { routePrefix: '/docs', staticCSP: DOCS_CSP, uiConfig: UI_CONFIG, transformSpecification: () => document(), transformSpecificationClone: false })
    await docs.ready()
    return docs
  }
  const serve = async (request: FastifyRequest, reply: FastifyReply) => {
    ui ??= load().catch((error: unknown) => {
      ui = undefined
      throw error
    })
    const answer = await (await ui).inject({ method: 'GET', url: request.url, headers: forwarded(request.headers) })
    // An asset the UI does not have: 404 as for any unknown route. (Not `callNotFound`: the app's
    // not-found handler would see this GET route's HEAD twin and answer 405 "it takes HEAD".)
    if (answer.statusCode === 404) {
      const path = request.url.split('?')[0]
      return reply
        .code(404)
        .type(PROBLEM_CONTENT_TYPE)
        .send({ ...problem('ROUTE_NOT_FOUND', `No route for ${request.method} ${path}`), instance: request.url })
    }
    // Any other refusal (a forbidden path, a range it cannot serve) is Fastify's error in that
    // instance: raised here, the app's error handler answers it as a problem, as it did when the
    // UI's routes were the app's own.
    if (answer.statusCode >= 400) throw uiError(answer.statusCode, answer.body)
    for (const [name, value] of Object.entries(answer.headers)) {
      if (value !== undefined && !CONNECTION_HEADERS.has(name)) reply.header(name, value)
    }
    return reply.code(answer.statusCode).send(answer.rawPayload)
  }
  app.get('/docs', { schema: { hide: true } }, serve)
  app.get('/docs/*', { schema: { hide: true } }, serve)
  app.addHook('onClose', async () => {
    const loaded = await ui?.catch(() => undefined)
    await loaded?.close()
  })
}
