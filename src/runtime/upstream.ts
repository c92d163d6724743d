import type { LbStrategy } from '../discovery/balancer.ts'
import { balancerFor } from '../discovery/balancer.ts'
import type { UpstreamObserver } from '../discovery/observer.ts'
import type { RegistryClient } from '../discovery/registry-client.ts'
import { Resolver } from '../discovery/resolver.ts'
import { ServiceClient, type UpstreamError } from '../discovery/service-client.ts'
import { type AppError, defineErrors } from '../http/errors.ts'
import type { Metrics } from '../http/metrics.ts'
import type { Logger } from '../lib/logger.ts'
import type { ServiceParts } from './service.ts'

/** What a caller of other services answers when a call fails (the order service, the gateway). */
export const upstreamError = defineErrors({
  NO_HEALTHY_INSTANCE: { status: 503, title: 'No healthy instance of the upstream service' },
  UPSTREAM_UNAVAILABLE: { status: 503, title: 'Upstream service unavailable' },
  UPSTREAM_FAILED: { status: 502, title: 'Upstream service failed' },
  UPSTREAM_TIMEOUT: { status: 504, title: 'Upstream service timed out' },
})

const FAILURE_CODES = {
  no_instances: 'NO_HEALTHY_INSTANCE',
  unavailable: 'UPSTREAM_UNAVAILABLE',
  timeout: 'UPSTREAM_TIMEOUT',
  bad_response: 'UPSTREAM_FAILED',
} as const satisfies Record<UpstreamError['failure'], string>

// What a client is told: the service's name and what went wrong, never the error's own message,
// which names instances (addresses), registries and library codes (ECONNREFUSED, UND_ERR_...).
// Those stay in the log: the service client logs every failed attempt, the resolver the registry.
const FAILURE_DETAILS = {
  no_instances: (service: string) => `No healthy instance of the ${service} service is available`,
  unavailable: (service: string) => `The ${service} service could not be reached`,
  timeout: (service: string) => `The ${service} service did not answer in time`,
  bad_response: (service: string) => `The ${service} service answered with an invalid response`,
} as const satisfies Record<UpstreamError['failure'], (service: string) => string>

/** The answer for a call that got no usable HTTP answer: 503, 502 or 504 with a stable code and a generic detail. */
export function upstreamFailure(error: UpstreamError): AppError {
  const failure = upstreamError(FAILURE_CODES[error.failure], FAILURE_DETAILS[error.failure](error.service))
  // Kept for whoever logs the error; never part of the answer.
  failure.cause = error
  return failure
}

/** How calls to other services behave (from the environment: balancing, timeouts, breakers, retry budget). */
export interface UpstreamOptions {
  lbStrategy: LbStrategy
  upstreamTimeoutSeconds: number
  upstreamConnectTimeoutSeconds: number
  breakerFailures: number
  breakerHalfOpenSeconds: number
  retryBudgetPercent: number
}

/** Reports each call as `upstream_requests_total` and `upstream_request_duration_seconds`. */
function upstreamObserver(metrics: Metrics): UpstreamObserver {
  return {
    observe(service, instance, outcome, seconds) {
      metrics.upstreamRequests.inc({ service, instance, outcome })
      metrics.upstreamDuration.observe({ service, outcome }, seconds)
    },
  }
}

/** Circuit breaker state per upstream instance: 0 closed, 1 half-open, 2 open. */
function breakerMetrics(metrics: Metrics, client: ServiceClient): void {
  const value = { closed: 0, half_open: 1, open: 2 } as const
  metrics.gauge('upstream_breaker_state', 'Circuit breaker per upstream instance: 0 closed, 1 half-open, 2 open', ['service', 'instance'], (gauge) => {
    gauge.reset()
    for (const { service, instance, state } of client.breakerStates()) gauge.set({ service, instance }, value[state])
  })
}

/**
 * A discovery-backed client for calling other services, with its metrics, its readiness details
 * and what to close at shutdown.
 */
export function upstreamClient(
  options: UpstreamOptions,
  context: { registryClient: RegistryClient; logger: Logger; metrics: Metrics },
): { client: ServiceClient; parts: Required<Pick<ServiceParts, 'details' | 'closers'>> } {
  const { registryClient, logger, metrics } = context
  const resolver = new Resolver({ client: registryClient, logger })
  const client = new ServiceClient({
    resolver,
    logger,
    balancer: balancerFor(options.lbStrategy),
    timeoutMs: options.upstreamTimeoutSeconds * 1000,
    connectTimeoutMs: options.upstreamConnectTimeoutSeconds * 1000,
    breaker: { consecutiveFailures: options.breakerFailures, halfOpenAfterMs: options.breakerHalfOpenSeconds * 1000 },
    retryBudget: { ratio: options.retryBudgetPercent / 100, minPerSecond: 5 },
    observer: upstreamObserver(metrics),
  })
  breakerMetrics(metrics, client)
  return {
    client,
    parts: {
      details: () => ({ discovery: resolver.status() }),
      closers: [
        { name: 'stop watches', run: () => resolver.close() },
        { name: 'close upstream client', run: () => client.close() },
      ],
    },
  }
}
