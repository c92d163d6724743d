import { Readable, Transform, type TransformCallback } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { propagation } from '@opentelemetry/api'
import type { RegistryInstance } from '../discovery/registry-client.ts'
import { UpstreamError, type ServiceClient } from '../discovery/service-client.ts'
import { BODY_LIMIT_BYTES, LINGER_LIMIT_BYTES, sendProblem, type App } from '../http/app.ts'
import { type AppError, defineErrors, httpError, type ProblemKind } from '../http/errors.ts'
import { describe, errorCode } from '../lib/errors.ts'
import { upstreamError, upstreamFailure } from '../runtime/upstream.ts'
import { connectionNamed, forward, proxyAgent } from './proxy.ts'
import { type Route, upstreamTarget } from './routing.ts'

/** What the gateway itself refuses, before any instance is asked. */
const gatewayError = defineErrors({
  INVALID_PATH: { status: 400, title: 'Invalid request path' },
  INVALID_HEADER: { status: 400, title: 'Invalid request header' },
})

/** What the gateway may answer on any routed request before or instead of the service's answer (for its OpenAPI document). */
export const ROUTED_PROBLEMS: readonly ProblemKind[] = [
  gatewayError.kind('INVALID_PATH'),
  gatewayError.kind('INVALID_HEADER'),
  httpError.kind('BODY_TOO_LARGE'),
  upstreamError.kind('NO_HEALTHY_INSTANCE'),
  upstreamError.kind('UPSTREAM_UNAVAILABLE'),
  upstreamError.kind('UPSTREAM_FAILED'),
  upstreamError.kind('UPSTREAM_TIMEOUT'),
]

export interface GatewayRouteOptions {
  routes: readonly Route[]
  client: ServiceClient
  timeoutMs: number
  connectTimeoutMs: number
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

/**
 * A request may go to another instance after a failure once it may have reached the first only if
 * it is idempotent and has no body to replay. (One that never reached an instance may go to
 * another whatever it is: the service client tells them apart.)
 */
function retryable(request: FastifyRequest): boolean {
  const length = request.headers['content-length']
  const hasBody = (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined
  return IDEMPOTENT.has(request.method) && !hasBody
}

// Hop-by-hop headers (RFC 9110 7.6.1) describe one connection, not the request: never forwarded,
// nor are those the Connection header names. `Expect` is not hop-by-hop, but it is answered here:
// Node sends the client its 100 Continue, and undici refuses to send the header on (it would fail
// every such request, counted against the instance as if it had failed). `Host` is the instance's;
// the X-Forwarded-* and X-Request-Id headers are set below.
const NOT_FORWARDED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'host',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-request-id',
])

function forwardedFor(request: FastifyRequest): string {
  const previous = request.headers['x-forwarded-for']
  const chain = Array.isArray(previous) ? previous.join(', ') : previous
  return chain ? `${chain}, ${request.ip}` : request.ip
}

/**
 * The headers the instance receives: the caller's, less hop-by-hop ones, plus X-Forwarded-For,
 * -Proto, -Host and X-Request-Id. When the gateway traces, the caller's trace headers are left out
 * too: undici's instrumentation adds the gateway's own (continuing the caller's trace), and a
 * second traceparent would make the callee pick the caller's and skip the gateway. Untraced (no
 * propagator), the caller's pass through unchanged.
 */
function forwardHeaders(request: FastifyRequest): Record<string, string | string[] | undefined> {
  const source = request.headers
  const named = connectionNamed(source.connection)
  const propagated = propagation.fields()
  const headers: Record<string, string | string[] | undefined> = {}
  for (const name in source) {
    if (NOT_FORWARDED.has(name) || named?.has(name) || (propagated.length > 0 && propagated.includes(name))) continue
    headers[name] = source[name]
  }
  headers['x-forwarded-for'] = forwardedFor(request)
  headers['x-forwarded-proto'] = request.protocol
  headers['x-forwarded-host'] = source.host ?? ''
  headers['x-request-id'] = request.id
  return headers
}

/** Where an instance is, parsed once per instance (a view's instances are kept until it changes). */
interface Upstream {
  origin: string
  host: string
  /** The instance URL's own path, without a trailing slash ('' for most). */
  basePath: string
}

const upstreams = new WeakMap<RegistryInstance, Upstream>()

function upstreamOf(instance: RegistryInstance): Upstream {
  let upstream = upstreams.get(instance)
  if (upstream === undefined) {
    const url = new URL(instance.url)
    upstream = { origin: url.origin, host: url.host, basePath: url.pathname.replace(/\/$/, '') }
    upstreams.set(instance, upstream)
  }
  return upstream
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

/**
 * The gateway: `/products*` and `/orders*` (or whatever the routing table says) go to a healthy
 * instance of the service, chosen by the same discovery client the services use (balancing,
 * breakers, slow start, timeouts; retries on another instance of requests that never reached one,
 * and of idempotent ones after connection failures). Proxying itself, streaming both ways and
 * dropping hop-by-hop headers, is ./proxy.ts.
 */
export async function registerGatewayRoutes(app: App, options: GatewayRouteOptions): Promise<void> {
  const agent = proxyAgent({ connectTimeoutMs: options.connectTimeoutMs, timeoutMs: options.timeoutMs })
  app.addHook('onClose', async () => {
    await agent.close()
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
    reply.header('x-request-id', request.id)
    // What the URL parser would resolve elsewhere (`..`, `\\`, encoded or not) is refused here, as
    // the client's error, rather than reaching another route of the instance.
    const target = upstreamTarget(request.url, route.prefix)
    if ('refused' in target) return sendProblem(reply, gatewayError('INVALID_PATH', target.refused).toProblem(request.url))
    const body = request.body instanceof Readable ? request.body : null
    const limited = body instanceof LimitedBody ? body : undefined
    const clientGone = () => request.raw.socket?.destroyed !== false
    const headers = forwardHeaders(request)
    const path = target.query === '' ? target.path : `${target.path}?${target.query}`
    const forwarded = {
      method: request.method,
      headers,
      body,
      requestComplete: () => request.raw.complete,
      failedAnswer: (error: Error) => {
        // The answer's head was in (and counted as the instance's answer); its body never came.
        request.log.warn({ event: 'upstream_body_failed', service: route.service, err_message: describe(error) }, 'the instance failed in the middle of its answer')
        return upstreamFailure(new UpstreamError('bad_response', route.service, describe(error), { cause: error }))
      },
    }
    const attempt = async (instance: RegistryInstance): Promise<Attempt> => {
      if (clientGone()) return { status: CLIENT_GONE, refusal: 'client_gone' }
      const upstream = upstreamOf(instance)
      headers.host = upstream.host
      try {
        return { status: await forward(agent, reply, { ...forwarded, origin: upstream.origin, path: `${upstream.basePath}${path}` }) }
      } catch (error) {
        // The client's doing, not the instance's: answered as such, and not counted against it.
        if (limited?.exceeded) return { status: 413, refusal: bodyTooLarge(limit) }
        if (clientGone()) return { status: CLIENT_GONE, refusal: 'client_gone' }
        // A header value Node accepted and undici will not send (it checks before connecting).
        if (errorCode((error as Error).cause) === 'UND_ERR_INVALID_ARG') {
          return { status: 400, refusal: gatewayError('INVALID_HEADER', 'The request has a header that cannot be forwarded') }
        }
        throw error
      }
    }
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
    if (limited?.exceeded) discardRest(request, LINGER_LIMIT_BYTES)
    return sendProblem(reply, outcome.refusal.toProblem(request.url))
  }

  for (const route of options.routes) {
    const handler = proxy(route)
    // Documented by the services themselves (the gateway serves their combined document).
    app.all(route.prefix, { schema: { hide: true } }, handler)
    app.all(`${route.prefix}/*`, { schema: { hide: true } }, handler)
  }
}
