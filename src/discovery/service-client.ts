import { Agent } from 'undici'
import type { Tracer } from '@opentelemetry/api'
import type { Logger } from '../platform/logger.ts'
import { noopUpstreamObserver, type UpstreamObserver, type UpstreamOutcome } from '../platform/metrics.ts'
import { endSpan, startClientSpan } from './tracing.ts'
import { roundRobin, type Balancer } from './balancer.ts'
import { describe, type RegistryInstance } from './registry-client.ts'
import type { Resolver } from './resolver.ts'

export type UpstreamFailure = 'no_instances' | 'unavailable' | 'timeout' | 'bad_response'

/** A call to another service failed before it produced a usable HTTP answer. */
export class UpstreamError extends Error {
  readonly failure: UpstreamFailure
  readonly service: string
  constructor(failure: UpstreamFailure, service: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'UpstreamError'
    this.failure = failure
    this.service = service
  }
}

export interface UpstreamRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  path: string
  headers?: Record<string, string>
  body?: unknown
}

export interface UpstreamResponse {
  status: number
  body: unknown
  instance: RegistryInstance
}

export interface ServiceClientOptions {
  resolver: Resolver
  logger: Logger
  balancer?: Balancer
  /** Bound on connecting, on the response headers and on the body, each. */
  timeoutMs?: number
  agent?: Agent
  /** Traces each call and propagates the trace to the callee when given. */
  tracer?: Tracer
  observer?: UpstreamObserver
}

// The connection never reached the application, or broke before an answer: another instance may
// serve the request. Only idempotent requests are retried on these.
const RETRYABLE = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT',
])
const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT'])

function errorCode(error: unknown): string | undefined {
  let current: unknown = error
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === 'string') return code
    current = current.cause
  }
  return undefined
}

const isIdempotent = (request: UpstreamRequest) =>
  request.method === 'GET' || request.method === 'HEAD' || request.method === 'PUT' || request.method === 'DELETE'

/**
 * Calls a service by name: resolves its instances through the registry, picks one with the
 * balancer, and, when an instance refuses or drops the connection, retries an idempotent request
 * once on another instance, so one dead instance costs callers nothing.
 */
export class ServiceClient {
  readonly #resolver: Resolver
  readonly #balancer: Balancer
  readonly #timeoutMs: number
  readonly #agent: Agent
  readonly #ownsAgent: boolean
  readonly #logger: Logger
  readonly #tracer: Tracer | undefined
  readonly #observer: UpstreamObserver

  constructor(options: ServiceClientOptions) {
    this.#tracer = options.tracer
    this.#observer = options.observer ?? noopUpstreamObserver
    this.#resolver = options.resolver
    this.#balancer = options.balancer ?? roundRobin()
    this.#timeoutMs = options.timeoutMs ?? 5000
    this.#logger = options.logger
    this.#ownsAgent = options.agent === undefined
    this.#agent = options.agent ?? new Agent({ connect: { timeout: this.#timeoutMs }, keepAliveTimeout: 10_000 })
  }

  async request(service: string, request: UpstreamRequest): Promise<UpstreamResponse> {
    let instances: RegistryInstance[]
    try {
      instances = await this.#resolver.resolve(service)
    } catch (error) {
      throw new UpstreamError('no_instances', service, `cannot discover ${service}: ${describe(error)}`, { cause: error })
    }
    const maxAttempts = isIdempotent(request) ? 2 : 1
    const tried = new Set<string>()
    let lastError: unknown
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const candidates = instances.filter((instance) => !tried.has(instance.url))
      const instance = this.#balancer.select(candidates)
      if (!instance) break
      tried.add(instance.url)
      try {
        const response = await this.#send(instance, request)
        // 503 from an instance means "not me, not now" (it is draining or overloaded): another
        // instance may serve an idempotent request.
        if (response.status === 503 && attempt + 1 < maxAttempts && instances.length > tried.size) {
          this.#resolver.reportFailure(instance)
          this.#logger.warn({ event: 'upstream_unavailable', service, instance_url: instance.url, attempt: attempt + 1, will_retry: true }, 'upstream instance answered 503')
          lastError = new UpstreamError('unavailable', service, `${instance.url} answered 503`)
          continue
        }
        return response
      } catch (error) {
        lastError = error
        const code = errorCode(error)
        if (code !== undefined && RETRYABLE.has(code)) this.#resolver.reportFailure(instance)
        const retryable = code !== undefined && RETRYABLE.has(code)
        this.#logger.warn(
          { event: 'upstream_error', service, instance_url: instance.url, code, attempt: attempt + 1, will_retry: retryable && attempt + 1 < maxAttempts },
          'upstream call failed',
        )
        if (!retryable) break
      }
    }
    if (lastError === undefined) {
      throw new UpstreamError('no_instances', service, `no instance of ${service} is registered`)
    }
    const code = errorCode(lastError)
    if (code !== undefined && TIMEOUTS.has(code)) {
      throw new UpstreamError('timeout', service, `${service} did not answer within ${this.#timeoutMs} ms`, { cause: lastError })
    }
    if (lastError instanceof UpstreamError) throw lastError
    throw new UpstreamError('unavailable', service, `${service} could not be reached: ${describe(lastError)}`, { cause: lastError })
  }

  async close(): Promise<void> {
    if (this.#ownsAgent) await this.#agent.close()
  }

  async #send(instance: RegistryInstance, request: UpstreamRequest): Promise<UpstreamResponse> {
    const started = performance.now()
    const { span, headers: traceHeaders } = startClientSpan(this.#tracer, request.method, {
      'http.request.method': request.method,
      'server.address': instance.url,
      'url.full': `${instance.url}${request.path}`,
      'peer.service': instance.service_name,
      'service.instance.id': instance.id,
    })
    const report = (outcome: UpstreamOutcome) =>
      this.#observer.observe(instance.service_name, instance.id, outcome, (performance.now() - started) / 1000)
    try {
      const response = await this.#exchange(instance, request, traceHeaders)
      report(response.status >= 500 ? 'http_error' : 'success')
      endSpan(span, { status: response.status })
      return response
    } catch (error) {
      const code = errorCode(error)
      report(code !== undefined && TIMEOUTS.has(code) ? 'timeout' : 'connection_error')
      endSpan(span, { error })
      throw error
    }
  }

  async #exchange(instance: RegistryInstance, request: UpstreamRequest, traceHeaders: Record<string, string>): Promise<UpstreamResponse> {
    const base = new URL(instance.url)
    const hasBody = request.body !== undefined
    const response = await this.#agent.request({
      origin: base.origin,
      path: `${base.pathname.replace(/\/$/, '')}${request.path}`,
      method: request.method,
      headers: { accept: 'application/json', ...(hasBody ? { 'content-type': 'application/json' } : {}), ...request.headers, ...traceHeaders },
      body: hasBody ? JSON.stringify(request.body) : undefined,
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
    })
    const type = String(response.headers['content-type'] ?? '')
    let body: unknown
    if (/\bjson\b/.test(type)) {
      try {
        body = await response.body.json()
      } catch (error) {
        throw new UpstreamError('bad_response', instance.service_name, `${instance.url} answered with invalid JSON`, { cause: error })
      }
    } else {
      body = await response.body.text()
    }
    return { status: response.statusCode, body, instance }
  }
}
