import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import Fastify, {
  LogController,
  type FastifyServerOptions,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifySchemaCompiler,
} from 'fastify'
import { Ajv } from 'ajv'
import addFormatsModule from 'ajv-formats'
import type { TSchema } from 'typebox'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Logger } from '../lib/logger.ts'
import type { Metrics } from './metrics.ts'
import { FastPathGuard, type FastPath } from './fast-path.ts'
import { instrument, requestTraceFields } from './observability.ts'
import { noopTelemetry, type Telemetry } from './telemetry.ts'
import { plainJson, registerOpenApi, type OpenApiInfo } from './openapi.ts'
import { AppError, HTTP_ERRORS, problem, PROBLEM_CONTENT_TYPE, type HttpErrorCode, type Problem } from './errors.ts'
import { describeValidation } from './validation.ts'

// Not `import { createServer } from 'node:http'`: an ES import of node:http builds the module's
// namespace, and reading its WebSocket, CloseEvent and MessageEvent getters loads Node's bundled
// undici (about 11 MB in every process) that nothing here uses. getBuiltinModule reads no getter.
const { createServer, STATUS_CODES } = process.getBuiltinModule('node:http')

// ajv-formats is CommonJS: its default export arrives wrapped under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule) as unknown as (ajv: Ajv) => Ajv

export const BODY_LIMIT_BYTES = 1024 * 1024

export type App = FastifyInstance<import('node:http').Server, import('node:http').IncomingMessage, import('node:http').ServerResponse, Logger, TypeBoxTypeProvider>

export interface BuildAppOptions {
  logger: Logger
  /** Serves GET /metrics and counts requests when given. */
  metrics?: Metrics
  /** Traces requests when enabled; a no-op by default. */
  telemetry?: Telemetry
  /** Serves /openapi.json and /docs for the routes registered (in plugins) afterwards. */
  openapi?: OpenApiInfo
  /** Routes whose request line is logged at debug level only (probes, scrapes). */
  quietRoutes?: ReadonlySet<string>
  /** True once the instance is draining (before the server itself starts closing). */
  draining?: () => boolean
  /**
   * Answers some routes before Fastify (hot paths), while every hook that would run for them is
   * one it honours; otherwise the routes serve (see fast-path.ts).
   */
  fastPath?: FastPath
  /**
   * Recognises errors from below the HTTP layer that deserve an answer of their own rather than
   * a 500 (a database that cannot be reached: 503). Such errors are logged like a 500.
   */
  classifyError?: (error: Error) => AppError | undefined
}

// A caller's X-Request-Id is kept when it looks like one (visible ASCII, at most 128 characters), so
// that one request's log lines share it across processes; anything else (8 KiB of it, control or
// non-ASCII bytes) is replaced, never logged or forwarded as sent. A new one is a UUID, unlike
// Fastify's per-process counter, so that it means the same thing on the next hop.
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/

function requestIdOf(request: IncomingMessage): string {
  const id = request.headers['x-request-id']
  return typeof id === 'string' && REQUEST_ID.test(id) ? id : randomUUID()
}

const guards = new WeakMap<object, FastPathGuard>()

/** Whether the app's fast path serves, and which hooks turned it off (none given: undefined). */
export function fastPathOf(app: App): Pick<FastPathGuard, 'enabled' | 'unhonoured'> | undefined {
  return guards.get(app)
}

/** Routes whose request lines are debug by default: probes, scrapes and documentation. */
export const QUIET_ROUTES: ReadonlySet<string> = new Set(['/health/live', '/health/ready', '/metrics', '/docs/*', '/openapi.json'])

// Fastify maps these framework errors to 4xx itself; we only translate them into our catalogue.
const frameworkCodes: Record<string, HttpErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
  FST_ERR_BAD_URL: 'ROUTE_NOT_FOUND',
}

/** A request target without its query string. */
export function pathOf(url: string): string {
  const mark = url.indexOf('?')
  return mark < 0 ? url : url.slice(0, mark)
}

/** Requests logged at debug whatever their route: see `logQuietly`. */
const quietRequests = new WeakSet<FastifyRequest>()

/**
 * Logs this request's line at debug: a blocking query or an event stream is a client waiting, and
 * every watcher's would otherwise log a line each time its wait ends, idle or not.
 */
export function logQuietly(request: FastifyRequest): void {
  quietRequests.add(request)
}

const DISCONNECTS = new Set(['ECONNRESET', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE', 'ECONNABORTED'])

/**
 * Whether the request failed because its client went away (its connection closed before the
 * answer was written): routine, not an error of ours. An error answered in full is never this.
 */
function clientGone(error: Error, request: FastifyRequest, reply: FastifyReply): boolean {
  if (reply.raw.writableFinished) return false
  const code = (error as NodeJS.ErrnoException).code
  return (code !== undefined && DISCONNECTS.has(code)) || request.raw.socket?.destroyed !== false
}

/** One log line per request, written when the response is done; probes log at debug only. */
class RequestLog extends LogController {
  readonly #quiet: ReadonlySet<string>
  constructor(quiet: ReadonlySet<string>) {
    super()
    this.#quiet = quiet
  }

  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const route = request.routeOptions.url ?? 'unmatched'
    // Building the line costs more than the rest of a cached discovery answer: skip it when unused.
    const gone = error ? clientGone(error, request, reply) : false
    const level = error && !gone ? 'error' : gone || this.#quiet.has(route) || quietRequests.has(request) ? 'debug' : 'info'
    if (!(request.log as Logger).isLevelEnabled(level)) return
    if (error && gone) {
      const code = (error as NodeJS.ErrnoException).code
      request.log.debug({ event: 'client_disconnected', method: request.method, route, url: pathOf(request.url), ...(code ? { code } : {}) }, 'client went away before the answer')
      return
    }
    const line = {
      method: request.method,
      route,
      // The path only: a query string may carry tokens or personal data.
      url: pathOf(request.url),
      status: reply.statusCode,
      duration_ms: Math.round(reply.elapsedTime * 100) / 100,
      ...requestTraceFields(request),
      ...(error ? { err: error } : {}),
    }
    request.log[level](line, error ? 'request errored' : 'request')
  }
}

export function sendProblem(reply: FastifyReply, body: Problem): FastifyReply {
  return reply.code(body.status).type(PROBLEM_CONTENT_TYPE).send(body)
}

/** A request header as text short enough to quote in an answer. */
function quotedHeader(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name]
  if (typeof value !== 'string') return undefined
  return value.length > 100 ? `${value.slice(0, 100)}…` : value
}

export function toProblem(error: FastifyError | Error, request: FastifyRequest, classify?: (error: Error) => AppError | undefined): Problem {
  if (error instanceof AppError) return error.toProblem(request.url)
  const fastifyError = error as FastifyError
  if (fastifyError.validation) {
    const context = fastifyError.validationContext ?? 'body'
    // The route's own schema for that part: its descriptions and field names make the messages.
    const schema = (request.routeOptions?.schema as Record<string, unknown> | undefined)?.[context]
    const errors = describeValidation(fastifyError.validation, context, schema)
    const first = errors[0]
    const detail = first ? `${first.path}: ${first.message}` : 'The request is invalid'
    return { ...problem('VALIDATION_FAILED', detail), instance: request.url, errors }
  }
  const mapped = fastifyError.code ? frameworkCodes[fastifyError.code] : undefined
  if (mapped === 'UNSUPPORTED_MEDIA_TYPE') {
    const type = quotedHeader(request, 'content-type')
    const detail = `The body must be JSON (Content-Type: application/json), not ${type === undefined ? 'a body without a Content-Type' : type}`
    return { ...problem(mapped, detail), instance: request.url }
  }
  if (mapped) return { ...problem(mapped, error.message), instance: request.url }
  const status = fastifyError.statusCode
  if (status !== undefined && status >= 400 && status < 500) {
    // A client error we have no code for (Fastify added a new one): keep its status.
    return { ...problem('VALIDATION_FAILED', error.message), status, instance: request.url }
  }
  const classified = classify?.(error)
  if (classified) return classified.toProblem(request.url)
  return { ...problem('INTERNAL', 'The server failed to handle the request'), instance: request.url }
}

// Bodies are checked by TypeBox (its refinements, e.g. money, run there, and nothing is coerced:
// a "2" is not a quantity). Path, query and headers are strings on the wire: Ajv compiles their
// checks and coercions into one function, much cheaper per request than TypeBox's Value.Convert.
const ajv = new Ajv({ coerceTypes: 'array', useDefaults: true, removeAdditional: false, allErrors: false, strict: false })
addFormats(ajv)
const validatorCompiler: FastifySchemaCompiler<TSchema> = (route) =>
  route.httpPart === 'body' ? TypeBoxValidatorCompiler(route) : (ajv.compile(plainJson(route.schema) as object) as ReturnType<FastifySchemaCompiler<TSchema>>)

// A body over the limit is refused (413) before it is read, and Fastify closes the connection. A
// client still sending its body then meets a reset and never reads the 413 (undici reports
// EPIPE). For a body of moderate declared size, keep the connection instead: Node reads and
// discards the rest of the body, and the client reads its answer. Larger ones are closed on.
export const LINGER_LIMIT_BYTES = 8 * BODY_LIMIT_BYTES

// A request Node's HTTP parser refuses never reaches Fastify: a malformed request line, a DEL or
// non-ASCII byte in the target, headers over the limit, a request too slow to arrive. Answer it
// with a problem like any other 4xx (Fastify's default answers plain JSON), then close: the
// connection's framing can no longer be trusted.
function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || !socket.writable) return
  const code: HttpErrorCode = error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'REQUEST_TIMEOUT' : error.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'MALFORMED_REQUEST'
  const { status } = HTTP_ERRORS[code]
  const body = JSON.stringify(problem(code))
  const head = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close`
  socket.end(`${head}\r\n\r\n${body}`)
}

function lingers(request: IncomingMessage): boolean {
  const length = Number(request.headers['content-length'])
  return Number.isSafeInteger(length) && length <= LINGER_LIMIT_BYTES && request.headers['transfer-encoding'] === undefined
}

// The order methods are listed in, in an Allow header.
const METHOD_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']
const methodRank = (method: string) => (METHOD_ORDER.includes(method) ? METHOD_ORDER.indexOf(method) : METHOD_ORDER.length)

/** The methods some route of the app answers for this path (other than the one asked), in order. */
function allowedMethods(app: FastifyInstance, methods: ReadonlySet<string>, path: string, asked: string): string[] {
  const allowed: string[] = []
  for (const method of methods) {
    if (method !== asked && app.findRoute({ method: method as 'GET', url: path }) !== null) allowed.push(method)
  }
  return allowed.sort((a, b) => methodRank(a) - methodRank(b) || (a < b ? -1 : 1))
}

export function buildApp(options: BuildAppOptions): App {
  const { fastPath } = options
  let guard: FastPathGuard | undefined
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: BODY_LIMIT_BYTES,
    logController: new RequestLog(options.quietRoutes ?? QUIET_ROUTES),
    // Keep-alive sockets with no request in flight are closed at shutdown; busy ones drain.
    forceCloseConnections: 'idle',
    // While closing, requests that still arrive on open connections are served (callers with a
    // stale view), and every answer closes its connection (below), so the drain ends by itself.
    return503OnClosing: false,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    requestIdHeader: false,
    genReqId: requestIdOf,
    ...(fastPath
      ? {
          serverFactory: (handler: (request: IncomingMessage, response: ServerResponse) => void, settings: FastifyServerOptions) => {
            const server = createServer((request, response) => (guard ? guard.serve(request, response, handler, options.logger) : handler(request, response)))
            // Fastify applies its server settings only to servers it creates: apply them here, so
            // the fast path's connections have the same keep-alive, timeouts and limits.
            server.keepAliveTimeout = settings.keepAliveTimeout ?? 72_000
            if (settings.requestTimeout !== undefined) server.requestTimeout = settings.requestTimeout
            if (settings.maxRequestsPerSocket) server.maxRequestsPerSocket = settings.maxRequestsPerSocket
            server.setTimeout(settings.connectionTimeout ?? 0)
            return server
          },
        }
      : {}),
    clientErrorHandler: answerClientError,
    frameworkErrors: (error, request, reply) => {
      void sendProblem(reply, toProblem(error, request))
    },
  }).withTypeProvider<TypeBoxTypeProvider>()
  // Before any hook is added, so that it sees every one.
  if (fastPath) {
    guard = new FastPathGuard(app as unknown as FastifyInstance, fastPath, options.logger)
    guards.set(app, guard)
  }

  app.setValidatorCompiler(validatorCompiler)
  // Fastify reads text/plain bodies as strings by default, which a route that takes JSON would
  // refuse as `body: must be an object` (400). Without the parser, any body that is not JSON is
  // 415 UNSUPPORTED_MEDIA_TYPE, as documented. (The gateway, which passes bodies on as they are,
  // sets its own parsers.)
  app.removeContentTypeParser('text/plain')

  // Once draining, answer with `Connection: close`: a pooling client (undici, a browser) then
  // opens its next connection elsewhere instead of holding this one and delaying the exit.
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onSend', function closeWhenDraining(request, reply, payload, done) {
    if (closing || options.draining?.()) reply.header('connection', 'close')
    else if (reply.statusCode === 413 && lingers(request.raw)) reply.removeHeader('connection')
    done(null, payload)
  })
  instrument(app as unknown as FastifyInstance, { telemetry: options.telemetry ?? noopTelemetry, metrics: options.metrics })
  const { metrics } = options
  if (metrics) {
    app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()))
  }
  if (options.openapi) registerOpenApi(app as unknown as FastifyInstance, options.openapi)

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const body = toProblem(error, request, options.classifyError)
    // A 503 of ours is a passing state (no instance yet, a store without quorum): say when to retry.
    if (body.status === 503 && !reply.hasHeader('retry-after')) reply.header('retry-after', '1')
    // Upstream failures are logged where they happen (the service client); these are ours.
    if (body.code === 'INTERNAL' || (!(error instanceof AppError) && body.status >= 500)) {
      request.log.error({ err: error, code: body.code }, 'request failed')
    }
    return sendProblem(reply, body)
  })

  // A path that some route serves, asked with another method, is 405 with the methods it takes
  // (RFC 9110 §15.5.6), not 404: the client has the right address and the wrong verb.
  const methods = new Set<string>()
  app.addHook('onRoute', (route) => {
    for (const method of ([] as string[]).concat(route.method)) methods.add(method)
  })
  app.setNotFoundHandler((request, reply) => {
    const path = pathOf(request.url)
    const allowed = allowedMethods(app as unknown as FastifyInstance, methods, path, request.method)
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '))
      return sendProblem(reply, { ...problem('METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${path}; it takes ${allowed.join(', ')}`), instance: request.url })
    }
    return sendProblem(reply, { ...problem('ROUTE_NOT_FOUND', `No route for ${request.method} ${path}`), instance: request.url })
  })

  return app as unknown as App
}
