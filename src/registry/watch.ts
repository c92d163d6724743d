import type { ServerResponse } from 'node:http'
import type { RegistryStore } from './store.ts'

interface Waiter {
  release: () => void
}

export interface EventStream {
  /** Only changes to this service, or every service when undefined. */
  readonly service: string | undefined
  readonly response: ServerResponse
}

/**
 * Fans the store's changes out to watchers. Each service has its own set of blocking queries,
 * so a change to one service wakes only its watchers; event streams see every change they asked
 * for. `close` releases everyone (shutdown must not wait for long polls).
 */
export class WatchHub {
  readonly #waiters = new Map<string, Set<Waiter>>()
  readonly #streams = new Set<EventStream>()
  readonly #unsubscribe: () => void
  readonly #onChange: (serviceName: string, streams: ReadonlySet<EventStream>) => void
  #closed = false

  constructor(store: RegistryStore, onChange: (serviceName: string, streams: ReadonlySet<EventStream>) => void) {
    this.#onChange = onChange
    this.#unsubscribe = store.watch((serviceName) => this.#notify(serviceName))
  }

  get blockingQueries(): number {
    let count = 0
    for (const set of this.#waiters.values()) count += set.size
    return count
  }

  get streams(): number {
    return this.#streams.size
  }

  /** Resolves when the service changes, the wait ends, the client goes away or the hub closes. */
  waitForChange(serviceName: string, waitMs: number, cancelled: AbortSignal): Promise<void> {
    if (this.#closed || waitMs <= 0 || cancelled.aborted) return Promise.resolve()
    return new Promise((resolve) => {
      let set = this.#waiters.get(serviceName)
      if (!set) {
        set = new Set()
        this.#waiters.set(serviceName, set)
      }
      const waiters = set
      const waiter: Waiter = {
        release: () => {
          clearTimeout(timer)
          cancelled.removeEventListener('abort', waiter.release)
          waiters.delete(waiter)
          if (waiters.size === 0 && this.#waiters.get(serviceName) === waiters) this.#waiters.delete(serviceName)
          resolve()
        },
      }
      const timer = setTimeout(waiter.release, waitMs)
      cancelled.addEventListener('abort', waiter.release, { once: true })
      waiters.add(waiter)
    })
  }

  addStream(stream: EventStream): () => void {
    this.#streams.add(stream)
    return () => this.#streams.delete(stream)
  }

  close(): void {
    this.#closed = true
    this.#unsubscribe()
    for (const set of [...this.#waiters.values()]) for (const waiter of [...set]) waiter.release()
    for (const stream of this.#streams) stream.response.end()
    this.#streams.clear()
  }

  #notify(serviceName: string): void {
    const set = this.#waiters.get(serviceName)
    if (set) for (const waiter of [...set]) waiter.release()
    if (this.#streams.size > 0) this.#onChange(serviceName, this.#streams)
  }
}
