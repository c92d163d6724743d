import type { FastifyReply, FastifyRequest } from 'fastify'
import replyFrom from '@fastify/reply-from'
import { propagation } from '@opentelemetry/api'
import type { RegistryInstance } from '../discovery/registry-client.ts'
import { UpstreamError, type ServiceClient } from '../discovery/service-client.ts'
import { sendProblem, type App } from '../http/app.ts'
import { upstreamError, upstreamFailure } from '../runtime/upstream.ts'
import type { Route } from './routing.ts'

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
const HOP_BY_HOP = ['keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']

function withoutHopByHop<T extends Record<string, unknown>>(headers: T): T {
  const copy = { ...headers }
  for (const name of HOP_BY_HOP) delete copy[name]
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

  // Bodies are not parsed: they stream through to the instance as they arrive.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload))

  const proxy = (service: string) => async (request: FastifyRequest, reply: FastifyReply) => {
    const requestId = request.id
    reply.header('x-request-id', requestId)
    const attempt = (instance: RegistryInstance) =>
      new Promise<{ status: number }>((resolve, reject) => {
        reply.from(`${instance.url.replace(/\/$/, '')}${request.url}`, {
          // Retries are ours: to another instance, not the same one again.
          retryDelay: () => null,
          rewriteRequestHeaders: (_req, headers) => ({
            ...withoutPropagated(withoutHopByHop(headers)),
            'x-forwarded-for': forwardedFor(request),
            'x-forwarded-proto': request.protocol,
            'x-forwarded-host': request.headers.host ?? '',
            'x-request-id': requestId,
          }),
          onResponse: (_req, res, response) => {
            resolve({ status: response.statusCode })
            void res.send(response.stream)
          },
          onError: (_res, { error }) => {
            reject(error)
          },
        })
      })
    try {
      await options.client.dispatch(service, { idempotent: retryable(request), retryOnStatus: false }, attempt)
    } catch (error) {
      if (reply.sent) return reply
      const failure = error instanceof UpstreamError ? upstreamFailure(error) : upstreamError('UPSTREAM_FAILED', 'The upstream service failed')
      return sendProblem(reply, failure.toProblem(request.url))
    }
    return reply
  }

  for (const route of options.routes) {
    const handler = proxy(route.service)
    // Documented by the services themselves (the gateway serves their combined document).
    app.all(route.prefix, { schema: { hide: true } }, handler)
    app.all(`${route.prefix}/*`, { schema: { hide: true } }, handler)
  }
}
