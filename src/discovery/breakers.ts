import { BrokenCircuitError, CircuitState, ConsecutiveBreaker, circuitBreaker, handleAll, type CircuitBreakerPolicy } from 'cockatiel'

export type BreakerState = 'closed' | 'open' | 'half_open'

export interface BreakerOptions {
  /** Consecutive failures (connection errors, timeouts, 5xx) that open an instance's breaker. */
  consecutiveFailures: number
  /** How long an open breaker refuses traffic before one probe may try the instance again. */
  halfOpenAfterMs: number
  onStateChange?: (instanceId: string, state: BreakerState) => void
  clock?: () => number
}

interface Entry {
  policy: CircuitBreakerPolicy
  openedAt: number
}

const stateName = (state: CircuitState): BreakerState => (state === CircuitState.Closed ? 'closed' : state === CircuitState.HalfOpen ? 'half_open' : 'open')

export { BrokenCircuitError }

/**
 * Passive health: one cockatiel circuit breaker per instance. An instance whose breaker is open
 * gets no traffic until `halfOpenAfterMs` passed; then one call probes it, and a success closes it.
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
   * (a 5xx). Throws BrokenCircuitError without calling `fn` while the breaker refuses.
   */
  execute<T>(instanceId: string, fn: () => Promise<T>, isFailure: (result: T) => boolean): Promise<T> {
    return this.#entry(instanceId, isFailure as (result: unknown) => boolean).policy.execute(fn)
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
      const policy = circuitBreaker(handleAll.orWhenResult(isFailure), {
        halfOpenAfter: this.#options.halfOpenAfterMs,
        breaker: new ConsecutiveBreaker(this.#options.consecutiveFailures),
      })
      const created: Entry = { policy, openedAt: 0 }
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
