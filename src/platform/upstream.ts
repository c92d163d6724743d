import type { ServiceConfig } from '../config/index.ts'
import { balancerFor } from '../discovery/balancer.ts'
import type { RegistryClient } from '../discovery/registry-client.ts'
import { Resolver } from '../discovery/resolver.ts'
import { ServiceClient } from '../discovery/service-client.ts'
import type { Logger } from './logger.ts'
import { breakerMetrics, upstreamObserver, type Metrics } from './metrics.ts'
import type { ServiceParts } from './service.ts'
import type { Telemetry } from './telemetry.ts'

/**
 * A discovery-backed client for calling other services, configured from the environment
 * (balancing, timeouts, breakers, retry budget), with its metrics, its readiness details and
 * what to close at shutdown.
 */
export function upstreamClient(
  config: ServiceConfig,
  context: { registryClient: RegistryClient; logger: Logger; metrics: Metrics; telemetry: Telemetry },
): { client: ServiceClient; parts: Required<Pick<ServiceParts, 'details' | 'closers'>> } {
  const { registryClient, logger, metrics, telemetry } = context
  const resolver = new Resolver({ client: registryClient, logger })
  const client = new ServiceClient({
    resolver,
    logger,
    balancer: balancerFor(config.lbStrategy),
    timeoutMs: config.upstreamTimeoutSeconds * 1000,
    connectTimeoutMs: config.upstreamConnectTimeoutSeconds * 1000,
    breaker: { consecutiveFailures: config.breakerFailures, halfOpenAfterMs: config.breakerHalfOpenSeconds * 1000 },
    retryBudget: { ratio: config.retryBudgetPercent / 100, minPerSecond: 5 },
    tracer: telemetry.tracer,
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
