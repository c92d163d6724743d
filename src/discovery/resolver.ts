import { setTimeout as sleep } from 'node:timers/promises'
import { context, ROOT_CONTEXT } from '@opentelemetry/api'
import { backoffDelay, type BackoffOptions } from '../lib/backoff.ts'
import { silentLogger, type Logger } from './logger.ts'
import { describe } from '../lib/errors.ts'
import { RegistryAuthError, RegistryUnavailableError, type DiscoveryView, type RegistryClient, type RegistryInstance } from './registry-client.ts'

export interface ResolverOptions {
  client: RegistryClient
  logger?: Logger
  /** Between failed watches while the registry is unreachable. */
  backoff?: BackoffOptions
  /** Longest a watch waits on the registry before it asks again. */
  waitMs?: number
  /** How long the first `resolve` of a service waits for the registry. */
  firstAnswerMs?: number
  /** Called when a service's view changes (a new list of instances). */
  onChange?: (serviceName: string, instances: readonly RegistryInstance[]) => void
}

interface View {
  instances: RegistryInstance[]
  index: number
  epoch: string
  /** Kept from before a registry restart, until its warm-up ends. */
  provisional: boolean
  /** The warm-up the registry had left when it last answered. */
  warmupMs: number
  updatedAt: number
}

export interface ResolverStatus {
  registryReachable: boolean
  services: Record<string, { instances: number; epoch: string; provisional: boolean; updated_at: string }>
}

/**
 * Resolves service names to instances and keeps each one current through a watch (a blocking
 * query on the registry), so a registration or removal reaches the client as soon as the registry
 * knows it. It keeps serving the last known instances while the registry is unreachable, for as
 * long as it is down, and does not let a just-restarted registry, which knows nobody yet, empty a
 * good view: until the registry's warm-up ends, new answers add to the view but do not remove.
 */
export class Resolver {
  readonly #client: RegistryClient
  readonly #logger: Logger
  readonly #waitMs: number
  readonly #firstAnswerMs: number
  readonly #onChange: ResolverOptions['onChange']
  readonly #backoff: BackoffOptions
  readonly #views = new Map<string, View>()
  readonly #first = new Map<string, Promise<void>>()
  readonly #abort = new AbortController()
  #registryReachable = true

  constructor(options: ResolverOptions) {
    this.#client = options.client
    this.#logger = options.logger ?? silentLogger
    this.#backoff = options.backoff ?? { initialMs: 100, maxMs: 5000 }
    this.#waitMs = options.waitMs ?? 30_000
    this.#firstAnswerMs = options.firstAnswerMs ?? 3000
    this.#onChange = options.onChange
  }

  /** Live instances of a service: from memory once its watch has an answer. */
  async resolve(serviceName: string): Promise<RegistryInstance[]> {
    const view = this.#views.get(serviceName)
    if (view) return view.instances
    let first = this.#first.get(serviceName)
    if (!first) {
      first = this.#startWatch(serviceName)
      this.#first.set(serviceName, first)
    }
    await first
    const answered = this.#views.get(serviceName)
    if (!answered) throw new RegistryUnavailableError(this.#client.currentUrl, `no answer about ${serviceName} yet`)
    return answered.instances
  }

  status(): ResolverStatus {
    return {
      registryReachable: this.#registryReachable,
      services: Object.fromEntries(
        [...this.#views].map(([name, view]) => [
          name,
          { instances: view.instances.length, epoch: view.epoch, provisional: view.provisional, updated_at: new Date(view.updatedAt).toISOString() },
        ]),
      ),
    }
  }

  /** Stops every watch. */
  close(): void {
    this.#abort.abort()
  }

  /** Starts the watch loop; resolves on its first answer or first failure (or a time limit). */
  #startWatch(serviceName: string): Promise<void> {
    return new Promise<void>((settled) => {
      const limit = setTimeout(settled, this.#firstAnswerMs)
      limit.unref()
      const done = () => {
        clearTimeout(limit)
        settled()
      }
      // The loop outlives the request that asked first: run it outside that request's trace (its
      // long polls would otherwise be spans of a trace that ended long ago).
      context.with(ROOT_CONTEXT, () => void this.#watch(serviceName, done))
    })
  }

  async #watch(serviceName: string, firstDone: () => void): Promise<void> {
    let failures = 0
    while (!this.#abort.signal.aborted) {
      const view = this.#views.get(serviceName)
      try {
        const answer = await this.#client.watch(serviceName, view ? { index: view.index, epoch: view.epoch, waitMs: this.#nextWaitMs(view) } : undefined, this.#abort.signal)
        failures = 0
        this.#reachable(true)
        this.#apply(serviceName, answer)
        firstDone()
      } catch (error) {
        if (this.#abort.signal.aborted) return
        firstDone()
        this.#reachable(false, serviceName, error)
        // Abortable, and the abort listener goes with the timer (one per failed round would pile up).
        await sleep(backoffDelay(failures++, this.#backoff), undefined, { signal: this.#abort.signal }).catch(() => {})
      }
    }
  }

  /**
   * A provisional view must hear when the warm-up ends even if nothing else changes. The registry
   * cuts a blocking query short at the end of its warm-up, but a query that arrives just after it
   * (the last answer said "1 ms left") would otherwise wait the whole interval: so ask for no
   * longer than the warm-up the registry reported.
   */
  #nextWaitMs(view: View): number {
    return view.provisional ? Math.min(this.#waitMs, Math.max(1, view.warmupMs)) : this.#waitMs
  }

  #apply(serviceName: string, answer: DiscoveryView): void {
    const previous = this.#views.get(serviceName)
    const restarted = previous !== undefined && previous.epoch !== answer.epoch
    const warming = answer.warmupMs > 0
    let instances = answer.instances
    let provisional = false
    if (previous && warming && (restarted || previous.provisional)) {
      // A registry that has just started knows only who has re-registered so far: keep the
      // instances we knew that it has not heard from yet, until its warm-up ends.
      const known = new Set(answer.instances.map((i) => i.url))
      const kept = previous.instances.filter((i) => !known.has(i.url))
      instances = [...answer.instances, ...kept]
      provisional = kept.length > 0
      if (restarted) {
        this.#logger.info(
          { event: 'registry_epoch_changed', service_name: serviceName, epoch: answer.epoch, kept_instances: kept.length, warmup_ms: answer.warmupMs },
          'registry restarted; keeping known instances until its warm-up ends',
        )
      }
    }
    const changed =
      !previous ||
      previous.instances.length !== instances.length ||
      previous.instances.some((instance, k) => instance.url !== instances[k]?.url || instance.status !== instances[k]?.status)
    this.#views.set(serviceName, { instances, index: answer.index, epoch: answer.epoch, provisional, warmupMs: answer.warmupMs, updatedAt: Date.now() })
    if (changed) this.#onChange?.(serviceName, instances)
  }

  #reachable(reachable: boolean, serviceName?: string, error?: unknown): void {
    if (reachable === this.#registryReachable) return
    this.#registryReachable = reachable
    if (reachable) {
      this.#logger.info({ event: 'registry_back', registry: this.#client.currentUrl }, 'registry reachable again; watches resumed')
    } else if (error instanceof RegistryAuthError) {
      // Not an outage: reads need a token (the registry's REGISTRY_READ_TOKEN) this client lacks.
      this.#logger.error(
        { event: 'discovery_refused', service_name: serviceName, status: error.status, code: error.code, err_message: describe(error) },
        "the registry refused this client's token for discovery; serving the last known instances",
      )
    } else {
      this.#logger.warn(
        { event: 'registry_unreachable', service_name: serviceName, cached_instances: this.#views.get(serviceName ?? '')?.instances.length ?? 0, err_message: describe(error) },
        'registry unreachable; serving the last known instances',
      )
    }
  }
}
