import { setTimeout as sleep } from 'node:timers/promises'
import { silentLogger, type Logger } from './logger.ts'
import { backoffDelay, jitter, type BackoffOptions, DEFAULT_BACKOFF } from '../lib/backoff.ts'
import type { ReportedStatus } from '../protocol/registry.ts'
import { describe } from '../lib/errors.ts'
import { RegistryAuthError, type RegistryClient, type RegistryInstance } from './registry-client.ts'

export type RegistrationState = { kind: 'idle' } | { kind: 'registering'; attempt: number } | { kind: 'registered'; instance: RegistryInstance } | { kind: 'stopped' }

export interface RegistrationOptions {
  client: RegistryClient
  serviceName: string
  url: string
  metadata?: Record<string, string>
  /** The registry probes this URL (Consul-style HTTP check) when given. */
  healthUrl?: string
  /** What the instance says of itself; sent with every registration and heartbeat. */
  status?: () => ReportedStatus
  heartbeatIntervalMs: number
  /** Registrations, heartbeat failures and deregistration are logged here; silent by default. */
  logger?: Logger
  backoff?: BackoffOptions
  /**
   * The registry refused the token (401/403) before this instance was ever registered: a
   * configuration mistake, not an outage. Registration stops; the caller decides (a service exits).
   * Without this, registering is retried with backoff as for an outage.
   */
  onRefused?: (error: RegistryAuthError) => void
}

/**
 * Keeps one instance registered: registers (retrying with backoff while the registry is
 * unreachable), heartbeats on an unref'd, jittered timer, registers again when a heartbeat is
 * answered 404 (the registry restarted or evicted us), and deregisters on stop.
 */
export class Registration {
  readonly #options: RegistrationOptions & { logger: Logger }
  #state: RegistrationState = { kind: 'idle' }
  #timer: NodeJS.Timeout | undefined
  #registryDown = false
  #hasRegistered = false
  /** A registration request on its way: it may land after `stop()` began. */
  #inFlight: Promise<unknown> | undefined
  readonly #waiters = new Set<(registered: boolean) => void>()
  readonly #stopped = new AbortController()

  constructor(options: RegistrationOptions) {
    this.#options = { ...options, logger: options.logger ?? silentLogger }
  }

  get state(): RegistrationState {
    return this.#state
  }

  get isRegistered(): boolean {
    return this.#state.kind === 'registered'
  }

  /** Starts registering in the background; the service serves meanwhile. */
  start(): void {
    if (this.#state.kind !== 'idle') return
    this.#state = { kind: 'registering', attempt: 0 }
    void this.#register()
  }

  /** True once the registry has accepted this instance, and through later registry outages. */
  get hasRegistered(): boolean {
    return this.#hasRegistered
  }

  /** Resolves once registered (or stopped); for start-up logs and tests. */
  whenRegistered(timeoutMs: number): Promise<boolean> {
    if (this.#state.kind === 'registered' || this.#state.kind === 'stopped') return Promise.resolve(this.#state.kind === 'registered')
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(settle)
        resolve(false)
      }, timeoutMs)
      const settle = (registered: boolean) => {
        clearTimeout(timer)
        resolve(registered)
      }
      this.#waiters.add(settle)
    })
  }

  #setState(state: RegistrationState): void {
    this.#state = state
    if (state.kind === 'registered' || state.kind === 'stopped') {
      for (const waiter of this.#waiters) waiter(state.kind === 'registered')
      this.#waiters.clear()
    }
  }

  /** Stops heartbeating, reports `draining`, and deregisters; never throws. */
  async stop(): Promise<void> {
    let registered = this.#state.kind === 'registered'
    const inFlight = this.#inFlight
    this.#setState({ kind: 'stopped' })
    this.#stopped.abort()
    clearTimeout(this.#timer)
    // A registration already sent may still be accepted (at start-up, or re-registering after a
    // 404): wait for its answer, or the instance would stay registered until its TTL ran out.
    if (!registered && inFlight)
      registered = await inFlight.then(
        () => true,
        () => false,
      )
    if (!registered) return
    const { client, serviceName, url, logger } = this.#options
    try {
      // Say "draining" first (watchers drop the instance at once and dashboards show why), then leave.
      await client.heartbeat({ service_name: serviceName, url, status: 'draining' })
      const removed = await client.deregister({ service_name: serviceName, url })
      logger.info({ event: 'deregistered', service_name: serviceName, url, found: removed }, 'deregistered from the registry')
    } catch (error) {
      logger.warn({ event: 'deregister_failed', err_message: describe(error) }, 'could not deregister; the registry will evict this instance after its TTL')
    }
  }

  async #register(): Promise<void> {
    const { client, serviceName, url, metadata, healthUrl, logger } = this.#options
    while (this.#state.kind === 'registering') {
      const attempt = this.#state.attempt
      try {
        const request = client.register({
          service_name: serviceName,
          url,
          status: this.#status(),
          ...(metadata ? { metadata } : {}),
          ...(healthUrl ? { health_url: healthUrl } : {}),
        })
        this.#inFlight = request
        const instance = await request.finally(() => (this.#inFlight = undefined))
        if (this.#state.kind !== 'registering') return
        this.#setState({ kind: 'registered', instance })
        this.#hasRegistered = true
        this.#registryDown = false
        logger.info(
          { event: 'registered', service_name: serviceName, instance_id: instance.id, url, registry: client.currentUrl, attempts: attempt + 1 },
          'registered with the registry',
        )
        this.#scheduleHeartbeat()
        return
      } catch (error) {
        if (this.#state.kind !== 'registering') return
        if (error instanceof RegistryAuthError && !this.#hasRegistered && this.#options.onRefused) {
          this.#setState({ kind: 'stopped' })
          this.#options.onRefused(error)
          return
        }
        const delay = backoffDelay(attempt, this.#options.backoff ?? DEFAULT_BACKOFF)
        // One warning when the outage starts, then debug lines, so a long outage does not flood the log.
        const refused = error instanceof RegistryAuthError
        const level = attempt === 0 ? (refused ? 'error' : 'warn') : 'debug'
        logger[level](
          { event: refused ? 'register_refused' : 'register_failed', attempt: attempt + 1, retry_in_ms: delay, err_message: describe(error) },
          refused ? 'the registry refused our token; will retry' : 'registry unreachable; will retry',
        )
        await sleep(delay, undefined, { signal: this.#stopped.signal, ref: false }).catch(() => {})
        if (this.#state.kind === 'registering') this.#state = { kind: 'registering', attempt: attempt + 1 }
      }
    }
  }

  #status(): ReportedStatus {
    return this.#options.status?.() ?? 'up'
  }

  #scheduleHeartbeat(): void {
    this.#timer = setTimeout(() => void this.#beat(), jitter(this.#options.heartbeatIntervalMs))
    this.#timer.unref()
  }

  async #beat(): Promise<void> {
    if (this.#state.kind !== 'registered') return
    const { client, serviceName, url, logger } = this.#options
    try {
      const instance = await client.heartbeat({ service_name: serviceName, url, status: this.#status() })
      if (this.#state.kind !== 'registered') return
      if (this.#registryDown) {
        this.#registryDown = false
        logger.info({ event: 'registry_back', registry: client.currentUrl }, 'registry reachable again')
      }
      if (!instance) {
        logger.warn({ event: 'heartbeat_unknown', service_name: serviceName, url }, 'registry does not know this instance; registering again')
        this.#state = { kind: 'registering', attempt: 0 }
        void this.#register()
        return
      }
      this.#state = { kind: 'registered', instance }
    } catch (error) {
      if (this.#state.kind !== 'registered') return
      if (!this.#registryDown) {
        this.#registryDown = true
        if (error instanceof RegistryAuthError) {
          logger.error(
            { event: 'heartbeat_refused', err_message: describe(error) },
            'the registry refused our heartbeat token; will keep trying (the instance expires after the TTL)',
          )
        } else {
          logger.warn({ event: 'heartbeat_failed', err_message: describe(error) }, 'heartbeat failed; registry unreachable, will keep trying')
        }
      }
    }
    this.#scheduleHeartbeat()
  }
}
