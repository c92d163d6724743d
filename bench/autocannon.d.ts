// autocannon ships no types: just the part of its programmatic API the load worker uses.
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  namespace autocannon {
    interface Options {
      url: string
      method?: 'GET' | 'POST'
      headers?: Record<string, string>
      body?: string
      connections?: number
      /** Seconds. */
      duration?: number
      pipelining?: number
      /** Seconds before a request counts as timed out. */
      timeout?: number
    }

    interface Result {
      /** Seconds the run actually took. */
      duration: number
      errors: number
      timeouts: number
      non2xx: number
      resets: number
      '2xx': number
      requests: { average: number; total: number; sent: number }
      latency: { p50: number; p99: number; max: number }
    }

    interface Instance extends EventEmitter, PromiseLike<Result> {
      /** Fired per completed request; `responseTimeMs` is fractional (hrtime based). */
      on(event: 'response', listener: (client: unknown, statusCode: number, resBytes: number, responseTimeMs: number) => void): this
    }
  }

  function autocannon(options: autocannon.Options): autocannon.Instance
  export = autocannon
}
