import type { ServerResponse } from 'node:http'
import type { AppError } from '../http/errors.ts'
import { registryError } from './errors.ts'
import type { RegistryStore } from './store.ts'

export const DEFAULT_MAX_WATCHERS = 1024
/** `waitForChange(ANY_SERVICE, ...)` wakes on a change to any service (no service is named `*`). */
export const ANY_SERVICE = '*'
export const DEFAULT_MAX_STREAM_BUFFER_BYTES = 1024 * 1024

interface Waiter {
  release: () => void
}

export interface EventStream {
  /** Only changes to this service, or every service when undefined. */
  readonly service: string | undefined
  readonly response: ServerResponse
  /** The client's address and port, for logs. */
  readonly peer: string
}

export type DropReason = 'slow_consumer'

export interface WatchHubOptions {
  /**
   * The `change` event of a service as it is now. Asked at most once per change, and only when a
   * stream follows that service: every stream that does is sent the same text.
   */
  changeEvent: (serviceName: string) => string
  /** Blocking queries and event streams together; the routes refuse more. Default 1024. */
  maxWatchers?: number
  /** Unsent data a stream may hold besides its latest event before it is dropped. Default 1 MiB. */
  maxStreamBufferBytes?: number
  /** Told once of each stream dropped, after it is. */
  onDropped?: (stream: EventStream, reason: DropReason, bufferedBytes: number) => void
}

interface StreamState {
  /** Length of the latest write: the part of the backlog a reading client may still be taking. */
  latest: number
}

/**
 * Fans the store's changes out to watchers. Each service has its own set of blocking queries,
 * so a change to one service wakes only its watchers; event streams see every change they asked
 * for. `close` releases everyone (shutdown must not wait for long polls).
 *
 * Watchers are bounded: there are at most `maxWatchers` of them (the routes check `full` in the
 * same tick as they add one), and a stream whose client does not read is dropped once more than
 * `maxStreamBufferBytes` sent before its latest event is still unsent. The allowance for the
 * latest event means one event larger than the bound (the first snapshot of a big registry) does
 * not drop a client that reads it; a client that stops reading holds at most the bound plus two
 * events in the registry's memory.
 */
export class WatchHub {
  readonly #waiters = new Map<string, Set<Waiter>>()
  readonly #streams = new Map<EventStream, StreamState>()
  readonly #unsubscribe: () => void
  readonly #changeEvent: (serviceName: string) => string
  readonly #maxStreamBufferBytes: number
  readonly #onDropped: WatchHubOptions['onDropped']
  readonly maxWatchers: number
  #blocking = 0
  #closed = false

  constructor(store: RegistryStore, options: WatchHubOptions) {
    this.maxWatchers = options.maxWatchers ?? DEFAULT_MAX_WATCHERS
    this.#maxStreamBufferBytes = options.maxStreamBufferBytes ?? DEFAULT_MAX_STREAM_BUFFER_BYTES
    if (!(Number.isSafeInteger(this.maxWatchers) && this.maxWatchers >= 0)) throw new RangeError(`maxWatchers must be a whole number >= 0, got ${this.maxWatchers}`)
    if (!(this.#maxStreamBufferBytes > 0)) throw new RangeError(`maxStreamBufferBytes must be a positive number, got ${this.#maxStreamBufferBytes}`)
    this.#changeEvent = options.changeEvent
    this.#onDropped = options.onDropped
    this.#unsubscribe = store.watch((serviceName) => this.#notify(serviceName))
  }

  get blockingQueries(): number {
    return this.#blocking
  }

  get streams(): number {
    return this.#streams.size
  }

  /** Blocking queries and event streams. */
  get watchers(): number {
    return this.#blocking + this.#streams.size
  }

  /** True when no other watcher may start: check it in the same tick as adding one. */
  get full(): boolean {
    return this.watchers >= this.maxWatchers
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
          if (waiters.delete(waiter)) this.#blocking--
          if (waiters.size === 0 && this.#waiters.get(serviceName) === waiters) this.#waiters.delete(serviceName)
          resolve()
        },
      }
      const timer = setTimeout(waiter.release, waitMs)
      cancelled.addEventListener('abort', waiter.release, { once: true })
      waiters.add(waiter)
      this.#blocking++
    })
  }

  /**
   * Starts following a stream whose headers are written: sends it `prelude` (its first events),
   * then every change it asked for. Returns the function that stops following it (call it when
   * the response closes). A response already gone, or a hub closed, follows nothing.
   */
  addStream(stream: EventStream, prelude: string): () => void {
    const { response } = stream
    if (response.destroyed) return () => {}
    response.write(prelude)
    if (this.#closed) {
      response.end()
      return () => {}
    }
    this.#streams.set(stream, { latest: prelude.length })
    return () => this.#streams.delete(stream)
  }

  /** Sends a stream something of its own (a keep-alive comment), under the same bound as events. */
  send(stream: EventStream, text: string): void {
    const state = this.#streams.get(stream)
    if (state) this.#send(stream, state, text)
  }

  close(): void {
    this.#closed = true
    this.#unsubscribe()
    for (const set of [...this.#waiters.values()]) for (const waiter of [...set]) waiter.release()
    for (const stream of this.#streams.keys()) stream.response.end()
    this.#streams.clear()
  }

  #notify(serviceName: string): void {
    for (const key of [serviceName, ANY_SERVICE]) {
      const set = this.#waiters.get(key)
      if (set) for (const waiter of [...set]) waiter.release()
    }
    let event: string | undefined
    for (const [stream, state] of this.#streams) {
      if (stream.service !== undefined && stream.service !== serviceName) continue
      event ??= this.#changeEvent(serviceName)
      this.#send(stream, state, event)
    }
  }

  #send(stream: EventStream, state: StreamState, text: string): void {
    const { response } = stream
    // Gone without our noticing yet (its close event is on its way): nothing to send to.
    if (response.destroyed) {
      this.#streams.delete(stream)
      return
    }
    // Unsent bytes in Node's buffers (the kernel's are not counted: they cost us nothing).
    const buffered = response.writableLength
    if (buffered - state.latest > this.#maxStreamBufferBytes) {
      this.#streams.delete(stream)
      response.destroy()
      this.#onDropped?.(stream, 'slow_consumer', buffered)
      return
    }
    response.write(text)
    state.latest = text.length
  }
}

/**
 * The answer to a watcher beyond the cap: 503 TOO_MANY_WATCHERS with a Retry-After of a few
 * seconds, spread so that the clients refused together do not all come back together.
 */
export function tooManyWatchers(reply: { header: (name: string, value: string) => unknown }, hub: WatchHub): AppError {
  reply.header('retry-after', String(5 + Math.floor(Math.random() * 5)))
  return registryError('TOO_MANY_WATCHERS', `The registry already serves ${hub.maxWatchers} blocking queries and event streams (REGISTRY_MAX_WATCHERS)`)
}
