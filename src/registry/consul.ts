import { isIP } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type, type Static } from 'typebox'
import { type App, logQuietly } from '../http/app.ts'
import { httpError } from '../http/errors.ts'
import { InstanceId, InstanceUrl, Metadata, ServiceName } from '../protocol/registry.ts'
import type { RegistryAuth } from './auth.ts'
import { registryError } from './errors.ts'
import type { RegistryWrites } from './routes.ts'
import { tooManyWatchers, ANY_SERVICE, type WatchHub } from './watch.ts'
import { effectiveStatus, type ConsulCheck, type InstanceRecord, type RegistryStore } from './store.ts'

// The part of Consul's HTTP API that Consul's clients and the tools built on them use
// (Prometheus's and VictoriaMetrics' consul_sd_configs, consul-template, Traefik, a Consul client
// library): the catalog and health views of services, with Consul's field names and blocking
// queries, and the agent's service registration with a TTL check. Instances registered natively
// appear here, and the other way round; a Consul node is made up from each instance's host.

export interface ConsulApiOptions {
  store: RegistryStore
  hub: WatchHub
  /** The native API's writes: Consul's agent writes are the same writes, authorized the same way. */
  writes: RegistryWrites
  auth: RegistryAuth
  /** Counts a write against its client's rate limit (an `onRequest` hook). */
  limitWrites: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
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

/** Go's duration syntax, as Consul's TTL and DeregisterCriticalServiceAfter take it: `10s`, `1m30s`, `500ms`, `1.5h`. */
const GO_DURATION = /^(?:\d{1,9}(?:\.\d{1,9})?(?:ns|us|µs|ms|s|m|h))+$/
const GO_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const MIN_CHECK_MS = 1000
const MAX_CHECK_MS = 7 * 24 * 3_600_000

/** A Go duration in milliseconds; undefined if malformed. */
export function goDurationMs(text: string): number | undefined {
  if (!GO_DURATION.test(text)) return undefined
  let total = 0
  for (const [, n, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(n) * GO_UNITS[unit!]!
  return total
}

const Duration = Type.String({ pattern: GO_DURATION.source, maxLength: 40, description: 'A Go duration: 10s, 1m30s, 500ms' })

// Consul's check definition, in the fields this registry supports: a TTL check (passed through
// /v1/agent/check/pass), or an HTTP check (probed by the registry's own health checker, at its own
// interval). Other kinds (TCP, gRPC, scripts, aliases) are refused, not ignored: a check that
// silently never ran would show a service passing that nobody checks.
const CheckDefinition = Type.Object(
  {
    CheckID: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$', description: 'Default: service:<service ID>' })),
    Name: Type.Optional(Type.String({ maxLength: 256 })),
    Notes: Type.Optional(Type.String({ maxLength: 1024 })),
    TTL: Type.Optional(Duration),
    HTTP: Type.Optional(InstanceUrl),
    Interval: Type.Optional(Duration),
    Timeout: Type.Optional(Duration),
    Method: Type.Optional(Type.Literal('GET')),
    Status: Type.Optional(Type.Union([Type.Literal('passing'), Type.Literal('critical')], { description: "The check's first status (Consul's default: critical)" })),
    DeregisterCriticalServiceAfter: Type.Optional(Duration),
  },
  { additionalProperties: false },
)
type CheckDefinition = Static<typeof CheckDefinition>

const ServiceRegistration = Type.Object(
  {
    Name: ServiceName,
    ID: Type.Optional(InstanceId),
    Tags: Type.Optional(Type.Array(Type.String({ pattern: '^[^,\\u0000-\\u001f]{1,128}$', description: 'A tag; no commas' }), { maxItems: 32 })),
    Address: Type.Optional(Type.String({ maxLength: 253, description: "Host name or IP address; default: the caller's address" })),
    Port: Type.Integer({ minimum: 1, maximum: 65535 }),
    Meta: Type.Optional(Metadata),
    Check: Type.Optional(CheckDefinition),
    Checks: Type.Optional(Type.Array(CheckDefinition, { maxItems: 1 })),
    EnableTagOverride: Type.Optional(Type.Boolean()),
    Weights: Type.Optional(Type.Object({ Passing: Type.Integer({ minimum: 1 }), Warning: Type.Integer({ minimum: 0 }) })),
    Kind: Type.Optional(Type.Literal('')),
  },
  { additionalProperties: false },
)
const RegisterQuery = Type.Object({ 'replace-existing-checks': Type.Optional(Type.String({ maxLength: 8 })) }, { additionalProperties: false })
const CheckParams = Type.Object({ check_id: Type.String({ minLength: 1, maxLength: 256 }) })
const CheckQuery = Type.Object({ note: Type.Optional(Type.String({ maxLength: 1024 })) }, { additionalProperties: false })
const CheckUpdate = Type.Object(
  { Status: Type.Union([Type.Literal('passing'), Type.Literal('critical')]), Output: Type.Optional(Type.String({ maxLength: 4096 })) },
  { additionalProperties: false },
)
const DeregisterParams = Type.Object({ service_id: InstanceId })
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

/** What a Consul check definition means here: the instance's lifetime and first status. */
function checkFor(serviceId: string, serviceName: string, check: CheckDefinition | undefined): { check: ConsulCheck; health: 'passing' | 'failing' | 'unchecked' } {
  const bad = (detail: string) => registryError('BAD_CONSUL_CHECK', detail)
  const checkId = check?.CheckID ?? `service:${serviceId}`
  const checkName = check?.Name ?? `Service '${serviceName}' check`
  if (check === undefined) return { check: { checkId, checkName, ttlMs: undefined, deregisterAfterMs: undefined }, health: 'unchecked' }
  if (check.TTL !== undefined && check.HTTP !== undefined) throw bad('A check has either TTL or HTTP, not both')
  if (check.TTL === undefined && check.HTTP === undefined) throw bad('A check needs TTL (passed with /v1/agent/check/pass) or HTTP; other kinds of check are not supported')
  const within = (name: string, text: string) => {
    const ms = goDurationMs(text)!
    if (ms < MIN_CHECK_MS || ms > MAX_CHECK_MS) throw bad(`${name} must be between 1s and 168h, got ${text}`)
    return ms
  }
  if (check.TTL === undefined) {
    if (check.DeregisterCriticalServiceAfter !== undefined) throw bad('DeregisterCriticalServiceAfter is supported with TTL checks only')
    return { check: { checkId, checkName, ttlMs: undefined, deregisterAfterMs: undefined }, health: 'passing' }
  }
  const ttlMs = within('TTL', check.TTL)
  const deregisterAfterMs = check.DeregisterCriticalServiceAfter === undefined ? undefined : within('DeregisterCriticalServiceAfter', check.DeregisterCriticalServiceAfter)
  // Consul's TTL checks start critical unless the registration says otherwise.
  return { check: { checkId, checkName, ttlMs, deregisterAfterMs }, health: check.Status === 'passing' ? 'passing' : 'failing' }
}

/** The caller's own address, as Consul's agent uses its node's address for a service without one. */
function callerHost(request: FastifyRequest): string {
  const address = request.raw.socket.remoteAddress ?? '127.0.0.1'
  return address.startsWith('::ffff:') ? address.slice(7) : address
}

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

/**
 * The instance's check, as Consul shows a service check: passing while the instance is usable. An
 * instance registered through Consul with no check has none (Consul's agent would list only its
 * node's own check).
 */
function checksOf(instance: InstanceRecord) {
  const consul = instance.consul
  if (consul !== undefined && consul.ttlMs === undefined && instance.healthUrl === undefined) return []
  const passing = effectiveStatus(instance) === 'up'
  const lapsed = consul?.ttlMs !== undefined && instance.health === 'failing'
  return [
    {
      Node: address(instance).host,
      CheckID: consul?.checkId ?? `service:${instance.id}`,
      Name: consul?.checkName ?? `Service '${instance.serviceName}' check`,
      Status: passing ? 'passing' : 'critical',
      Notes: '',
      Output: passing ? '' : lapsed ? 'TTL expired (or failed)' : `status ${effectiveStatus(instance)}`,
      ServiceID: instance.id,
      ServiceName: instance.serviceName,
      ServiceTags: tagsOf(instance),
      Type: instance.healthUrl === undefined ? 'ttl' : 'http',
    },
  ]
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
      logQuietly(request)
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
        .map((instance) => ({ Node: nodeOf(instance), Service: serviceOf(instance), Checks: checksOf(instance) }))
    },
  )

  // Consul takes its agent writes' JSON whatever the Content-Type says: its own documentation
  // sends them with `curl --data @payload.json`, which labels them a form. So do these routes
  // (and only they).
  void app.register(async (scope) => {
    const writes = scope as unknown as App
    writes.addContentTypeParser(['application/x-www-form-urlencoded', 'text/plain'], { parseAs: 'string' }, (_request, body, done) => {
      try {
        done(null, JSON.parse(body as string))
      } catch {
        done(httpError('INVALID_JSON', 'The body is not valid JSON'), undefined)
      }
    })
    registerAgentWrites(writes, options)
  })
}

/**
 * Consul's agent writes. Consul answers them 200 with an empty body; refusals are problem+json,
 * as everywhere else here (Consul's clients report the status and the body's text).
 */
function registerAgentWrites(app: App, options: ConsulApiOptions): void {
  const { store, writes, auth, limitWrites } = options
  /** The last instance each custom check id was found on: a pass is one lookup, not a scan. */
  const byCheckId = new Map<string, string>()

  /**
   * The instance whose check `checkId` is (`service:<id>` for a native instance, or a
   * Consul-registered one's CheckID). A custom id not seen before costs a scan of every instance:
   * only with `scan`, for callers that may write (so that nobody else can make the registry scan).
   */
  const findCheck = (checkId: string, scan: boolean): InstanceRecord | undefined => {
    const owns = (instance: InstanceRecord | undefined) => instance !== undefined && (instance.consul?.checkId ?? `service:${instance.id}`) === checkId
    const byPrefix = checkId.startsWith('service:') ? store.find({ instance_id: checkId.slice('service:'.length) }) : undefined
    if (owns(byPrefix)) return byPrefix
    const cached = byCheckId.get(checkId)
    const hit = cached === undefined ? undefined : store.find({ instance_id: cached })
    if (owns(hit)) return hit
    byCheckId.delete(checkId)
    if (!scan) return undefined
    for (const snapshot of store.services()) {
      const found = snapshot.instances.find((instance) => instance.consul?.checkId === checkId)
      if (found) {
        if (byCheckId.size > 10_000) byCheckId.clear()
        byCheckId.set(checkId, found.id)
        return found
      }
    }
    return undefined
  }
  const unknownCheck = (checkId: string) => registryError('INSTANCE_NOT_FOUND', `Unknown check ID ${JSON.stringify(checkId)}`)

  app.put(
    '/v1/agent/service/register',
    {
      onRequest: limitWrites,
      schema: {
        tags: ['consul'],
        summary: 'Consul: register a service instance, with a TTL or HTTP check (it then lives by that check)',
        body: ServiceRegistration,
        querystring: RegisterQuery,
      },
    },
    async (request, reply) => {
      const body = request.body
      if (body.Check !== undefined && body.Checks !== undefined && body.Checks.length > 0) throw registryError('BAD_CONSUL_CHECK', 'Give Check or Checks, not both')
      const id = body.ID ?? body.Name
      const consul = checkFor(id, body.Name, body.Check ?? body.Checks?.[0])
      const host = body.Address === undefined || body.Address === '' ? callerHost(request) : body.Address
      if (isIP(host) === 0 && !HOST_NAME.test(host)) throw registryError('BAD_CONSUL_ADDRESS', `Address must be a host name or an IP address, got ${JSON.stringify(host)}`)
      const url = `http://${isIP(host) === 6 ? `[${host}]` : host}:${body.Port}`
      if (body.Meta?.tags !== undefined) throw registryError('BAD_CONSUL_ADDRESS', 'Meta key "tags" is reserved: give tags as Tags')
      const metadata = { ...body.Meta, ...(body.Tags !== undefined && body.Tags.length > 0 ? { tags: body.Tags.join(',') } : {}) }
      // Consul replaces a service registered again under its ID, at a new address too. The
      // registry keys an instance by its URL: the old one goes first (its owner's to remove).
      const holder = writes.own(request, reply, { instance_id: id })
      const custom = consul.check.checkId !== `service:${id}` ? findCheck(consul.check.checkId, true) : undefined
      if (custom !== undefined && custom.id !== id) throw registryError('INSTANCE_ID_CONFLICT', `Check ID ${consul.check.checkId} belongs to instance ${custom.id}`)
      if (holder !== undefined && (holder.serviceName !== body.Name || holder.url !== url)) await writes.deregister(request, reply, { instance_id: id })
      await writes.register(
        request,
        reply,
        {
          service_name: body.Name,
          url,
          instance_id: id,
          metadata,
          ...((body.Check?.HTTP ?? body.Checks?.[0]?.HTTP) ? { health_url: (body.Check?.HTTP ?? body.Checks?.[0]?.HTTP)! } : {}),
        },
        consul,
      )
      return reply.code(200).send()
    },
  )

  app.put(
    '/v1/agent/service/deregister/:service_id',
    { onRequest: limitWrites, schema: { tags: ['consul'], summary: 'Consul: deregister a service instance by its ID', params: DeregisterParams } },
    async (request, reply) => {
      await writes.deregister(request, reply, { instance_id: request.params.service_id })
      return reply.code(200).send()
    },
  )

  /**
   * A routine pass (of a passing check, by the instance's owner) does not count against the
   * write limit, as a routine heartbeat does not: an agent's services pass every few seconds.
   */
  const limitUnlessRoutinePass = async (request: FastifyRequest, reply: FastifyReply) => {
    const { check_id } = request.params as { check_id?: unknown }
    const instance = typeof check_id === 'string' ? findCheck(check_id, false) : undefined
    if (instance !== undefined && instance.health !== 'failing' && auth.mayWrite(request.raw, instance.serviceName, instance.owner).ok) return
    await limitWrites(request, reply)
  }

  /** Sets a check's status: a pass renews the instance (as a heartbeat); only TTL checks may be failed. */
  const setCheck = async (request: FastifyRequest, reply: FastifyReply, checkId: string, status: 'passing' | 'critical') => {
    // 401/403 before 404 (whether a check exists is not for anyone to learn), and before a scan.
    const instance = findCheck(checkId, false) ?? writes.own(request, reply, { instance_id: '-' }) ?? findCheck(checkId, true)
    if (instance === undefined) throw unknownCheck(checkId)
    if (status === 'passing') return writes.heartbeat(request, reply, { instance_id: instance.id })
    writes.own(request, reply, { instance_id: instance.id })
    if (instance.consul?.ttlMs === undefined) throw registryError('BAD_CONSUL_CHECK', `Check ${checkId} is not a TTL check: only a TTL check's status is set by its owner`)
    const updated = await store.setHealth(instance.id, 'failing')
    if (updated === undefined) throw unknownCheck(checkId)
    return updated
  }

  for (const [verb, status] of [
    ['pass', 'passing'],
    ['fail', 'critical'],
  ] as const) {
    app.put(
      `/v1/agent/check/${verb}/:check_id`,
      {
        onRequest: status === 'passing' ? limitUnlessRoutinePass : limitWrites,
        schema: {
          tags: ['consul'],
          summary: `Consul: set a TTL check ${status} (the check ID percent-encoded, e.g. service%3Aweb-1)${status === 'passing' ? '; renews the instance' : ''}`,
          params: CheckParams,
          querystring: CheckQuery,
        },
      },
      async (request, reply) => {
        await setCheck(request, reply, request.params.check_id, status)
        return reply.code(200).send()
      },
    )
  }

  app.put(
    '/v1/agent/check/update/:check_id',
    { onRequest: limitWrites, schema: { tags: ['consul'], summary: "Consul: set a TTL check's status (passing or critical)", params: CheckParams, body: CheckUpdate } },
    async (request, reply) => {
      await setCheck(request, reply, request.params.check_id, request.body.Status)
      return reply.code(200).send()
    },
  )
}
