import { Type } from 'typebox'
import { type App, logQuietly } from '../http/app.ts'
import { registryError } from './errors.ts'
import {
  DiscoverParams,
  HeartbeatBody,
  Instance,
  InstanceParams,
  InstanceRef,
  parseWait,
  REGISTRY_HEADERS,
  RegisterBody,
  ServiceName as ServiceNameSchema,
} from '../protocol/registry.ts'
import { tooManyWatchers, type WatchHub } from './watch.ts'
import type { ConsulCheck, InstanceRecord, RegistryStore } from './store.ts'
import { snapshotEvent, snapshotView, toView } from './views.ts'
import { heartbeatRefusal, replayHeartbeatBody, type DiscoveryResponses } from './fast-path.ts'
import type { FastifyReply, FastifyRequest, RequestPayload } from 'fastify'
import { refusalError, type RegistryAuth } from './auth.ts'
import { healthUrlAllowed } from './health-checker.ts'

/** What the routes report, for logs and metrics. */
export interface RegistryEvents {
  registered(instance: InstanceRecord, created: boolean): void
  deregistered(instance: InstanceRecord): void
  /** A heartbeat, of a known instance (as it is now) or of an unknown one (undefined). */
  heartbeat(instance: InstanceRecord | undefined): void
}

export interface RegistryRouteOptions {
  store: RegistryStore
  events: RegistryEvents
  hub: WatchHub
  /**
   * Names the registry's state: a new one each time a memory registry starts (a client can tell a
   * fresh, empty registry); the etcd cluster's, the same on every replica.
   */
  epoch: () => string
  /** Milliseconds left of the warm-up after start, while instances are still re-registering. */
  warmupRemainingMs: () => number
  responses: DiscoveryResponses
  auth: RegistryAuth
  /** Counts a write against its client's rate limit (an `onRequest` hook); refuses it past the limit. */
  limitWrites: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  /** The most bytes an instance's metadata may take, as JSON. */
  maxMetadataBytes: number
  /** Hosts a health URL may name besides the instance's own. */
  healthCheckAllowedHosts: readonly string[]
}

/**
 * The registry's writes as every API makes them (the native routes, and Consul's agent API):
 * authorized (401/403 before 404), bounded, logged and counted the same way.
 */
export interface RegistryWrites {
  /** Registers or refreshes; throws the problem to answer when refused. */
  register(
    request: FastifyRequest,
    reply: FastifyReply,
    body: RegisterBody,
    consul?: { check: ConsulCheck; health: 'passing' | 'failing' | 'unchecked' },
  ): Promise<{ instance: InstanceRecord; created: boolean }>
  /** Throws 401/403 unless the request may change the instance `ref` names; returns it, if registered. */
  own(request: FastifyRequest, reply: FastifyReply, ref: InstanceRef): InstanceRecord | undefined
  /** Deregisters; throws INSTANCE_NOT_FOUND for an unknown instance. */
  deregister(request: FastifyRequest, reply: FastifyReply, ref: InstanceRef): Promise<InstanceRecord>
  /** Renews (a heartbeat, or a Consul check's pass); throws INSTANCE_NOT_FOUND for an unknown instance. */
  heartbeat(request: FastifyRequest, reply: FastifyReply, ref: HeartbeatBody): Promise<InstanceRecord>
}

const MAX_WAIT_MS = 300_000
const DEFAULT_WAIT_MS = 30_000
const KEEPALIVE_MS = 15_000

const DiscoverQuery = Type.Object(
  {
    index: Type.Optional(Type.Integer({ minimum: 0, description: "Block until the service's index differs from this" })),
    wait: Type.Optional(Type.String({ pattern: '^\\d{1,6}(ms|s|m)$', description: 'Longest block, e.g. 30s (default), at most 5m' })),
    epoch: Type.Optional(Type.String({ maxLength: 64, description: 'The epoch the index belongs to; another epoch answers at once' })),
  },
  { additionalProperties: false },
)

const EventsQuery = Type.Object({ service: Type.Optional(ServiceNameSchema) }, { additionalProperties: false })

export function registerRegistryRoutes(app: App, options: RegistryRouteOptions): RegistryWrites {
  const { store, events } = options
  const storeNotReady = () => registryError('STORE_UNAVAILABLE', `The registry has not loaded its state yet: ${store.status().detail ?? 'loading'}`)

  const notFound = (ref: InstanceRef) =>
    registryError(
      'INSTANCE_NOT_FOUND',
      'instance_id' in ref ? `No instance with id ${ref.instance_id} is registered` : `No instance of ${ref.service_name} at ${ref.url} is registered`,
    )

  const { auth, limitWrites } = options
  /** Throws the answer to a write the request may not make; returns who makes it. */
  const authorize = (request: FastifyRequest, reply: FastifyReply, serviceName: string | undefined, owner: string | undefined) => {
    const decision = auth.mayWrite(request.raw, serviceName, owner)
    if (!decision.ok) throw refusalError(decision.refusal, (name, value) => reply.header(name, value))
    return decision.principal
  }

  const register: RegistryWrites['register'] = async (request, reply, body, consul) => {
    // A refresh must come from the instance's owner: nobody else may replace its URL, health URL or metadata.
    const principal = authorize(request, reply, body.service_name, store.find({ service_name: body.service_name, url: body.url })?.owner)
    if (body.metadata !== undefined && Buffer.byteLength(JSON.stringify(body.metadata)) > options.maxMetadataBytes) {
      throw registryError('METADATA_TOO_LARGE', `Metadata may take at most ${options.maxMetadataBytes} bytes as JSON`)
    }
    // The registry probes health URLs: they must not turn it into a scanner of other hosts.
    if (body.health_url !== undefined && !healthUrlAllowed(body.url, body.health_url, options.healthCheckAllowedHosts)) {
      throw registryError(
        'HEALTH_URL_HOST_NOT_ALLOWED',
        `health_url must be on the instance's own host (${new URL(body.url).hostname}) or on one listed in REGISTRY_HEALTH_CHECK_ALLOWED_HOSTS`,
      )
    }
    const result = await store.register(body, principal.owner, consul)
    if (result.kind === 'full') {
      throw registryError('REGISTRY_FULL', `The registry already holds ${result.limit} instances (REGISTRY_MAX_INSTANCES)`)
    }
    if (result.kind === 'service_full') {
      throw registryError('SERVICE_FULL', `${body.service_name} already has ${result.limit} instances (REGISTRY_MAX_INSTANCES_PER_SERVICE)`)
    }
    if (result.kind === 'conflict') {
      throw registryError('INSTANCE_ID_CONFLICT', `Instance id ${result.existing.id} belongs to ${result.existing.serviceName} at ${result.existing.url}`)
    }
    events.registered(result.instance, result.kind === 'created')
    return { instance: result.instance, created: result.kind === 'created' }
  }

  app.post(
    '/register',
    {
      onRequest: limitWrites,
      schema: { tags: ['registry'], summary: 'Register an instance (or refresh it)', body: RegisterBody, response: { 200: Instance, 201: Instance } },
    },
    async (request, reply) => {
      const { instance, created } = await register(request, reply, request.body)
      return reply
        .code(created ? 201 : 200)
        .header('location', `/instances/${encodeURIComponent(instance.id)}`)
        .send(toView(instance))
    },
  )

  const heartbeatRoute = {
    onRequest: limitWrites,
    schema: { tags: ['registry'], summary: 'Heartbeat an instance', body: HeartbeatBody, response: { 200: Instance } },
    // A heartbeat the fast path passed on arrives with its body already read: parse that.
    preParsing: function replayFastPathBody(request: FastifyRequest, _reply: FastifyReply, payload: RequestPayload, done: (error: null, payload: RequestPayload) => void) {
      done(null, replayHeartbeatBody(request.raw) ?? payload)
    },
  }
  /** The instance a write names, once the request may change it: 401/403 first, then 404. */
  const ownInstance = (request: FastifyRequest, reply: FastifyReply, ref: InstanceRef) => {
    const current = store.find(ref)
    authorize(request, reply, current?.serviceName, current?.owner)
    return current
  }

  app.post('/heartbeat', heartbeatRoute, async (request, reply) => {
    const refusal = heartbeatRefusal(request.raw)
    if (refusal) throw refusal
    return toView(await heartbeat(request, reply, request.body))
  })

  const heartbeat: RegistryWrites['heartbeat'] = async (request, reply, ref) => {
    const current = ownInstance(request, reply, ref)
    const instance = current && (await store.heartbeat(ref))
    events.heartbeat(instance)
    if (!instance) throw notFound(ref)
    return instance
  }

  const deregister: RegistryWrites['deregister'] = async (request, reply, ref) => {
    const instance = ownInstance(request, reply, ref) && (await store.deregister(ref))
    if (!instance) throw notFound(ref)
    events.deregistered(instance)
    return instance
  }

  app.post(
    '/deregister',
    { onRequest: limitWrites, schema: { tags: ['registry'], summary: 'Deregister an instance by service name and URL, or id', body: InstanceRef } },
    async (request, reply) => toView(await deregister(request, reply, request.body)),
  )

  app.delete(
    '/instances/:id',
    { onRequest: limitWrites, schema: { tags: ['registry'], summary: 'Deregister an instance by id', params: InstanceParams } },
    async (request, reply) => {
      await deregister(request, reply, { instance_id: request.params.id })
      return reply.code(204).send()
    },
  )

  app.get(
    '/discover/:service_name',
    { schema: { tags: ['registry'], summary: 'Discover the live instances of a service (optionally a blocking query)', params: DiscoverParams, querystring: DiscoverQuery } },
    async (request, reply) => {
      const name = request.params.service_name
      const { index, wait, epoch } = request.query
      // Before the store has loaded (etcd unreachable at start), an empty list would be a lie.
      if (!store.status().ready) throw storeNotReady()
      const blocking = index !== undefined && (epoch === undefined || epoch === options.epoch())
      const snapshot = blocking ? await blockingDiscover(request, reply, name, index, wait) : store.discover(name)
      const body = options.responses.body(snapshot)
      if (store.status().stale) reply.header(REGISTRY_HEADERS.stale, 'true')
      return reply
        .header(REGISTRY_HEADERS.index, String(snapshot.index))
        .header(REGISTRY_HEADERS.epoch, options.epoch())
        .header(REGISTRY_HEADERS.warmup, String(options.warmupRemainingMs()))
        .type('application/json; charset=utf-8')
        .send(body)
    },
  )

  /** A blocking query's snapshot: at once if the caller's view is out of date, else at the next change. */
  const blockingDiscover = async (request: FastifyRequest, reply: FastifyReply, name: string, index: number, wait: string | undefined) => {
    // HEAD gets the answer's headers at once: nothing to wait for without a body.
    if (request.method === 'HEAD') {
      if (store.discover(name).index === index && options.hub.full) throw tooManyWatchers(reply, options.hub)
      return store.discover(name)
    }
    logQuietly(request)
    const waitMs = Math.min(wait === undefined ? DEFAULT_WAIT_MS : (parseWait(wait) ?? DEFAULT_WAIT_MS), MAX_WAIT_MS)
    // A client that goes away ends its wait (one gone already, at once: it would hold a place under
    // the cap for nothing). The listener is on the connection, which outlives the request when kept
    // alive: remove it, or every blocking query on the connection leaves one.
    const gone = new AbortController()
    const onClose = () => gone.abort()
    const socket = request.raw.socket
    socket.once('close', onClose)
    if (socket.destroyed) gone.abort()
    try {
      // An index from another replica that this one has not seen yet: wait (within the wait) for
      // the cache to catch up rather than answer at once with older data.
      const started = Date.now()
      await store.caughtUp(index, AbortSignal.any([gone.signal, AbortSignal.timeout(waitMs)]))
      const left = waitMs - (Date.now() - started)
      if (store.discover(name).index !== index || left <= 0) return store.discover(name)
      // A watcher, and beyond the cap refused (a plain discover never is).
      if (options.hub.full) throw tooManyWatchers(reply, options.hub)
      // While warming up, answer when it ends too, so that clients learn the registry is whole.
      const warmup = options.warmupRemainingMs()
      await options.hub.waitForChange(name, Math.min(left, warmup > 0 ? warmup : MAX_WAIT_MS), gone.signal)
      return store.discover(name)
    } finally {
      socket.removeListener('close', onClose)
    }
  }

  // Server-sent events: a snapshot, then each change (every instance, any status), for
  // dashboards and other subscribers.
  // HEAD is declared with GET rather than derived by Fastify, whose derived HEAD would add a
  // `content-length: 0` that the stream never has.
  app.route({
    method: ['GET', 'HEAD'],
    url: '/events',
    schema: { tags: ['registry'], summary: 'Stream changes as server-sent events', querystring: EventsQuery },
    handler: async (request, reply) => {
      const service = request.query.service
      logQuietly(request)
      if (!store.status().ready) throw storeNotReady()
      // A watcher, and beyond the cap refused.
      if (options.hub.full) throw tooManyWatchers(reply, options.hub)
      const headers = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', [REGISTRY_HEADERS.epoch]: options.epoch() }
      // HEAD: the stream's status and headers, and no stream.
      if (request.method === 'HEAD') return reply.headers(headers).send()
      reply.hijack()
      const response = reply.raw
      response.writeHead(200, { ...headers, connection: 'keep-alive' })
      const snapshots = service === undefined ? store.services() : [store.members(service)]
      const { socket } = request.raw
      const stream = { service, response, peer: `${socket.remoteAddress}:${socket.remotePort}` }
      // Ask EventSource clients to reconnect after 1 s (not the browser's default 3 s).
      const remove = options.hub.addStream(stream, `retry: 1000\n\n${snapshotEvent(options.epoch(), snapshots)}`)
      // Through the hub, so that a client that reads nothing at all is dropped too.
      const keepalive = setInterval(() => options.hub.send(stream, ': keep-alive\n\n'), KEEPALIVE_MS)
      keepalive.unref()
      const stop = () => {
        clearInterval(keepalive)
        remove()
      }
      // A client gone before now has had its close event already.
      if (response.destroyed) stop()
      else response.on('close', stop)
    },
  })

  // Every unexpired instance, whatever its status, for people and dashboards.
  app.get('/services', { schema: { tags: ['registry'], summary: 'Every service with its unexpired instances', querystring: Type.Object({}) } }, async (_request, reply) => {
    if (!store.status().ready) throw storeNotReady()
    if (store.status().stale) reply.header(REGISTRY_HEADERS.stale, 'true')
    return { services: store.services().map(snapshotView) }
  })

  return { register, own: ownInstance, deregister, heartbeat }
}
