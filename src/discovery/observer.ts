/** How one call to an instance ended. */
export type UpstreamOutcome = 'success' | 'http_error' | 'connection_error' | 'timeout'

/** Where the service client reports each call (metrics, for instance); the default reports nowhere. */
export interface UpstreamObserver {
  observe(service: string, instance: string, outcome: UpstreamOutcome, seconds: number): void
}

export const noopUpstreamObserver: UpstreamObserver = { observe: () => {} }
