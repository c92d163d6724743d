import { isIPv6 } from 'node:net'
import type { Agent } from 'undici'
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
  /** The most probes in flight at once; default 16. */
  concurrency?: number
  /**
   * Hosts a `health_url` may name besides its instance's own (REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS).
   * An instance whose health URL names any other host is never probed.
   */
  allowedHosts?: readonly string[]
  onResult?: (outcome: 'passing' | 'failing') => void
}

/** How much of a health answer's body is read; a longer one is cut off (its status still counts). */
const MAX_BODY_BYTES = 4096

/** A hostname as `URL` spells it (lower case, IPv6 in brackets), or undefined when it is none. */
function canonicalHost(host: string): string | undefined {
  const bare = host.trim().replace(/^\[(.*)\]$/, '$1')
  if (!isIPv6(bare) && !/^[A-Za-z0-9._-]+$/.test(bare)) return undefined
  try {
    return new URL(`http://${isIPv6(bare) ? `[${bare}]` : bare}/`).hostname
  } catch {
    return undefined
  }
}

/**
 * Whether a registration's `health_url` may be probed: it must name the instance's own host (any
 * port) or one of `allowedHosts` (exact hostnames), so that the registry cannot be used to make
 * requests to arbitrary hosts on its network.
 */
export function healthUrlAllowed(instanceUrl: string, healthUrl: string, allowedHosts: readonly string[]): boolean {
  let instanceHost: string
  let healthHost: string
  try {
    instanceHost = new URL(instanceUrl).hostname
    healthHost = new URL(healthUrl).hostname
  } catch {
    return false
  }
  if (healthHost === '') return false
  if (healthHost === instanceHost) return true
  return allowedHosts.some((host) => canonicalHost(host) === healthHost)
}

/**
 * Like Consul's HTTP checks: instances that registered a `health_url` are probed on an interval;
 * after N consecutive failures (a non-2xx answer, a refused connection or a timeout) the instance
 * is `down`, and one success brings it back. A process that still heartbeats but cannot serve
 * thereby leaves discovery. At most `concurrency` probes are in flight, and each has `timeoutMs` for
 * its whole answer (connect, headers and body), so one slow or trickling endpoint costs one slot
 * for at most that long.
 */
export class HealthChecker {
  readonly #options: HealthCheckerOptions
  readonly #failures = new Map<string, number>()
  /** Instances skipped because their health URL names a host that is not allowed (warned once). */
  readonly #refused = new Set<string>()
  /** Made for the first probe: a registry whose instances name no health URL never loads undici. */
  #agent: Promise<Agent> | undefined
  /** Aborted by `stop`: probes in flight end at once, and no more start. */
  readonly #stopping = new AbortController()
  #timer: NodeJS.Timeout | undefined
  #running = false

  constructor(options: HealthCheckerOptions) {
    this.#options = options
  }

  #client(): Promise<Agent> {
    // No keep-alive (each probe asks for `connection: close`, as Consul's checks do): otherwise the
    // registry would hold an idle socket open to every checked instance between rounds.
    this.#agent ??= import('undici').then(({ Agent }) => new Agent({ connect: { timeout: this.#options.timeoutMs } }))
    return this.#agent
  }

  start(): void {
    this.#timer = setInterval(() => void this.runOnce(), this.#options.intervalMs)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#stopping.abort()
    await (await this.#agent)?.close()
  }

  /** One round of probes; skipped while the previous round is still running. */
  async runOnce(): Promise<void> {
    // On etcd, one replica at a time probes (and stores the results for all of them).
    if (this.#running || !this.#options.store.isLeader()) return
    this.#running = true
    try {
      const { store, logger, allowedHosts = [], concurrency = 16 } = this.#options
      const targets: Array<{ id: string; serviceName: string; url: string; healthUrl: string }> = []
      const seen = new Set<string>()
      for (const service of store.services()) {
        for (const instance of service.instances) {
          const { id, serviceName, url, healthUrl } = instance
          if (healthUrl === undefined) continue
          seen.add(id)
          if (healthUrlAllowed(url, healthUrl, allowedHosts)) {
            targets.push({ id, serviceName, url, healthUrl })
          } else if (!this.#refused.has(id)) {
            this.#refused.add(id)
            logger.warn(
              { event: 'health_url_refused', service_name: serviceName, instance_id: id, url, health_url: healthUrl },
              'health URL names another host than the instance and is not in REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS; not probed',
            )
          }
        }
      }
      for (const id of this.#failures.keys()) if (!seen.has(id)) this.#failures.delete(id)
      for (const id of this.#refused) if (!seen.has(id)) this.#refused.delete(id)
      let next = 0
      const worker = async () => {
        for (let target = targets[next++]; target !== undefined && !this.#stopping.signal.aborted; target = targets[next++]) {
          const failure = await this.#probe(target.healthUrl)
          if (this.#stopping.signal.aborted) return
          try {
            await this.#record(target.id, target.serviceName, target.url, failure)
          } catch (error) {
            logger.error({ event: 'health_record_failed', instance_id: target.id, err: error }, 'could not record a health check result')
          }
        }
      }
      await Promise.all(Array.from({ length: Math.min(Math.max(1, concurrency), targets.length) }, worker))
    } finally {
      this.#running = false
    }
  }

  /** Undefined when the endpoint answered 2xx in time; otherwise why not. */
  async #probe(url: string): Promise<string | undefined> {
    const { timeoutMs } = this.#options
    // One deadline over the whole answer: connect, headers and body. undici's own timeouts are per
    // phase (and the body's restarts with every chunk), so a trickling body would never end.
    const deadline = AbortSignal.timeout(timeoutMs)
    const signal = AbortSignal.any([deadline, this.#stopping.signal])
    try {
      const target = new URL(url)
      const agent = await this.#client()
      const response = await agent.request({
        origin: target.origin,
        path: target.pathname + target.search,
        method: 'GET',
        signal,
        reset: true,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      })
      // Read a little of the body; a longer one is dropped with the socket.
      await response.body.dump({ limit: MAX_BODY_BYTES, signal })
      return response.statusCode >= 200 && response.statusCode < 300 ? undefined : `answered ${response.statusCode}`
    } catch (error) {
      if (deadline.aborted) return `no complete answer within ${timeoutMs} ms`
      return errorCode(error) ?? (error instanceof Error ? error.message : String(error))
    }
  }

  async #record(id: string, serviceName: string, url: string, failure: string | undefined): Promise<void> {
    const { store, logger, failuresToDown, onResult } = this.#options
    onResult?.(failure === undefined ? 'passing' : 'failing')
    const count = failure === undefined ? 0 : (this.#failures.get(id) ?? 0) + 1
    this.#failures.set(id, count)
    const before = store.members(serviceName).instances.find((i) => i.id === id)?.health
    if (failure === undefined) {
      // Written only when it changes: on etcd every write is a revision every replica applies.
      if (before !== 'passing') await store.setHealth(id, 'passing')
      if (before === 'failing') logger.info({ event: 'health_passing', service_name: serviceName, instance_id: id, url }, 'health check passing again; instance back in discovery')
    } else if (count >= failuresToDown) {
      if (before !== 'failing') {
        await store.setHealth(id, 'failing')
        logger.warn({ event: 'health_failing', service_name: serviceName, instance_id: id, url, failures: count, reason: failure }, 'health check failing; instance marked down')
      }
    }
  }
}
