import type { Logger } from '../platform/logger.ts'
import { describe, type RegistryClient, type RegistryInstance } from './registry-client.ts'

export interface ResolverOptions {
  client: RegistryClient
  logger: Logger
  /** How long a fetched list is used before it is refreshed (in the background). */
  refreshMs?: number
  /** How long an instance that refused a connection is skipped locally. */
  ejectMs?: number
  clock?: () => number
}

interface CacheEntry {
  instances: RegistryInstance[]
  fetchedAt: number
}

/**
 * Resolves a service name to its live instances through the registry, with a cache: a fresh list
 * is served from memory, a stale one is served while it is refreshed in the background, and when
 * the registry cannot be reached the last known list keeps being served.
 */
export class Resolver {
  readonly #options: Required<Omit<ResolverOptions, 'clock'>> & { clock: () => number }
  readonly #cache = new Map<string, CacheEntry>()
  readonly #inflight = new Map<string, Promise<RegistryInstance[]>>()
  readonly #ejectedUntil = new Map<string, number>()
  #registryDown = false

  constructor(options: ResolverOptions) {
    this.#options = { refreshMs: 2000, ejectMs: 5000, clock: Date.now, ...options }
  }

  /** Live instances of a service, without those recently seen failing (unless all have). */
  async resolve(serviceName: string): Promise<RegistryInstance[]> {
    const now = this.#options.clock()
    const entry = this.#cache.get(serviceName)
    let instances: RegistryInstance[]
    if (!entry) {
      instances = await this.#refresh(serviceName)
    } else {
      if (now - entry.fetchedAt >= this.#options.refreshMs) void this.#refresh(serviceName).catch(() => {})
      instances = entry.instances
    }
    const usable = instances.filter((instance) => (this.#ejectedUntil.get(instance.url) ?? 0) <= now)
    // Better to try an instance that failed a moment ago than to fail without trying.
    return usable.length > 0 ? usable : instances
  }

  /** Called when an instance refused or reset a connection: skip it for a while, refetch soon. */
  reportFailure(instance: RegistryInstance): void {
    this.#ejectedUntil.set(instance.url, this.#options.clock() + this.#options.ejectMs)
    const entry = this.#cache.get(instance.service_name)
    if (entry) entry.fetchedAt = 0
  }

  #refresh(serviceName: string): Promise<RegistryInstance[]> {
    const inflight = this.#inflight.get(serviceName)
    if (inflight) return inflight
    const { client, logger } = this.#options
    const refreshing = client
      .discover(serviceName)
      .then((instances) => {
        if (this.#registryDown) {
          this.#registryDown = false
          logger.info({ event: 'registry_back', registry: client.currentUrl }, 'registry reachable again; discovery refreshed')
        }
        this.#cache.set(serviceName, { instances, fetchedAt: this.#options.clock() })
        return instances
      })
      .catch((error: unknown) => {
        const previous = this.#cache.get(serviceName)
        if (!this.#registryDown) {
          this.#registryDown = true
          logger.warn(
            { event: 'registry_unreachable', service_name: serviceName, cached_instances: previous?.instances.length ?? 0, err_message: describe(error) },
            'registry unreachable; serving the last known instances',
          )
        }
        if (!previous) throw error
        // Keep serving the last known list; try again after another refresh period.
        this.#cache.set(serviceName, { instances: previous.instances, fetchedAt: this.#options.clock() })
        return previous.instances
      })
      .finally(() => this.#inflight.delete(serviceName))
    this.#inflight.set(serviceName, refreshing)
    return refreshing
  }
}
