import { randomUUID } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import replyFrom from '@fastify/reply-from'
import type { Tracer } from '@opentelemetry/api'
import type { RegistryInstance } from '../discovery/registry-client.ts'
import { UpstreamError, type ServiceClient } from '../discovery/service-client.ts'
import { endSpan, startClientSpan } from '../discovery/tracing.ts'
import { sendProblem, type App } from '../http/app.ts'
import { upstreamError, upstreamFailure } from '../runtime/upstream.ts'
import type { Route } from './routing.ts'

export interface GatewayRouteOptions {
  routes: readonly Route[]
  client: ServiceClient
  timeoutMs: number
  tracer: Tracer | undefined
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
    const requestId = typeof request.headers['x-request-id'] === 'string' ? request.headers['x-request-id'] : randomUUID()
    reply.header('x-request-id', requestId)
    const attempt = (instance: RegistryInstance) =>
      new Promise<{ status: number }>((resolve, reject) => {
        const { span, headers: traceHeaders } = startClientSpan(options.tracer, request.method, {
          'http.request.method': request.method,
          'server.address': instance.url,
          'peer.service': instance.service_name,
          'service.instance.id': instance.id,
        })
        reply.from(`${instance.url.replace(/\/$/, '')}${request.url}`, {
          // Retries are ours: to another instance, not the same one again.
          retryDelay: () => null,
          rewriteRequestHeaders: (_req, headers) => ({
            ...withoutHopByHop(headers),
            'x-forwarded-for': forwardedFor(request),
            'x-forwarded-proto': request.protocol,
            'x-forwarded-host': request.headers.host ?? '',
            'x-request-id': requestId,
            ...traceHeaders,
          }),
          onResponse: (_req, res, response) => {
            endSpan(span, { status: response.statusCode })
            resolve({ status: response.statusCode })
            void res.send(response.stream)
          },
          onError: (_res, { error }) => {
            endSpan(span, { error })
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
