import { context, diag, DiagLogLevel, propagation, trace, type Tracer } from '@opentelemetry/api'
import type { Logger } from '../lib/logger.ts'

/** The process environment, or any map of the same shape (tests). */
type Env = Readonly<Record<string, string | undefined>>

/**
 * Tracing handed to the platform. The default is a no-op: nothing is loaded, recorded or sent,
 * and nothing a tracer does can fail a request. `tracer` is the OpenTelemetry API's proxy: it can
 * be given to the database before the SDK starts (the instance id, part of every span's resource,
 * is only known once the server listens). Server spans (@fastify/otel, wired by the app factory
 * when `enabled`) and client spans (undici's instrumentation, enabled by `start`) need no tracer.
 */
export interface Telemetry {
  readonly enabled: boolean
  readonly tracer: Tracer | undefined
  /** Starts exporting, once the instance knows its id; a failure is logged, never thrown. */
  start(options: { serviceName: string; instanceId: string; logger: Logger }): Promise<void>
  /** Flushes and stops exporting; never throws. */
  shutdown(): Promise<void>
}

export const noopTelemetry: Telemetry = {
  enabled: false,
  tracer: undefined,
  start: async () => {},
  shutdown: async () => {},
}

/** True when the standard OpenTelemetry variables ask for traces to be exported. */
export function tracingRequested(env: Env): boolean {
  if (env.OTEL_SDK_DISABLED === 'true' || env.OTEL_TRACES_EXPORTER === 'none') return false
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
}

/**
 * The ids of the span being served, for every log line (a pino mixin), so that the lines of one
 * request on every process it crossed share its trace id. An ended span is left out: a loop that
 * was started inside a request (a discovery watch) keeps that request's context long after the
 * answer, and its lines belong to no trace. A fresh object each time: pino merges into it.
 */
export function traceLogFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan()
  if (!span?.isRecording()) return {}
  const { traceId, spanId } = span.spanContext()
  return { trace_id: traceId, span_id: spanId }
}

/**
 * The longest a stop waits for the last spans to go out. A collector that is down would otherwise
 * hold the shutdown (the exporter retries for its whole timeout) past the process's own deadline,
 * and a service that drained cleanly would exit 1 for its traces' sake.
 */
const FLUSH_LIMIT_MS = 2000

/**
 * Exports traces over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces-specific
 * variable) is set; the exporter itself reads the other standard OTEL_* variables. Without them
 * the SDK is not even loaded.
 */
export function telemetryFromEnv(env: Env): Telemetry {
  if (!tracingRequested(env)) return noopTelemetry
  let stop: () => Promise<void> = async () => {}
  return {
    enabled: true,
    tracer: trace.getTracer('microservices-advanced', '0.1.0'),
    start: async (options) => {
      try {
        stop = await startSdk(env, options)
      } catch (error) {
        // Traces are worth less than the service: run untraced rather than not at all.
        options.logger.warn({ event: 'otel', err_message: error instanceof Error ? error.message : String(error) }, 'could not start tracing; running without it')
      }
    },
    shutdown: () => stop(),
  }
}

async function startSdk(env: Env, options: { serviceName: string; instanceId: string; logger: Logger }): Promise<() => Promise<void>> {
  const [{ TracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { AsyncLocalStorageContextManager }, { W3CTraceContextPropagator }, resources, { UndiciInstrumentation }] =
    await Promise.all([
      import('@opentelemetry/sdk-trace'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/context-async-hooks'),
      import('@opentelemetry/core'),
      import('@opentelemetry/resources'),
      import('@opentelemetry/instrumentation-undici'),
    ])
  const { logger } = options
  // The SDK reports export failures through diag; send them to our log, never to stderr or throw.
  diag.setLogger(
    {
      error: (message, ...args) => logger.warn({ event: 'otel', detail: args.map(String).join(' ') }, `opentelemetry: ${message}`),
      warn: (message, ...args) => logger.warn({ event: 'otel', detail: args.map(String).join(' ') }, `opentelemetry: ${message}`),
      info: () => {},
      debug: () => {},
      verbose: () => {},
    },
    DiagLogLevel.WARN,
  )
  const resource = resources
    .resourceFromAttributes({
      'service.name': env.OTEL_SERVICE_NAME || options.serviceName,
      'service.instance.id': options.instanceId,
      'service.namespace': 'microservices-advanced',
    })
    .merge(resources.detectResources({ detectors: [resources.envDetector] }))
  const delay = Number(env.OTEL_BSP_SCHEDULE_DELAY)
  const processor = new BatchSpanProcessor({
    exporter: new OTLPTraceExporter(),
    ...(Number.isFinite(delay) && delay > 0 ? { scheduledDelayMillis: delay } : {}),
  })
  const provider = new TracerProvider({ resource, spanProcessors: [processor] })
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  trace.setGlobalTracerProvider(provider)
  // Every undici call (the discovery client's, the gateway's proxying) gets a client span and
  // carries its traceparent. Heartbeats, registrations and watches run outside any request: with
  // no parent they start no trace of their own (and send no traceparent).
  const undici = new UndiciInstrumentation({ requireParentforSpans: true })
  logger.info({ event: 'tracing_enabled', endpoint: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT }, 'exporting traces over OTLP/HTTP')
  return async () => {
    undici.disable()
    let timer: NodeJS.Timeout | undefined
    const limit = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), FLUSH_LIMIT_MS).unref()
    })
    try {
      if ((await Promise.race([provider.shutdown(), limit])) === 'late') {
        logger.warn({ event: 'otel', limit_ms: FLUSH_LIMIT_MS }, 'could not flush traces in time; the last ones are lost')
      }
    } catch (error) {
      logger.warn({ event: 'otel', err_message: error instanceof Error ? error.message : String(error) }, 'could not flush traces')
    } finally {
      clearTimeout(timer)
    }
  }
}
