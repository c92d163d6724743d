import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, type Dispatcher } from 'undici'
import { describe, errorCodes } from '../lib/errors.ts'
import { isTimeout, retrySafety } from './failures.ts'
import { type Logger, silentLogger } from './logger.ts'
import { noopUpstreamObserver, type UpstreamObserver, type UpstreamOutcome } from './observer.ts'
import { roundRobin, type Balancer, type SelectContext } from './balancer.ts'
import { backoffDelay } from '../lib/backoff.ts'
import { BrokenCircuitError, InstanceBreakers, type BreakerState } from './breakers.ts'
import type { RegistryInstance } from './registry-client.ts'
import type { Resolver } from './resolver.ts'
import { RetryBudget } from './retry-budget.ts'

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
  /** Failed calls, retries and breaker changes are logged here; silent by default. */
  logger?: Logger
  balancer?: Balancer
  /** Bound on one attempt: connecting, then the whole answer. */
  timeoutMs?: number
  connectTimeoutMs?: number
  /** Attempts for a request that may be retried (the first included). */
  maxAttempts?: number
  breaker?: { consecutiveFailures: number; halfOpenAfterMs: number }
  retryBudget?: { ratio: number; minPerSecond: number }
  agent?: Dispatcher
  observer?: UpstreamObserver
}

/**
 * Statuses worth another instance, for idempotent requests only: a failing instance (500), bad
 * gateway, unavailable (draining, overloaded), timeout. The retry budget bounds what this costs.
 */
const RETRYABLE_STATUSES = new Set([500, 502, 503, 504])

/**
 * What one attempt of `dispatch` gives back: the instance's status, or with `refusal` set, the
 * caller's own answer without the instance (its client went away, its body was too large): that
 * counts neither for nor against the instance (its status is below 500), and is not the instance
 * answering.
 */
export interface DispatchResult {
  status: number
  refusal?: unknown
}

/** GET, HEAD, PUT and DELETE are idempotent; a POST is when it carries an Idempotency-Key. */
export function isIdempotent(request: UpstreamRequest): boolean {
  if (request.method === 'GET' || request.method === 'HEAD' || request.method === 'PUT' || request.method === 'DELETE') return true
  return Object.keys(request.headers ?? {}).some((name) => name.toLowerCase() === 'idempotency-key')
}

/**
 * Calls a service by name through discovery. Each call: resolve the instances (kept current by a
 * watch), leave out those whose circuit breaker is open (unless all are: then try them all rather
 * than fail), pick one with the balancer, and bound the attempt by a connect and a total timeout.
 * A request that never reached an instance (the connection was refused, the name did not resolve,
 * the connection failed before a byte was written) is tried on another instance whatever its
 * method; an idempotent one also after a connection lost once it was sent, a timeout, or a
 * 500/502/503/504; each with backoff, while the retry budget allows. An instance that has never
 * answered takes one request at a time while another can serve, so that an address where nothing
 * listens does not take its share of the traffic before its breaker opens.
 */
export class ServiceClient {
  readonly #resolver: Resolver
  readonly #balancer: Balancer
  readonly #timeoutMs: number
  readonly #maxAttempts: number
  readonly #agent: Dispatcher
  readonly #ownsAgent: boolean
  readonly #logger: Logger
  readonly #observer: UpstreamObserver
  readonly #breakers = new Map<string, InstanceBreakers>()
  readonly #breakerOptions: { consecutiveFailures: number; halfOpenAfterMs: number }
  readonly #budget: RetryBudget
  readonly #outstanding = new Map<string, number>()
  readonly #select: SelectContext = { outstanding: (id) => this.#outstanding.get(id) ?? 0 }

  constructor(options: ServiceClientOptions) {
    this.#resolver = options.resolver
    this.#balancer = options.balancer ?? roundRobin()
    this.#timeoutMs = options.timeoutMs ?? 5000
    this.#maxAttempts = options.maxAttempts ?? 3
    this.#logger = options.logger ?? silentLogger
    this.#observer = options.observer ?? noopUpstreamObserver
    this.#breakerOptions = options.breaker ?? { consecutiveFailures: 5, halfOpenAfterMs: 5000 }
    this.#budget = new RetryBudget({ ratio: 0.2, minPerSecond: 5, windowMs: 10_000, ...options.retryBudget })
    this.#ownsAgent = options.agent === undefined
    this.#agent = options.agent ?? new Agent({ connect: { timeout: options.connectTimeoutMs ?? Math.min(1000, this.#timeoutMs) }, keepAliveTimeout: 10_000 })
  }

  /** Breaker state of every instance this client has called, by service. */
  breakerStates(): Array<{ service: string; instance: string; state: BreakerState }> {
    return [...this.#breakers].flatMap(([service, breakers]) => breakers.states().map(([instance, state]) => ({ service, instance, state })))
  }

  /** The live instances of a service, as calls would choose from (the first call of a service starts its watch). */
  instances(service: string): Promise<RegistryInstance[]> {
    return this.#resolver.resolve(service)
  }

  async request(service: string, request: UpstreamRequest): Promise<UpstreamResponse> {
    return this.dispatch(service, { idempotent: isIdempotent(request), retryOnStatus: true }, (instance) => this.#send(instance, request))
  }

  /**
   * The resilience around one logical call, whatever carries it (this client's own requests, or
   * the gateway's proxied ones): choose an instance (breakers, balancer, panic mode), run `send`
   * through its breaker, and retry on another instance when allowed. `send` tells whether its
   * request was written by rejecting with an AttemptFailure (./failures.ts); otherwise only the
   * error codes that a connect alone produces count as never sent.
   */
  async dispatch<R extends DispatchResult>(
    service: string,
    options: { idempotent: boolean; retryOnStatus: boolean },
    send: (instance: RegistryInstance) => Promise<R>,
  ): Promise<R> {
    let instances: RegistryInstance[]
    try {
      instances = await this.#resolver.resolve(service)
    } catch (error) {
      throw new UpstreamError('no_instances', service, `cannot discover ${service}: ${describe(error)}`, { cause: error })
    }
    if (instances.length === 0) throw new UpstreamError('no_instances', service, `no instance of ${service} is registered`)
    const breakers = this.#breakersFor(service, instances)
    const maxAttempts = this.#maxAttempts
    this.#budget.recordRequest()

    let tried: Set<string> | undefined
    let rechoices = 0
    let rechoosing = false
    let last: { error: unknown } | { response: R } | undefined
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      // A re-choice repeats its attempt: the retry (budget, backoff) was already paid for.
      if (attempt > 0 && !rechoosing) {
        if (!this.#budget.tryRetry()) {
          this.#logger.warn({ event: 'retry_budget_exhausted', service }, 'retry budget spent; not retrying')
          break
        }
        await sleep(backoffDelay(attempt - 1, { initialMs: 20, maxMs: 200 }))
      }
      rechoosing = false
      const untried = tried === undefined ? instances : instances.filter((instance) => !tried!.has(instance.id))
      // A retry goes to another instance; when every one has been tried, stop.
      if (attempt > 0 && untried.length === 0) break
      const pool = untried.length > 0 ? untried : instances
      const healthy = this.#candidates(pool, breakers)
      // Panic mode: when every candidate's breaker is open, try them anyway rather than fail.
      const panic = healthy.length === 0
      const instance = this.#balancer.select(panic ? pool : healthy, this.#select)
      if (!instance) break
      tried ??= new Set()
      tried.add(instance.id)
      try {
        const tracked = () => this.#track(instance, send)
        const response = panic
          ? await tracked()
          : await breakers.execute(
              instance.id,
              tracked,
              (r) => r.status >= 500,
              (r) => r.refusal === undefined,
            )
        last = { response }
        if (!options.retryOnStatus || !options.idempotent || !RETRYABLE_STATUSES.has(response.status)) return response
        this.#logger.warn({ event: 'upstream_retry', service, instance_id: instance.id, status: response.status, attempt: attempt + 1 }, 'upstream answered a retryable status')
      } catch (error) {
        if (error instanceof BrokenCircuitError && rechoices++ < instances.length) {
          // Its breaker opened (or began probing) since we chose it: choose again, for free.
          attempt--
          rechoosing = true
          continue
        }
        last = { error }
        const safety = retrySafety(error)
        const canRetry = safety === 'any_method' || (safety === 'idempotent_only' && options.idempotent)
        this.#logger.warn(
          {
            event: 'upstream_error',
            service,
            instance_id: instance.id,
            instance_url: instance.url,
            codes: errorCodes(error),
            // The specifics, which answers to clients leave out.
            err_message: describe(error),
            attempt: attempt + 1,
            // Whether the request may have reached the instance (`any_method`: it cannot have).
            retry_safety: safety,
            will_retry: canRetry && attempt + 1 < maxAttempts,
          },
          'upstream call failed',
        )
        if (!canRetry) break
      }
    }
    if (last && 'response' in last) return last.response
    const error = last?.error
    if (error instanceof UpstreamError) throw error
    if (isTimeout(error)) {
      throw new UpstreamError('timeout', service, `${service} did not answer within ${this.#timeoutMs} ms`, { cause: error })
    }
    throw new UpstreamError('unavailable', service, `${service} could not be reached: ${describe(error)}`, { cause: error })
  }

  /**
   * The instances that may take this call: those whose breaker allows it, less those that have
   * never answered and already have a request in flight (slow start), unless that leaves none.
   */
  #candidates(pool: readonly RegistryInstance[], breakers: InstanceBreakers): RegistryInstance[] {
    const healthy = pool.filter((instance) => breakers.available(instance.id))
    if (healthy.length < 2) return healthy
    let proven: RegistryInstance[] | undefined
    for (let k = 0; k < healthy.length; k++) {
      const instance = healthy[k]!
      const held = !breakers.answered(instance.id) && (this.#outstanding.get(instance.id) ?? 0) > 0
      if (held && proven === undefined) proven = healthy.slice(0, k)
      else if (!held) proven?.push(instance)
    }
    return proven === undefined || proven.length === 0 ? healthy : proven
  }

  /** Counts the call as outstanding while it runs, and reports its outcome and duration. */
  async #track<R extends { status: number }>(instance: RegistryInstance, send: (instance: RegistryInstance) => Promise<R>): Promise<R> {
    const started = performance.now()
    const report = (outcome: UpstreamOutcome) => this.#observer.observe(instance.service_name, instance.id, outcome, (performance.now() - started) / 1000)
    this.#outstanding.set(instance.id, (this.#outstanding.get(instance.id) ?? 0) + 1)
    try {
      const response = await send(instance)
      report(response.status >= 500 ? 'http_error' : 'success')
      return response
    } catch (error) {
      report(isTimeout(error) ? 'timeout' : 'connection_error')
      throw error
    } finally {
      const left = (this.#outstanding.get(instance.id) ?? 1) - 1
      if (left <= 0) this.#outstanding.delete(instance.id)
      else this.#outstanding.set(instance.id, left)
    }
  }

  async close(): Promise<void> {
    if (this.#ownsAgent) await this.#agent.close()
  }

  #breakersFor(service: string, instances: readonly RegistryInstance[]): InstanceBreakers {
    let breakers = this.#breakers.get(service)
    if (!breakers) {
      breakers = new InstanceBreakers({
        ...this.#breakerOptions,
        neverSent: (error) => retrySafety(error) === 'any_method',
        onStateChange: (instanceId, state) => {
          const level = state === 'open' ? 'warn' : 'info'
          this.#logger[level]({ event: 'breaker', service, instance_id: instanceId, state }, `circuit breaker ${state.replace('_', '-')}`)
        },
      })
      this.#breakers.set(service, breakers)
    }
    breakers.retain(new Set(instances.map((i) => i.id)))
    return breakers
  }

  async #send(instance: RegistryInstance, request: UpstreamRequest): Promise<UpstreamResponse> {
    const base = new URL(instance.url)
    const hasBody = request.body !== undefined
    // One bound on the whole attempt, answer body included.
    const signal = AbortSignal.timeout(this.#timeoutMs)
    try {
      const response = await this.#agent.request({
        origin: base.origin,
        path: `${base.pathname.replace(/\/$/, '')}${request.path}`,
        method: request.method,
        headers: { accept: 'application/json', ...(hasBody ? { 'content-type': 'application/json' } : {}), ...request.headers },
        body: hasBody ? JSON.stringify(request.body) : undefined,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
        signal,
      })
      const type = String(response.headers['content-type'] ?? '')
      let body: unknown
      if (/\bjson\b/.test(type)) {
        try {
          body = await response.body.json()
        } catch (error) {
          if (signal.aborted) throw error
          throw new UpstreamError('bad_response', instance.service_name, `${instance.url} answered with invalid JSON`, { cause: error })
        }
      } else {
        body = await response.body.text()
      }
      return { status: response.statusCode, body, instance }
    } catch (error) {
      // An aborted attempt is a timeout, whatever undici calls it.
      if (signal.aborted && !(error instanceof UpstreamError)) {
        throw Object.assign(new Error(`${instance.url} did not answer within ${this.#timeoutMs} ms`, { cause: error }), { code: 'ETIMEDOUT' })
      }
      throw error
    }
  }
}
