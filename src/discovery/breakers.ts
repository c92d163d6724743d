import { BrokenCircuitError, CircuitState, circuitBreaker, handleAll, type CircuitBreakerPolicy, type IBreaker } from 'cockatiel'

export type BreakerState = 'closed' | 'open' | 'half_open'

export interface BreakerOptions {
  /** Consecutive failures (connection errors, timeouts, 5xx) that open an instance's breaker. */
  consecutiveFailures: number
  /** How long an open breaker refuses traffic before one probe may try the instance again. */
  halfOpenAfterMs: number
  /**
   * Failures that show the request never reached the instance (nothing listens there, its name
   * does not resolve): one of these opens the breaker of an instance that has never answered at
   * once, rather than after `consecutiveFailures` (a registered address that was never reachable
   * should not take its share of traffic until then). None by default.
   */
  neverSent?: (error: unknown) => boolean
  onStateChange?: (instanceId: string, state: BreakerState) => void
  clock?: () => number
}

/**
 * Opens after `threshold` consecutive failures, or at the first failure of an instance that has
 * never answered when that failure shows nothing reached it. cockatiel asks `failure()` without
 * the error: `InstanceBreakers` notes what it needs just before.
 */
class ConsecutiveOrUnreachable implements IBreaker {
  state = 0
  /** The instance has given an HTTP answer (any status) through this breaker. */
  answered = false
  /** The failure being recorded never reached the instance. */
  unsent = false
  readonly #threshold: number

  constructor(threshold: number) {
    this.#threshold = threshold
  }

  success(): void {
    this.state = 0
  }

  failure(): boolean {
    const unreachable = this.unsent && !this.answered
    this.unsent = false
    return ++this.state >= this.#threshold || unreachable
  }
}

interface Entry {
  policy: CircuitBreakerPolicy
  breaker: ConsecutiveOrUnreachable
  openedAt: number
}

const stateName = (state: CircuitState): BreakerState => (state === CircuitState.Closed ? 'closed' : state === CircuitState.HalfOpen ? 'half_open' : 'open')

export { BrokenCircuitError }

/**
 * Passive health: one cockatiel circuit breaker per instance. An instance whose breaker is open
 * gets no traffic until `halfOpenAfterMs` passed; then one call probes it, and a success closes it.
 * It also remembers whether the instance has ever answered (the service client sends an instance
 * that has not one request at a time).
 */
export class InstanceBreakers {
  readonly #options: BreakerOptions
  readonly #entries = new Map<string, Entry>()
  readonly #clock: () => number

  constructor(options: BreakerOptions) {
    if (!(options.consecutiveFailures >= 1)) throw new RangeError(`consecutiveFailures must be at least 1, got ${options.consecutiveFailures}`)
    if (!(options.halfOpenAfterMs > 0)) throw new RangeError(`halfOpenAfterMs must be positive, got ${options.halfOpenAfterMs}`)
    this.#options = options
    this.#clock = options.clock ?? Date.now
  }

  state(instanceId: string): BreakerState {
    const entry = this.#entries.get(instanceId)
    return entry ? stateName(entry.policy.state) : 'closed'
  }

  /** Whether the instance may be chosen now: closed, or open long enough to be probed. */
  available(instanceId: string): boolean {
    const entry = this.#entries.get(instanceId)
    if (!entry) return true
    switch (entry.policy.state) {
      case CircuitState.Closed:
        return true
      case CircuitState.HalfOpen:
        return false // its probe is in flight
      default:
        return this.#clock() - entry.openedAt >= this.#options.halfOpenAfterMs
    }
  }

  /**
   * Runs `fn` through the instance's breaker; `isFailure` marks answers that count as failures
   * (a 5xx), `isAnswer` results that came from the instance (by default all: a caller's own
   * refusal, such as a client gone before the instance was asked, is none). Throws
   * BrokenCircuitError without calling `fn` while the breaker refuses.
   */
  execute<T>(instanceId: string, fn: () => Promise<T>, isFailure: (result: T) => boolean, isAnswer: (result: T) => boolean = () => true): Promise<T> {
    const entry = this.#entry(instanceId, isFailure as (result: unknown) => boolean)
    const { breaker } = entry
    const neverSent = this.#options.neverSent
    return entry.policy.execute(() =>
      fn().then(
        (result) => {
          if (isAnswer(result)) breaker.answered = true
          return result
        },
        (error: unknown) => {
          breaker.unsent = neverSent?.(error) ?? false
          throw error
        },
      ),
    )
  }

  /** Whether the instance has ever answered a call made through its breaker (any status). */
  answered(instanceId: string): boolean {
    return this.#entries.get(instanceId)?.breaker.answered ?? false
  }

  /** Drops the breakers of instances that are gone. */
  retain(instanceIds: ReadonlySet<string>): void {
    for (const id of this.#entries.keys()) if (!instanceIds.has(id)) this.#entries.delete(id)
  }

  states(): Array<[string, BreakerState]> {
    return [...this.#entries.entries()].map(([id, entry]) => [id, stateName(entry.policy.state)])
  }

  #entry(instanceId: string, isFailure: (result: unknown) => boolean): Entry {
    let entry = this.#entries.get(instanceId)
    if (!entry) {
      const breaker = new ConsecutiveOrUnreachable(this.#options.consecutiveFailures)
      const policy = circuitBreaker(handleAll.orWhenResult(isFailure), { halfOpenAfter: this.#options.halfOpenAfterMs, breaker })
      const created: Entry = { policy, breaker, openedAt: 0 }
      policy.onBreak(() => {
        created.openedAt = this.#clock()
      })
      policy.onStateChange((state) => this.#options.onStateChange?.(instanceId, stateName(state)))
      this.#entries.set(instanceId, created)
      entry = created
    }
    return entry
  }
}
