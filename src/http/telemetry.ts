import { context, diag, DiagLogLevel, propagation, trace, type Tracer } from '@opentelemetry/api'
/** The process environment, or any map of the same shape (tests). */
type Env = Readonly<Record<string, string | undefined>>
import type { Logger } from '../lib/logger.ts'

/**
 * Tracing handed to the platform. The default is a no-op: nothing is loaded, recorded or sent,
 * and nothing a tracer does can fail a request. `tracer` is the OpenTelemetry API's proxy: it can
 * be given to the database and clients before the SDK starts (the instance id, part of every
 * span's resource, is only known once the server listens).
 */
export interface Telemetry {
  readonly enabled: boolean
  readonly tracer: Tracer | undefined
  /** Starts exporting, once the instance knows its id. */
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
      stop = await startSdk(env, options)
    },
    shutdown: () => stop(),
  }
}

async function startSdk(env: Env, options: { serviceName: string; instanceId: string; logger: Logger }): Promise<() => Promise<void>> {
  const [{ TracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { AsyncLocalStorageContextManager }, { W3CTraceContextPropagator }, resources] =
    await Promise.all([
      import('@opentelemetry/sdk-trace'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/context-async-hooks'),
      import('@opentelemetry/core'),
      import('@opentelemetry/resources'),
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
  logger.info({ event: 'tracing_enabled', endpoint: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT }, 'exporting traces over OTLP/HTTP')
  return async () => {
    try {
      await provider.shutdown()
    } catch (error) {
      logger.warn({ event: 'otel', err_message: error instanceof Error ? error.message : String(error) }, 'could not flush traces')
    }
  }
}
