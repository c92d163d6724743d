import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api'
import type { FastifyInstance } from 'fastify'
import type { Metrics } from './metrics.ts'
import type { Telemetry } from './telemetry.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's server span and the context to run its work in (tracing enabled only). */
    otel: { span: Span; context: Context } | null
  }
}

/**
 * Per-request telemetry: a server span that continues the caller's W3C trace, made current for
 * the handler so that upstream calls and database queries become its children; and the request
 * count and duration by route template.
 */
export function instrument(app: FastifyInstance, options: { telemetry: Telemetry; metrics: Metrics | undefined }): void {
  const { telemetry, metrics } = options
  app.decorateRequest('otel', null)

  const tracer = telemetry.tracer
  if (tracer) {
    app.addHook('onRequest', (request, _reply, done) => {
      const parent = propagation.extract(ROOT_CONTEXT, request.headers)
      const route = request.routeOptions.url
      const span = tracer.startSpan(
        route ? `${request.method} ${route}` : request.method,
        {
          kind: SpanKind.SERVER,
          attributes: {
            'http.request.method': request.method,
            'url.path': request.url.split('?')[0] ?? request.url,
            ...(route ? { 'http.route': route } : {}),
          },
        },
        parent,
      )
      const ctx = trace.setSpan(parent, span)
      request.otel = { span, context: ctx }
      context.with(ctx, done)
    })
    // The body arrives on the socket's own async context: re-enter the span's before the handler.
    app.addHook('preHandler', (request, _reply, done) => {
      if (request.otel) context.with(request.otel.context, done)
      else done()
    })
    app.addHook('onError', (request, _reply, error, done) => {
      request.otel?.span.recordException(error)
      done()
    })
  }

  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched'
    const status = reply.statusCode
    metrics?.httpRequests.inc({ method: request.method, route, status })
    metrics?.httpDuration.observe({ method: request.method, route, status }, reply.elapsedTime / 1000)
    const span = request.otel?.span
    if (span) {
      span.setAttribute('http.response.status_code', status)
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR })
      span.end()
    }
    done()
  })
}
