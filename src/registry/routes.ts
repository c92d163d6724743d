import { Type } from 'typebox'
import type { App } from '../http/app.ts'
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
import type { WatchHub } from './watch.ts'
import type { InstanceRecord, RegistryStore } from './store.ts'
import { snapshotView, toView } from './views.ts'
import { replayHeartbeatBody, type DiscoveryResponses } from './fast-path.ts'
import type { FastifyReply, FastifyRequest, RequestPayload } from 'fastify'

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
  /** Changes each time the registry process starts: a client can tell a fresh, empty registry. */
  epoch: string
  /** Milliseconds left of the warm-up after start, while instances are still re-registering. */
  warmupRemainingMs: () => number
  responses: DiscoveryResponses
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

export function registerRegistryRoutes(app: App, options: RegistryRouteOptions): void {
  const { store, events } = options

  const notFound = (ref: InstanceRef) =>
    registryError(
      'INSTANCE_NOT_FOUND',
      'instance_id' in ref ? `No instance with id ${ref.instance_id} is registered` : `No instance of ${ref.service_name} at ${ref.url} is registered`,
    )

  app.post(
    '/register',
    { schema: { tags: ['registry'], summary: 'Register an instance (or refresh it)', body: RegisterBody, response: { 200: Instance, 201: Instance } } },
    async (request, reply) => {
      const result = store.register(request.body)
      if (result.kind === 'full') {
        throw registryError('REGISTRY_FULL', `The registry already holds ${result.limit} instances (REGISTRY_MAX_INSTANCES)`)
      }
      if (result.kind === 'conflict') {
        throw registryError('INSTANCE_ID_CONFLICT', `Instance id ${result.existing.id} belongs to ${result.existing.serviceName} at ${result.existing.url}`)
      }
      events.registered(result.instance, result.kind === 'created')
      return reply
        .code(result.kind === 'created' ? 201 : 200)
        .header('location', `/instances/${encodeURIComponent(result.instance.id)}`)
        .send(toView(result.instance))
    },
  )

  const heartbeatRoute = {
    schema: { tags: ['registry'], summary: 'Heartbeat an instance', body: HeartbeatBody, response: { 200: Instance } },
    // A heartbeat the fast path passed on arrives with its body already read: parse that.
    preParsing: function replayFastPathBody(request: FastifyRequest, _reply: FastifyReply, payload: RequestPayload, done: (error: null, payload: RequestPayload) => void) {
      done(null, replayHeartbeatBody(request.raw) ?? payload)
    },
  }
  app.post('/heartbeat', heartbeatRoute, async (request) => {
    const instance = store.heartbeat(request.body)
    events.heartbeat(instance)
    if (!instance) throw notFound(request.body)
    return toView(instance)
  })

  app.post('/deregister', { schema: { tags: ['registry'], summary: 'Deregister an instance by service name and URL, or id', body: InstanceRef } }, async (request) => {
    const instance = store.deregister(request.body)
    if (!instance) throw notFound(request.body)
    events.deregistered(instance)
    return toView(instance)
  })

  app.delete('/instances/:id', { schema: { tags: ['registry'], summary: 'Deregister an instance by id', params: InstanceParams } }, async (request, reply) => {
    const instance = store.deregister({ instance_id: request.params.id })
    if (!instance) throw notFound({ instance_id: request.params.id })
    events.deregistered(instance)
    return reply.code(204).send()
  })

  app.get(
    '/discover/:service_name',
    { schema: { tags: ['registry'], summary: 'Discover the live instances of a service (optionally a blocking query)', params: DiscoverParams, querystring: DiscoverQuery } },
    async (request, reply) => {
      const name = request.params.service_name
      const { index, wait, epoch } = request.query
      let snapshot = store.discover(name)
      // A blocking query: answer at once if the caller's view is out of date, else on the next change.
      if (index !== undefined && (epoch === undefined || epoch === options.epoch) && snapshot.index === index) {
        const warmup = options.warmupRemainingMs()
        // While warming up, answer when it ends too, so that clients learn the registry is whole.
        const waitMs = Math.min(wait === undefined ? DEFAULT_WAIT_MS : (parseWait(wait) ?? DEFAULT_WAIT_MS), MAX_WAIT_MS, warmup > 0 ? warmup : MAX_WAIT_MS)
        // A client that goes away ends its wait. The listener is on the connection, which outlives the
        // request when kept alive: remove it, or every blocking query on the connection leaves one.
        const gone = new AbortController()
        const onClose = () => gone.abort()
        const socket = request.raw.socket
        socket.once('close', onClose)
        try {
          await options.hub.waitForChange(name, waitMs, gone.signal)
        } finally {
          socket.removeListener('close', onClose)
        }
        snapshot = store.discover(name)
      }
      const body = options.responses.body(snapshot)
      const warmup = options.warmupRemainingMs()
      return reply
        .header(REGISTRY_HEADERS.index, String(snapshot.index))
        .header(REGISTRY_HEADERS.epoch, options.epoch)
        .header(REGISTRY_HEADERS.warmup, String(warmup))
        .type('application/json; charset=utf-8')
        .send(body)
    },
  )

  // Server-sent events: a snapshot, then each change (every instance, any status), for
  // dashboards and other subscribers.
  app.get('/events', { schema: { tags: ['registry'], summary: 'Stream changes as server-sent events', querystring: EventsQuery } }, async (request, reply) => {
    const service = request.query.service
    reply.hijack()
    const response = reply.raw
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      [REGISTRY_HEADERS.epoch]: options.epoch,
    })
    const snapshots = service === undefined ? store.services() : [store.members(service)]
    // Ask EventSource clients to reconnect after 1 s (not the browser's default 3 s).
    response.write('retry: 1000\n\n')
    response.write(`event: snapshot\ndata: ${JSON.stringify({ epoch: options.epoch, services: snapshots.map(snapshotView) })}\n\n`)
    const remove = options.hub.addStream({ service, response })
    const keepalive = setInterval(() => response.write(': keep-alive\n\n'), KEEPALIVE_MS)
    keepalive.unref()
    response.on('close', () => {
      clearInterval(keepalive)
      remove()
    })
  })

  // Every unexpired instance, whatever its status, for people and dashboards.
  app.get('/services', { schema: { tags: ['registry'], summary: 'Every service with its unexpired instances', querystring: Type.Object({}) } }, async () => ({
    services: store.services().map(snapshotView),
  }))
}
