import type { IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'
import { Compile } from 'typebox/compile'
import { AppError } from '../http/errors.ts'
import { routeAnswers, type FastPath, type FastPathHandler } from '../http/fast-path.ts'
import type { Metrics } from '../http/metrics.ts'
import type { Logger } from '../lib/logger.ts'
import { HeartbeatBody, REGISTRY_HEADERS } from '../protocol/registry.ts'
import { snapshotJson, toView } from './views.ts'
import type { InstanceRecord, RegistryStore, ServiceSnapshot } from './store.ts'
import type { RegistryAuth } from './auth.ts'

/**
 * The encoded discovery answer of each snapshot: built once per change, reused until the next,
 * from each instance's cached JSON (a change to one instance serializes that one only).
 */
export class DiscoveryResponses {
  readonly #bodies = new WeakMap<ServiceSnapshot, Buffer>()

  body(snapshot: ServiceSnapshot): Buffer {
    let body = this.#bodies.get(snapshot)
    if (body === undefined) {
      // A Buffer goes to the socket as it is; a string would be UTF-8 encoded on every request.
      body = Buffer.from(snapshotJson(snapshot))
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
  epoch: () => string
  warmupRemainingMs: () => number
  metrics: Metrics
  logger: Logger
  auth: RegistryAuth
  closing: () => boolean
}

/**
 * `GET /discover/{name}` without a query is what every client asks, many times a second: answer
 * it from the cached bytes before the framework's routing, hooks and per-request logger, which
 * cost more than the answer itself. Everything else (blocking queries, bad names, other
 * methods) returns false and goes through Fastify as usual. The answer is the route's, byte for
 * byte, with the same headers; the request is counted and logged like the route's.
 */
export function discoverFastPath(options: FastPathOptions): FastPathHandler {
  const { store, responses, metrics, logger } = options
  const route = '/discover/:service_name'
  // Counted exactly but not timed: the in-process work is a few microseconds, and prom-client's
  // per-request histogram would cost more than the answer itself.
  const served = metrics.hotRequestCount({ method: 'GET', route, status: 200 })
  return (request, response) => {
    if (request.method !== 'GET' || request.url === undefined) return false
    const match = PLAIN_DISCOVER.exec(request.url)
    // A read the token check refuses is the route's to answer (401).
    if (!match || !options.auth.mayRead(request)) return false
    // A store not loaded yet is the route's to refuse; a stale one answers, and says so.
    const status = store.status()
    if (!status.ready) return false
    const snapshot = store.discover(match[1]!)
    const body = responses.body(snapshot)
    response.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': body.length,
      [REGISTRY_HEADERS.index]: String(snapshot.index),
      [REGISTRY_HEADERS.epoch]: options.epoch(),
      [REGISTRY_HEADERS.warmup]: String(options.warmupRemainingMs()),
      ...(status.stale ? { [REGISTRY_HEADERS.stale]: 'true' } : {}),
      ...(options.closing() ? { connection: 'close' } : {}),
    })
    response.end(body)
    served.inc()
    if (logger.isLevelEnabled('info')) logger.info({ method: 'GET', route, url: request.url, status: 200 }, 'request')
    return true
  }
}

/**
 * The hooks whose effect the fast paths reproduce, by `hook:functionName`. Any other hook that
 * would run for their routes turns them off (the app factory checks when it is ready), so a new
 * auth check, rate limit or tracing can never be skipped by them, only make them slower. To keep
 * them fast under a new hook, reproduce its effect here and name it.
 */
export const HONOURED_HOOKS: ReadonlySet<string> = new Set([
  // REGISTRY_READ_TOKEN: discovery answers only when the token check passes; a heartbeat is no read.
  'onRequest:requireReadToken',
  // The write rate limit: the heartbeat fast path answers only a heartbeat that changes nothing
  // but its time, of an instance the caller owns; every other write (a status change, a stranger's
  // or an unknown instance's heartbeat, a refusal) reaches the route, and its limit.
  'onRequest:limitWrites',
  // `Connection: close` while draining: both answer with it (`closing`).
  'onSend:closeWhenDraining',
  // http_requests_total: both count in plain numbers folded in at scrape time.
  'onResponse:countRequest',
  // The heartbeat route's own hook: it parses the body the fast path read and passed on.
  'preParsing:replayFastPathBody',
])

/** Both fast paths, for the app factory: the first that takes a request answers it. */
export function registryFastPath(discover: FastPathHandler, heartbeat: FastPathHandler): FastPath {
  return {
    handle: (request, response, next) => discover(request, response, next) || heartbeat(request, response, next),
    routes: [
      { method: 'GET', url: '/discover/:service_name' },
      { method: 'POST', url: '/heartbeat' },
    ],
    honours: HONOURED_HOOKS,
  }
}

// A heartbeat body is a few dozen bytes; anything bigger is left to Fastify (and its body limit).
const HEARTBEAT_MAX_BYTES = 4096
// secure-json-parse (Fastify's parser) refuses these keys: leave such bodies to it.
const PROTOTYPE_KEYS = /__proto__|constructor/
const checkHeartbeat = Compile(HeartbeatBody)
const replayed = new WeakMap<IncomingMessage, Buffer>()
const refused = new WeakMap<IncomingMessage, AppError>()

/** For the heartbeat route: the store's refusal of a heartbeat the fast path already tried, if any. */
export function heartbeatRefusal(request: IncomingMessage): AppError | undefined {
  const error = refused.get(request)
  refused.delete(request)
  return error
}

export interface HeartbeatFastPathOptions {
  store: RegistryStore
  metrics: Metrics
  logger: Logger
  auth: RegistryAuth
  closing: () => boolean
  /** Reports a heartbeat of a known instance, as the route does. */
  onHeartbeat: (instance: InstanceRecord) => void
}

/**
 * `POST /heartbeat` is every instance's steady traffic. A well-formed heartbeat of a known
 * instance (JSON body up to 4 KiB with a Content-Length, valid against the route's own schema) is
 * answered here, before Fastify, with the route's answer: 200 and the instance. Anything else
 * (malformed or oversized bodies, other content types, chunked bodies, unknown instances) goes to
 * the route with the body it sent, which `replayHeartbeatBody` hands back to Fastify's parser, so
 * that every error is answered in one place, by the route.
 */
export function heartbeatFastPath(options: HeartbeatFastPathOptions): FastPathHandler {
  const { store, metrics, logger } = options
  const route = '/heartbeat'
  const served = metrics.hotRequestCount({ method: 'POST', route, status: 200 })
  return (request, response, next) => {
    if (request.method !== 'POST' || request.url !== route) return false
    const length = Number(request.headers['content-length'])
    const type = request.headers['content-type']
    if (!(length > 0 && length <= HEARTBEAT_MAX_BYTES) || request.headers['transfer-encoding'] !== undefined) return false
    if (type !== 'application/json' && !type?.startsWith('application/json;')) return false
    const chunks: Buffer[] = []
    let received = 0
    request.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      received += chunk.length
    })
    request.on('end', () => {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received)
      // The route answers anything else, with the body replayed (a heartbeat applied twice is
      // the same heartbeat); a store that cannot write (etcd without quorum) is the route's to answer too.
      const toRoute = (error?: unknown) => {
        replayed.set(request, body)
        // A refusal the store made (etcd without quorum) is an answer, not a fault of the fast
        // path: the route gives it, without trying the store a second time.
        if (error instanceof AppError) {
          refused.set(request, error)
          next(request, response)
        } else if (error === undefined) next(request, response)
        else routeAnswers(error, request, response, next, logger)
      }
      let pending: Promise<InstanceRecord | undefined> | undefined
      try {
        pending = received === length ? routineHeartbeat(store, options.auth, request, body) : undefined
      } catch (error) {
        return toRoute(error)
      }
      if (!pending) return toRoute()
      pending.then((instance) => {
        if (!instance) return toRoute()
        options.onHeartbeat(instance)
        // Serialized, not memoized (instanceJson): a heartbeat replaces its record, so a memo would
        // hold a text per instance that only discovery reads (it makes its own when it needs one),
        // and each one would outlive the young generation: 22 MB and 2.4 MB/s of old-generation
        // garbage for 100,000 instances heartbeating every 10 s (bench/footprint.ts).
        const answer = Buffer.from(JSON.stringify(toView(instance)))
        response.writeHead(200, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': answer.length,
          ...(options.closing() ? { connection: 'close' } : {}),
        })
        response.end(answer)
        served.inc()
        if (logger.isLevelEnabled('debug')) logger.debug({ method: 'POST', route, url: route, status: 200 }, 'request')
      }, toRoute)
    })
    // A client that goes away mid-body: its socket is gone, there is no one to answer.
    request.on('error', () => request.destroy())
    return true
  }
}

/**
 * Applies a routine heartbeat and resolves to the instance; undefined (and nothing applied) for
 * one the route must see: malformed, of an unknown instance, refused to this caller, or changing
 * the instance's status (a membership change, counted by the write rate limit).
 */
function routineHeartbeat(store: RegistryStore, auth: RegistryAuth, request: IncomingMessage, body: Buffer): Promise<InstanceRecord | undefined> | undefined {
  const text = body.toString('utf8')
  if (PROTOTYPE_KEYS.test(text)) return undefined
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (!checkHeartbeat.Check(value)) return undefined
  const current = store.find(value)
  if (!current || (value.status !== undefined && value.status !== current.reportedStatus)) return undefined
  if (!auth.mayWrite(request, current.serviceName, current.owner).ok) return undefined
  return store.heartbeat(value)
}

/**
 * For the heartbeat route's `preParsing` hook: the body the fast path read before passing the
 * request on, as the stream Fastify parses (and checks against Content-Length and its limit).
 */
export function replayHeartbeatBody(request: IncomingMessage): Readable | undefined {
  const body = replayed.get(request)
  if (body === undefined) return undefined
  replayed.delete(request)
  const stream = Readable.from([body], { objectMode: false }) as Readable & { receivedEncodedLength?: number }
  stream.receivedEncodedLength = body.length
  return stream
}
