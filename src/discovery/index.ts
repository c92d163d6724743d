// The discovery client, as a library for any Node service (this repository's services use it
// through the runtime; nothing here depends on the app platform). Explicit exports: what is not
// listed here is internal.
export { balancerFor, LB_STRATEGIES, leastOutstanding, random, roundRobin, weighted, type Balancer, type Candidate, type LbStrategy, type SelectContext } from './balancer.ts'
export { BrokenCircuitError, type BreakerState } from './breakers.ts'
export { silentLogger, type Logger } from './logger.ts'
export { noopUpstreamObserver, type UpstreamObserver, type UpstreamOutcome } from './observer.ts'
export { Registration, type RegistrationOptions, type RegistrationState } from './registration.ts'
export { RegistryAuthError, RegistryClient, RegistryUnavailableError, type DiscoveryView, type RegistryClientOptions, type RegistryInstance } from './registry-client.ts'
export { Resolver, type ResolverOptions, type ResolverStatus } from './resolver.ts'
export { isIdempotent, ServiceClient, UpstreamError, type ServiceClientOptions, type UpstreamFailure, type UpstreamRequest, type UpstreamResponse } from './service-client.ts'
