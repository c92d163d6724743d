import { Type } from 'typebox'
import type { App } from '../platform/app.ts'
import { AppError } from '../platform/errors.ts'
import { DiscoverParams, HeartbeatBody, InstanceParams, InstanceRef, RegisterBody } from './schemas.ts'
import { effectiveStatus, type InstanceRecord, type RegistryStore, type ServiceSnapshot } from './store.ts'
import type { InstanceView } from './schemas.ts'

export function toView(instance: InstanceRecord): InstanceView {
  return {
    id: instance.id,
    service_name: instance.serviceName,
    url: instance.url,
    status: effectiveStatus(instance),
    metadata: { ...instance.metadata },
    ...(instance.healthUrl === undefined ? {} : { health_url: instance.healthUrl }),
    registered_at: new Date(instance.registeredAt).toISOString(),
    last_heartbeat: new Date(instance.lastHeartbeat).toISOString(),
  }
}

function snapshotView(snapshot: ServiceSnapshot) {
  return { service_name: snapshot.serviceName, instances: snapshot.instances.map(toView) }
}

/** What the routes report, for logs and metrics. */
export interface RegistryEvents {
  registered(instance: InstanceRecord, created: boolean): void
  deregistered(instance: InstanceRecord): void
  heartbeat(known: boolean): void
}

export interface RegistryRouteOptions {
  store: RegistryStore
  events: RegistryEvents
}

export function registerRegistryRoutes(app: App, options: RegistryRouteOptions): void {
  const { store, events } = options
  // Discovery is the hot path: the JSON for a service is built once per change and reused.
  const serialized = new WeakMap<ServiceSnapshot, string>()

  const notFound = (ref: InstanceRef) =>
    new AppError(
      'INSTANCE_NOT_FOUND',
      'instance_id' in ref
        ? `No instance with id ${ref.instance_id} is registered`
        : `No instance of ${ref.service_name} at ${ref.url} is registered`,
    )

  app.post('/register', { schema: { body: RegisterBody } }, async (request, reply) => {
    const result = store.register(request.body)
    if (result.kind === 'conflict') {
      throw new AppError('INSTANCE_ID_CONFLICT', `Instance id ${result.existing.id} belongs to ${result.existing.serviceName} at ${result.existing.url}`)
    }
    events.registered(result.instance, result.kind === 'created')
    return reply
      .code(result.kind === 'created' ? 201 : 200)
      .header('location', `/instances/${encodeURIComponent(result.instance.id)}`)
      .send(toView(result.instance))
  })

  app.post('/heartbeat', { schema: { body: HeartbeatBody } }, async (request) => {
    const instance = store.heartbeat(request.body)
    events.heartbeat(instance !== undefined)
    if (!instance) throw notFound(request.body)
    return toView(instance)
  })

  app.post('/deregister', { schema: { body: InstanceRef } }, async (request) => {
    const instance = store.deregister(request.body)
    if (!instance) throw notFound(request.body)
    events.deregistered(instance)
    return toView(instance)
  })

  app.delete('/instances/:id', { schema: { params: InstanceParams } }, async (request, reply) => {
    const instance = store.deregister({ instance_id: request.params.id })
    if (!instance) throw notFound({ instance_id: request.params.id })
    events.deregistered(instance)
    return reply.code(204).send()
  })

  app.get('/discover/:service_name', { schema: { params: DiscoverParams } }, async (request, reply) => {
    const snapshot = store.discover(request.params.service_name)
    let body = serialized.get(snapshot)
    if (body === undefined) {
      body = JSON.stringify(snapshotView(snapshot))
      serialized.set(snapshot, body)
    }
    return reply.header('x-registry-index', String(snapshot.index)).type('application/json; charset=utf-8').send(body)
  })

  // Every unexpired instance, whatever its status, for people and dashboards.
  app.get('/services', { schema: { querystring: Type.Object({}) } }, async () => ({
    services: store.services().map(snapshotView),
  }))
}
