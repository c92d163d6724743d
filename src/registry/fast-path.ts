import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Metrics } from '../platform/metrics.ts'
import type { Logger } from '../platform/logger.ts'
import { snapshotView } from './views.ts'
import type { RegistryStore, ServiceSnapshot } from './store.ts'

/** The encoded discovery answer of each snapshot: built once per change, reused until the next. */
export class DiscoveryResponses {
  readonly #bodies = new WeakMap<ServiceSnapshot, Buffer>()

  body(snapshot: ServiceSnapshot): Buffer {
    let body = this.#bodies.get(snapshot)
    if (body === undefined) {
      // A Buffer goes to the socket as it is; a string would be UTF-8 encoded on every request.
      body = Buffer.from(JSON.stringify(snapshotView(snapshot)))
      this.#bodies.set(snapshot, body)
    }
    return body
  }
}

// Exactly the names the route's schema accepts, and nothing else: no query, no escapes.
const PLAIN_DISCOVER = /^\/discover\/([a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?)$/

export interface FastPathOptions {
  store: RegistryStore
  responses: DiscoveryResponses
  epoch: string
  warmupRemainingMs: () => number
  metrics: Metrics
  logger: Logger
  closing: () => boolean
}

/**
 * `GET /discover/{name}` without a query is what every client asks, many times a second: answer
 * it from the cached bytes before the framework's routing, hooks and per-request logger, which
 * cost more than the answer itself. Everything else (blocking queries, bad names, other
 * methods) returns false and goes through Fastify as usual. The answer is the route's, byte for
 * byte, with the same headers; the request is counted and logged like the route's.
 */
export function discoverFastPath(options: FastPathOptions): (request: IncomingMessage, response: ServerResponse) => boolean {
  const { store, responses, metrics, logger } = options
  const route = '/discover/:service_name'
  // Counted exactly but not timed: the in-process work is a few microseconds, and prom-client's
  // per-request histogram would cost more than the answer itself.
  const served = metrics.hotRequestCount({ method: 'GET', route, status: 200 })
  return (request, response) => {
    if (request.method !== 'GET' || request.url === undefined) return false
    const match = PLAIN_DISCOVER.exec(request.url)
    if (!match) return false
    const snapshot = store.discover(match[1]!)
    const body = responses.body(snapshot)
    response.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': body.length,
      'x-registry-index': String(snapshot.index),
      'x-registry-epoch': options.epoch,
      'x-registry-warmup-ms': String(options.warmupRemainingMs()),
      ...(options.closing() ? { connection: 'close' } : {}),
    })
    response.end(body)
    served.inc()
    if (logger.isLevelEnabled('info')) logger.info({ method: 'GET', route, url: request.url, status: 200 }, 'request')
    return true
  }
}
