import { Transform, type TransformCallback } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import replyFrom from '@fastify/reply-from'
import { propagation } from '@opentelemetry/api'
import type { RegistryInstance } from '../discovery/registry-client.ts'
import { UpstreamError, type ServiceClient } from '../discovery/service-client.ts'
import { BODY_LIMIT_BYTES, LINGER_LIMIT_BYTES, sendProblem, type App } from '../http/app.ts'
import { type AppError, defineErrors, httpError } from '../http/errors.ts'
import { upstreamError, upstreamFailure } from '../runtime/upstream.ts'
import { type Route, upstreamTarget } from './routing.ts'

/** What the gateway itself refuses, before any instance is asked. */
const gatewayError = defineErrors({
  INVALID_PATH: { status: 400, title: 'Invalid request path' },
})

export interface GatewayRouteOptions {
  routes: readonly Route[]
  client: ServiceClient
  timeoutMs: number
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

/** A request may go to another instance after a failure only if it is idempotent and has no body to replay. */
function retryable(request: FastifyRequest): boolean {
  const length = request.headers['content-length']
  const hasBody = (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined
  return IDEMPOTENT.has(request.method) && !hasBody
}

// Hop-by-hop headers (RFC 9110 7.6.1) describe one connection, not the request: never forwarded.
// reply-from already drops Connection and the headers it names; these are the rest.
// `Expect` is not hop-by-hop, but it is answered here: Node sends the client its 100 Continue,
// and undici refuses to send the header on (it would fail every such request, counted against the
// instance as if it had failed).
const HOP_BY_HOP = ['keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']
const NOT_FORWARDED = [...HOP_BY_HOP, 'expect']

function withoutHopByHop<T extends Record<string, unknown>>(headers: T): T {
  const copy = { ...headers }
  for (const name of NOT_FORWARDED) delete copy[name]
  return copy
}

// In answers too: an instance's `Connection: keep-alive` is about its connection to the gateway,
// and must not keep the client's open when the client asked for it to close. (reply-from drops
// these only for HTTP/2 callers.)
const RESPONSE_HOP_BY_HOP = ['connection', ...HOP_BY_HOP]

function answerHeaders<T extends Record<string, unknown>>(headers: T): T {
  const copy = { ...headers }
  const named = typeof headers.connection === 'string' ? headers.connection.split(',').map((name) => name.trim().toLowerCase()) : []
  for (const name of [...RESPONSE_HOP_BY_HOP, ...named]) delete copy[name]
  return copy
}

/**
 * The caller's trace headers, when the gateway traces: undici's instrumentation adds the gateway's
 * own (continuing the caller's trace), and a second traceparent would make the callee pick the
 * caller's and skip the gateway. Untraced (no propagator), the caller's pass through unchanged.
 */
function withoutPropagated<T extends Record<string, unknown>>(headers: T): T {
  const fields = propagation.fields()
  if (fields.length === 0) return headers
  const copy = { ...headers }
  for (const name of fields) delete copy[name]
  return copy
}

const bodyTooLarge = (limit: number) => httpError('BODY_TOO_LARGE', `The request body is larger than ${limit} bytes`)

/**
 * A streamed body (sent without a Content-Length), passed on as it arrives until it outgrows the
 * limit: then it fails, which stops the upstream request, and the answer is 413.
 */
class LimitedBody extends Transform {
  exceeded = false
  readonly #limit: number
  #bytes = 0

  constructor(limit: number) {
    super()
    this.#limit = limit
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#bytes += chunk.length
    if (this.#bytes <= this.#limit) {
      callback(null, chunk)
    } else {
      this.exceeded = true
      callback(bodyTooLarge(this.#limit))
    }
  }
}

/**
 * Reads and drops the rest of a body refused as too large, as Node does for one refused by its
 * declared length (see the app): closing at once, with the client still sending, would reset the
 * connection under it before it read its 413. Past `bytes` more, the connection is cut.
 */
function discardRest(request: FastifyRequest, bytes: number): void {
  let left = bytes
  request.raw.on('data', (chunk: Buffer) => {
    left -= chunk.length
    if (left < 0) request.raw.destroy()
  })
  request.raw.resume()
}

/**
 * How one attempt ended. `refusal`: the client's doing (its body outgrew the limit, or it went
 * away), answered as such; its status, below 500, never counts against the instance's breaker.
 */
interface Attempt {
  status: number
  refusal?: AppError | 'client_gone'
}

/** Not an HTTP status: the client closed its connection before it had its answer (nginx's 499). */
const CLIENT_GONE = 499

function forwardedFor(request: FastifyRequest): string {
  const previous = request.headers['x-forwarded-for']
  const chain = Array.isArray(previous) ? previous.join(', ') : previous
  return chain ? `${chain}, ${request.ip}` : request.ip
}

/**
 * The gateway: `/products*` and `/orders*` (or whatever the routing table says) go to a healthy
 * instance of the service, chosen by the same discovery client the services use (balancing,
 * breakers, timeouts, retries of idempotent requests on connection failures). Proxying itself,
 * streaming both ways and dropping hop-by-hop headers, is @fastify/reply-from's.
 */
export async function registerGatewayRoutes(app: App, options: GatewayRouteOptions): Promise<void> {
  await app.register(replyFrom, {
    undici: { connections: 128, pipelining: 1, keepAliveTimeout: 30_000, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs },
    disableRequestLogging: true,
  })

  // Bodies are not parsed: they stream through to the instance as they arrive, within the body
  // limit (a parser that streams is not held to it by Fastify). A declared length over it is
  // refused before anything is read; a streamed body is counted on its way through.
  const limit = app.initialConfig.bodyLimit ?? BODY_LIMIT_BYTES
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (request, payload, done) => {
    if (Number(request.headers['content-length']) > limit) {
      done(bodyTooLarge(limit), undefined)
    } else if (request.headers['transfer-encoding'] === undefined) {
      done(null, payload)
    } else {
      const limited = new LimitedBody(limit)
      payload.on('error', (error) => limited.destroy(error))
      done(null, payload.pipe(limited))
    }
  })

  const proxy = (route: Route) => async (request: FastifyRequest, reply: FastifyReply) => {
    const requestId = request.id
    reply.header('x-request-id', requestId)
    // What the URL parser would resolve elsewhere (`..`, `\\`, encoded or not) is refused here, as
    // the client's error, rather than reaching another route of the instance.
    const target = upstreamTarget(request.url, route.prefix)
    if ('refused' in target) return sendProblem(reply, gatewayError('INVALID_PATH', target.refused).toProblem(request.url))
    const body = request.body instanceof LimitedBody ? request.body : undefined
    const clientGone = () => request.raw.socket?.destroyed !== false
    const attempt = (instance: RegistryInstance) =>
      new Promise<Attempt>((resolve, reject) => {
        // A client that leaves before its answer: reply-from then calls neither callback below.
        if (clientGone()) return resolve({ status: CLIENT_GONE, refusal: 'client_gone' })
        const onClose = () => {
          if (!reply.sent && clientGone()) resolve({ status: CLIENT_GONE, refusal: 'client_gone' })
        }
        reply.raw.once('close', onClose)
        const settle = (outcome: Attempt | Error) => {
          reply.raw.removeListener('close', onClose)
          if (outcome instanceof Error) reject(outcome)
          else resolve(outcome)
        }
        // The query is not part of the source: reply-from would decode it with the path, and refuse
        // (or fail on) a `..` or a stray `%` that is the upstream's to read.
        reply.from(`${instance.url.replace(/\/$/, '')}${target.path}`, {
          queryString: () => target.query,
          // Retries are ours: to another instance, not the same one again.
          retryDelay: () => null,
          rewriteRequestHeaders: (_req, headers) => ({
            ...withoutPropagated(withoutHopByHop(headers)),
            'x-forwarded-for': forwardedFor(request),
            'x-forwarded-proto': request.protocol,
            'x-forwarded-host': request.headers.host ?? '',
            'x-request-id': requestId,
          }),
          rewriteHeaders: (headers) => answerHeaders(headers),
          onResponse: (_req, res, response) => {
            settle({ status: response.statusCode })
            void res.send(response.stream)
          },
          onError: (_res, { error }) => {
            // The client's doing, not the instance's: answered as such, and not counted against it.
            if (body?.exceeded) settle({ status: 413, refusal: bodyTooLarge(limit) })
            else if (clientGone()) settle({ status: CLIENT_GONE, refusal: 'client_gone' })
            else settle(error)
          },
        })
      })
    let outcome: Attempt
    try {
      outcome = await options.client.dispatch(route.service, { idempotent: retryable(request), retryOnStatus: false }, attempt)
    } catch (error) {
      if (reply.sent) return reply
      // The specifics (instances, addresses, error codes) are in the log, not in the answer.
      if (!(error instanceof UpstreamError)) request.log.error({ err: error, service: route.service }, 'proxying failed')
      const failure = error instanceof UpstreamError ? upstreamFailure(error) : upstreamError('UPSTREAM_FAILED')
      return sendProblem(reply, failure.toProblem(request.url))
    }
    if (outcome.refusal === undefined || reply.sent) return reply
    if (outcome.refusal === 'client_gone') return reply
    // As the app does after any other 413: read and drop the rest, within the same bound.
    if (body?.exceeded) discardRest(request, LINGER_LIMIT_BYTES)
    return sendProblem(reply, outcome.refusal.toProblem(request.url))
  }

  for (const route of options.routes) {
    const handler = proxy(route)
    // Documented by the services themselves (the gateway serves their combined document).
    app.all(route.prefix, { schema: { hide: true } }, handler)
    app.all(`${route.prefix}/*`, { schema: { hide: true } }, handler)
  }
}
