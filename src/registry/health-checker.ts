import { Agent } from 'undici'
import { errorCode } from '../lib/errors.ts'
import type { Logger } from '../lib/logger.ts'
import type { RegistryStore } from './store.ts'

export interface HealthCheckerOptions {
  store: RegistryStore
  logger: Logger
  intervalMs: number
  timeoutMs: number
  /** Consecutive failures before an instance is shown `down` (and leaves discovery). */
  failuresToDown: number
  onResult?: (outcome: 'passing' | 'failing') => void
}

/**
 * Like Consul's HTTP checks: instances that registered a `health_url` are probed on an interval;
 * after N consecutive failures (a non-2xx answer, a refused connection or a timeout) the instance
 * is `down`, and one success brings it back. A process that still heartbeats but cannot serve
 * thereby leaves discovery.
 */
export class HealthChecker {
  readonly #options: HealthCheckerOptions
  readonly #failures = new Map<string, number>()
  readonly #agent: Agent
  #timer: NodeJS.Timeout | undefined
  #running = false

  constructor(options: HealthCheckerOptions) {
    this.#options = options
    this.#agent = new Agent({ connect: { timeout: options.timeoutMs }, keepAliveTimeout: options.intervalMs * 2 })
  }

  start(): void {
    this.#timer = setInterval(() => void this.runOnce(), this.#options.intervalMs)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.#agent.close()
  }

  /** One round of probes; skipped while the previous round is still running. */
  async runOnce(): Promise<void> {
    if (this.#running) return
    this.#running = true
    try {
      const targets = this.#options.store.services().flatMap((service) => service.instances.filter((i) => i.healthUrl !== undefined))
      const seen = new Set(targets.map((t) => t.id))
      for (const id of this.#failures.keys()) if (!seen.has(id)) this.#failures.delete(id)
      await Promise.all(targets.map(async (instance) => this.#record(instance.id, instance.serviceName, instance.url, await this.#probe(instance.healthUrl!))))
    } finally {
      this.#running = false
    }
  }

  async #probe(url: string): Promise<string | undefined> {
    try {
      const response = await this.#agent.request({
        origin: new URL(url).origin,
        path: new URL(url).pathname + new URL(url).search,
        method: 'GET',
        headersTimeout: this.#options.timeoutMs,
        bodyTimeout: this.#options.timeoutMs,
      })
      await response.body.dump()
      return response.statusCode >= 200 && response.statusCode < 300 ? undefined : `answered ${response.statusCode}`
    } catch (error) {
      return errorCode(error) ?? (error instanceof Error ? error.message : String(error))
    }
  }

  #record(id: string, serviceName: string, url: string, failure: string | undefined): void {
    const { store, logger, failuresToDown, onResult } = this.#options
    onResult?.(failure === undefined ? 'passing' : 'failing')
    const count = failure === undefined ? 0 : (this.#failures.get(id) ?? 0) + 1
    this.#failures.set(id, count)
    const before = store.members(serviceName).instances.find((i) => i.id === id)?.health
    if (failure === undefined) {
      store.setHealth(id, 'passing')
      if (before === 'failing') logger.info({ event: 'health_passing', service_name: serviceName, instance_id: id, url }, 'health check passing again; instance back in discovery')
    } else if (count >= failuresToDown) {
      store.setHealth(id, 'failing')
      if (before !== 'failing') {
        logger.warn({ event: 'health_failing', service_name: serviceName, instance_id: id, url, failures: count, reason: failure }, 'health check failing; instance marked down')
      }
    }
  }
}
