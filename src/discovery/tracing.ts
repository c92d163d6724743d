import { context, propagation, SpanKind, SpanStatusCode, trace, type Span, type Tracer } from '@opentelemetry/api'

/**
 * Starts a client span for an outgoing call and returns the headers that carry it (W3C
 * traceparent). With `onlyWithParent`, background calls (heartbeats) start no trace of their own.
 */
export function startClientSpan(
  tracer: Tracer | undefined,
  name: string,
  attributes: Record<string, string | number>,
  options: { onlyWithParent?: boolean } = {},
): { span: Span | undefined; headers: Record<string, string> } {
  const parent = context.active()
  if (!tracer || (options.onlyWithParent && !trace.getSpan(parent))) return { span: undefined, headers: {} }
  const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, parent)
  const headers: Record<string, string> = {}
  propagation.inject(trace.setSpan(parent, span), headers)
  return { span, headers }
}

export function endSpan(span: Span | undefined, outcome: { status?: number; error?: unknown }): void {
  if (!span) return
  if (outcome.status !== undefined) span.setAttribute('http.response.status_code', outcome.status)
  if (outcome.error !== undefined) {
    span.recordException(outcome.error instanceof Error ? outcome.error : String(outcome.error))
    span.setStatus({ code: SpanStatusCode.ERROR })
  } else if (outcome.status !== undefined && outcome.status >= 500) {
    span.setStatus({ code: SpanStatusCode.ERROR })
  }
  span.end()
}
