export interface RetryBudgetOptions {
  /** Retries allowed as a fraction of requests in the window (0.2: one retry per five requests). */
  ratio: number
  /** Retries always allowed per second, so that a quiet client can still retry. */
  minPerSecond: number
  windowMs: number
  clock?: () => number
}

/**
 * A retry budget (as in Finagle and Envoy): retries may add at most `ratio` of the request rate
 * (plus a small floor) over a sliding window, so that a sick dependency is not hit by a retry storm.
 */
export class RetryBudget {
  readonly #options: RetryBudgetOptions
  readonly #clock: () => number
  readonly #bucketMs: number
  readonly #requests: number[]
  readonly #retries: number[]
  #bucketStart = 0
  #bucket = 0

  constructor(options: RetryBudgetOptions) {
    if (!(options.ratio >= 0)) throw new RangeError(`ratio must be >= 0, got ${options.ratio}`)
    if (!(options.windowMs >= 1000)) throw new RangeError(`windowMs must be at least 1000, got ${options.windowMs}`)
    this.#options = options
    this.#clock = options.clock ?? Date.now
    const buckets = 10
    this.#bucketMs = options.windowMs / buckets
    this.#requests = new Array<number>(buckets).fill(0)
    this.#retries = new Array<number>(buckets).fill(0)
    this.#bucketStart = this.#clock()
  }

  recordRequest(): void {
    this.#advance()
    this.#requests[this.#bucket]!++
  }

  /** Takes one retry from the budget; false when the budget is spent. */
  tryRetry(): boolean {
    this.#advance()
    const requests = this.#requests.reduce((a, b) => a + b, 0)
    const retries = this.#retries.reduce((a, b) => a + b, 0)
    const allowed = this.#options.ratio * requests + (this.#options.minPerSecond * this.#options.windowMs) / 1000
    if (retries + 1 > allowed) return false
    this.#retries[this.#bucket]!++
    return true
  }

  #advance(): void {
    const now = this.#clock()
    let steps = Math.floor((now - this.#bucketStart) / this.#bucketMs)
    if (steps <= 0) return
    steps = Math.min(steps, this.#requests.length)
    for (let i = 0; i < steps; i++) {
      this.#bucket = (this.#bucket + 1) % this.#requests.length
      this.#requests[this.#bucket] = 0
      this.#retries[this.#bucket] = 0
    }
    this.#bucketStart = now - ((now - this.#bucketStart) % this.#bucketMs)
  }
}
