import { createRequire } from 'node:module'
import { context, isSpanContextValid, trace } from '@opentelemetry/api'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { HotCount, Metrics } from './metrics.ts'
import type { Telemetry } from './telemetry.ts'

/**
 * Per-request telemetry: the request count and duration by route template; and, only when tracing
 * is enabled (otherwise nothing is loaded and no hook added), a server span per request from
 * @fastify/otel that continues the caller's W3C trace, made current for the handler so that its
 * upstream calls and database queries become its children.
 */
export function instrument(app: FastifyInstance, options: { telemetry: Telemetry; metrics: Metrics | undefined }): void {
  const { telemetry, metrics } = options
  if (telemetry.enabled) traceRequests(app)

  // The count of each (method, route template, status) is a plain number folded into the counter
  // at scrape time (prom-client hashes the labels on every increment); the duration still goes
  // through prom-client. The keys are bounded: Node's parser takes known methods only, routes are
  // templates, statuses few.
  const counts = new Map<string, { count: HotCount; labels: Readonly<Record<'method' | 'route' | 'status', string | number>> }>()
  app.addHook('onResponse', function countRequest(request, reply, done) {
    if (metrics) {
      const route = request.routeOptions.url ?? 'unmatched'
      const status = reply.statusCode
      const key = `${request.method} ${status} ${route}`
      let entry = counts.get(key)
      if (entry === undefined) {
        const labels = { method: request.method, route, status }
        entry = { count: metrics.hotRequestCount(labels), labels }
        counts.set(key, entry)
      }
      entry.count.inc()
      metrics.httpDuration.observe(entry.labels, reply.elapsedTime / 1000)
    }
    done()
  })
}

function traceRequests(app: FastifyInstance): void {
  // Synchronous, like the app factory; CommonJS, so require is the plain way to load it lazily.
  const { FastifyOtelInstrumentation } = createRequire(import.meta.url)('@fastify/otel') as typeof import('@fastify/otel')
  const instrumentation = new FastifyOtelInstrumentation({
    // One span per request: spans per hook and handler would stand between the request's span and
    // the calls it makes, and tell nothing more.
    instrumentHooks: false,
    instrumentHandler: false,
    requestHook: (span, request) => {
      const route = request.routeOptions.url
      span.updateName(route ? `${request.method} ${route}` : request.method)
      // The semantic conventions keep the query out of url.path (the plugin puts the raw URL there).
      // The query itself is not recorded: like a log line, a span must not carry what a query
      // string may hold (tokens, personal data).
      const query = request.url.indexOf('?')
      if (query >= 0) span.setAttribute('url.path', request.url.slice(0, query))
    },
  })
  // The plugin is CommonJS and so loads the API's CommonJS copy, whose proxy provider never hears
  // of the SDK that telemetry starts later through this (ESM) copy: hand it ours, which will.
  instrumentation.setTracerProvider(trace.getTracerProvider())
  // Applied now rather than through app.register, which avvio runs only after the routes declared
  // directly on the app: the plugin's onRoute hook, which ends each route's span, would miss them.
  // (The plugin is fastify-plugin style, so applying it to the root is what registering does.)
  instrumentation.plugin()(app, {}, (error) => {
    if (error) throw error
  })
  // A body arrives on the socket's own async context, not the request span's: re-enter it before
  // the handler (the handler-span option would do it too, at the cost of a span per request).
  app.addHook('preHandler', (request, _reply, done) => {
    const ctx = request.opentelemetry().context
    if (ctx) context.with(ctx, done)
    else done()
  })
}

/**
 * The trace and span ids of the request's server span (tracing enabled), for its request log line:
 * that line is written once the response is done, outside the request's context.
 */
export function requestTraceFields(request: FastifyRequest): { trace_id: string; span_id: string } | undefined {
  // Typed as always there (the plugin's declaration), but only decorated when tracing is enabled.
  if (typeof request.opentelemetry !== 'function') return undefined
  try {
    const ctx = request.opentelemetry().context
    const spanContext = ctx ? trace.getSpan(ctx)?.spanContext() : undefined
    // Invalid (all zeros) while the SDK has not started yet: no ids rather than false ones.
    if (!spanContext || !isSpanContextValid(spanContext)) return undefined
    return { trace_id: spanContext.traceId, span_id: spanContext.spanId }
  } catch {
    // A request Fastify refused before routing has no route options to ask: it has no span either.
    return undefined
  }
}
