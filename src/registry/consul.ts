import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { App } from '../http/app.ts'
import { ServiceName } from '../protocol/registry.ts'
import { registryError } from './errors.ts'
import { tooManyWatchers, ANY_SERVICE, type WatchHub } from './watch.ts'
import { effectiveStatus, type InstanceRecord, type RegistryStore } from './store.ts'

// The part of Consul's HTTP API that Consul's clients and the tools built on them read
// (Prometheus's and VictoriaMetrics' consul_sd_configs, consul-template, Traefik): the catalog and
// health views of services, with Consul's field names and blocking queries. Instances registered
// natively appear here; a Consul node is made up from each instance's host.

export interface ConsulApiOptions {
  store: RegistryStore
  hub: WatchHub
}

const DATACENTER = 'dc1'
/** Consul's `wait` is at most 10 minutes; clients send values such as `525s`. */
const MAX_WAIT_MS = 600_000
const DEFAULT_WAIT_MS = 300_000
const CONSUL_WAIT = /^(\d{1,9})(ms|s|m|h)?$/

/** Consul's duration in milliseconds (`5s`, `30000ms`, `10m`; a bare number is seconds); undefined if malformed. */
export function consulWaitMs(text: string): number | undefined {
  const match = CONSUL_WAIT.exec(text)
  if (!match) return undefined
  const n = Number(match[1])
  const unit = match[2] ?? 's'
  const ms = unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n * 3_600_000
  return Math.min(ms, MAX_WAIT_MS)
}

const BlockingQuery = {
  index: Type.Optional(Type.String({ pattern: '^\\d{1,18}$', description: 'Block until the index differs from this (X-Consul-Index of an earlier answer)' })),
  wait: Type.Optional(Type.String({ pattern: CONSUL_WAIT.source, description: 'Longest block: 5s, 30000ms, 10m (at most 10 minutes; default 5 minutes)' })),
  dc: Type.Optional(Type.String({ maxLength: 64, description: 'Accepted; there is one datacenter, dc1' })),
  stale: Type.Optional(Type.String({ maxLength: 8 })),
  consistent: Type.Optional(Type.String({ maxLength: 8 })),
  // Consul's `filter` expressions are not supported; refused rather than ignored.
}
const ServiceQuery = Type.Object(
  {
    ...BlockingQuery,
    tag: Type.Optional(Type.String({ maxLength: 128 })),
    passing: Type.Optional(Type.String({ pattern: '^(|true|1|false|0)$', description: 'Only passing instances: bare, =true or =1' })),
  },
  { additionalProperties: false },
)
const CatalogQuery = Type.Object(BlockingQuery, { additionalProperties: false })
const ServiceParams = Type.Object({ service: ServiceName })

/** Tags travel as the metadata key `tags`, comma-separated (metadata values are strings). */
export function tagsOf(instance: InstanceRecord): string[] {
  const text = instance.metadata.tags
  return text === undefined || text === '' ? [] : text.split(',')
}

function address(instance: InstanceRecord): { host: string; port: number } {
  const url = new URL(instance.url)
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port)
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port }
}

/** The instance's check, as Consul shows a service check: passing while the instance is usable. */
function checkOf(instance: InstanceRecord) {
  const passing = effectiveStatus(instance) === 'up'
  return {
    Node: address(instance).host,
    CheckID: `service:${instance.id}`,
    Name: `Service '${instance.serviceName}' check`,
    Status: passing ? 'passing' : 'critical',
    Notes: '',
    Output: passing ? '' : `status ${effectiveStatus(instance)}`,
    ServiceID: instance.id,
    ServiceName: instance.serviceName,
    ServiceTags: tagsOf(instance),
    Type: instance.healthUrl === undefined ? 'ttl' : 'http',
  }
}

function nodeOf(instance: InstanceRecord) {
  const { host } = address(instance)
  return { ID: '', Node: host, Address: host, Datacenter: DATACENTER, TaggedAddresses: { lan: host, wan: host }, Meta: {} }
}

function serviceOf(instance: InstanceRecord) {
  const { host, port } = address(instance)
  const { tags: _tags, ...meta } = instance.metadata
  return {
    ID: instance.id,
    Service: instance.serviceName,
    Tags: tagsOf(instance),
    Address: host,
    Meta: meta,
    Port: port,
    Weights: { Passing: 1, Warning: 1 },
    EnableTagOverride: false,
  }
}

export function registerConsulApi(app: App, options: ConsulApiOptions): void {
  const { store, hub } = options

  /**
   * Consul's blocking query: with `index`, answer at once when the current index differs (newer,
   * or older after a reset), else when it changes or `wait` ends. The answer carries
   * X-Consul-Index, which is never 0 and does not move with a routine heartbeat.
   */
  const blocking = async (request: FastifyRequest, reply: FastifyReply, query: { index?: string; wait?: string }, service: string | undefined, current: () => number) => {
    // Before an etcd replica has loaded its state, empty lists would be a lie (a consul_sd would
    // drop every target): refuse, as /discover does.
    if (!store.status().ready) throw registryError('STORE_UNAVAILABLE', `The registry has not loaded its state yet: ${store.status().detail ?? 'loading'}`)
    if (query.index !== undefined) {
      const index = Number(query.index)
      const waitMs = query.wait === undefined ? DEFAULT_WAIT_MS : (consulWaitMs(query.wait) ?? DEFAULT_WAIT_MS)
      const gone = new AbortController()
      const onClose = () => gone.abort()
      const socket = request.raw.socket
      socket.once('close', onClose)
      if (socket.destroyed) gone.abort()
      try {
        const started = Date.now()
        // An index from another replica this one has not reached yet: wait for the cache first.
        await store.caughtUp(index, AbortSignal.any([gone.signal, AbortSignal.timeout(waitMs)]))
        const left = waitMs - (Date.now() - started)
        if (current() === index && left > 0 && !gone.signal.aborted) {
          if (hub.full) throw tooManyWatchers(reply, hub)
          await hub.waitForChange(service ?? ANY_SERVICE, left, gone.signal)
        }
      } finally {
        socket.removeListener('close', onClose)
      }
    }
    reply.header('x-consul-index', String(current())).header('x-consul-knownleader', String(!store.status().stale)).header('x-consul-lastcontact', '0')
  }

  /** A service's index, never 0 (the memory store's unknown service is 0). */
  const serviceIndex = (name: string) => Math.max(1, store.members(name).index)

  app.get('/v1/agent/self', { schema: { tags: ['consul'], summary: 'Consul: the agent (datacenter and node name)' } }, async () => ({
    Config: { Datacenter: DATACENTER, NodeName: 'microservices-advanced-registry', NodeID: '', Server: true, Revision: '', Version: '1.16.0' },
    Member: { Name: 'microservices-advanced-registry', Addr: '127.0.0.1', Port: 8301, Tags: { dc: DATACENTER, role: 'consul' }, Status: 1 },
    Meta: {},
  }))

  app.get('/v1/catalog/datacenters', { schema: { tags: ['consul'], summary: 'Consul: the datacenters (one)' } }, async () => [DATACENTER])

  app.get(
    '/v1/catalog/services',
    { schema: { tags: ['consul'], summary: 'Consul: every service and its tags (blocking query)', querystring: CatalogQuery } },
    async (request, reply) => {
      await blocking(request, reply, request.query, undefined, () => store.index())
      const services: Record<string, string[]> = {}
      for (const snapshot of store.services()) services[snapshot.serviceName] = [...new Set(snapshot.instances.flatMap(tagsOf))].sort()
      return services
    },
  )

  const matches = (tag: string | undefined) => (instance: InstanceRecord) => tag === undefined || tagsOf(instance).includes(tag)

  app.get(
    '/v1/catalog/service/:service',
    { schema: { tags: ['consul'], summary: "Consul: a service's instances (blocking query)", params: ServiceParams, querystring: ServiceQuery } },
    async (request, reply) => {
      const name = request.params.service
      await blocking(request, reply, request.query, name, () => serviceIndex(name))
      return store
        .members(name)
        .instances.filter(matches(request.query.tag))
        .map((instance) => {
          const node = nodeOf(instance)
          const service = serviceOf(instance)
          return {
            ID: node.ID,
            Node: node.Node,
            Address: node.Address,
            Datacenter: DATACENTER,
            TaggedAddresses: node.TaggedAddresses,
            NodeMeta: {},
            ServiceKind: '',
            ServiceID: service.ID,
            ServiceName: service.Service,
            ServiceTags: service.Tags,
            ServiceAddress: service.Address,
            ServiceWeights: service.Weights,
            ServiceMeta: service.Meta,
            ServicePort: service.Port,
            ServiceEnableTagOverride: false,
            CreateIndex: serviceIndex(name),
            ModifyIndex: serviceIndex(name),
          }
        })
    },
  )

  app.get(
    '/v1/health/service/:service',
    {
      schema: { tags: ['consul'], summary: "Consul: a service's instances with their checks (blocking query; ?passing)", params: ServiceParams, querystring: ServiceQuery },
    },
    async (request, reply) => {
      const name = request.params.service
      await blocking(request, reply, request.query, name, () => serviceIndex(name))
      const passingOnly = request.query.passing !== undefined && request.query.passing !== 'false' && request.query.passing !== '0'
      return store
        .members(name)
        .instances.filter(matches(request.query.tag))
        .filter((instance) => !passingOnly || effectiveStatus(instance) === 'up')
        .map((instance) => ({ Node: nodeOf(instance), Service: serviceOf(instance), Checks: [checkOf(instance)] }))
    },
  )
}
