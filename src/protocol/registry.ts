import { createHash } from 'node:crypto'
import { Type, type Static } from 'typebox'

// The registry's wire contract, shared by the server (which validates every request against these
// schemas) and the discovery client (which validates every answer). Types are derived from the
// schemas, so neither side ever handles unchecked JSON.

/** A service name: lowercase letters, digits, ".", "_" and "-", at most 64 characters. */
export const SERVICE_NAME_PATTERN = '^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$'

/** Headers of a discovery answer: what a watcher sends back to block until the next change. */
export const REGISTRY_HEADERS = {
  /** The service's index; `?index=` with it blocks until the service changes. */
  index: 'x-registry-index',
  /** Identifies the registry process; a new epoch means a restarted (or another) registry. */
  epoch: 'x-registry-epoch',
  /** Milliseconds of warm-up left after a start, while instances are still re-registering. */
  warmup: 'x-registry-warmup-ms',
  /** `true` when the answer comes from a replica that cannot reach its store's quorum: it may miss recent changes. */
  stale: 'x-registry-stale',
} as const

/** A stable id for `(service_name, url)`, so the same instance keeps its id across registry restarts. */
export function instanceIdFor(serviceName: string, url: string): string {
  const digest = createHash('sha256').update(`${serviceName}\n${url}`).digest('hex')
  return `${serviceName}-${digest.slice(0, 12)}`
}

const DURATION = /^(\d{1,6})(ms|s|m)$/

/** Parses a blocking query's wait such as `500ms`, `30s` or `5m` into milliseconds; undefined if malformed. */
export function parseWait(text: string): number | undefined {
  const match = DURATION.exec(text)
  if (!match) return undefined
  const n = Number(match[1])
  return match[2] === 'ms' ? n : match[2] === 's' ? n * 1000 : n * 60_000
}

export const ServiceName = Type.String({
  pattern: SERVICE_NAME_PATTERN,
  description: 'A short lowercase name such as "product": letters, digits, ".", "_" and "-", at most 64 characters',
})

export const InstanceUrl = Type.String({
  minLength: 8,
  maxLength: 2048,
  pattern: '^https?://[^\\s/?#@]+(/[^\\s?#]*)?$',
  description: 'Absolute http(s) URL the instance is reached at',
})

export const InstanceId = Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$', description: '1 to 128 letters, digits, ".", "_", ":" and "-"' })

export const Metadata = Type.Record(Type.String({ pattern: '^[A-Za-z0-9._/-]{1,64}$' }), Type.String({ maxLength: 512 }), {
  maxProperties: 32,
  // Without it the key pattern is only a `patternProperties`: any other key would pass.
  additionalProperties: false,
  description: 'At most 32 entries; keys of 1 to 64 letters, digits, ".", "_", "/" and "-"; values of at most 512 characters',
})

/** What an instance says of itself: only `up` instances are discovered. */
export const ReportedStatus = Type.Union([Type.Literal('starting'), Type.Literal('up'), Type.Literal('draining')])
/** What the registry shows: the reported status, or `down` while the registry's health check fails. */
export const InstanceStatus = Type.Union([Type.Literal('starting'), Type.Literal('up'), Type.Literal('draining'), Type.Literal('down')])

export const Instance = Type.Object({
  id: Type.String(),
  service_name: Type.String(),
  url: Type.String(),
  status: InstanceStatus,
  metadata: Type.Record(Type.String(), Type.String()),
  health_url: Type.Optional(Type.String()),
  registered_at: Type.String({ format: 'date-time' }),
  last_heartbeat: Type.String({ format: 'date-time' }),
})

// Unknown fields are refused: a misspelt `healthUrl` would otherwise register an instance that
// nothing checks, silently.
export const RegisterBody = Type.Object(
  {
    service_name: ServiceName,
    url: InstanceUrl,
    instance_id: Type.Optional(InstanceId),
    metadata: Type.Optional(Metadata),
    status: Type.Optional(ReportedStatus),
    /** When given, the registry probes it and shows the instance `down` after repeated failures. */
    health_url: Type.Optional(InstanceUrl),
  },
  { additionalProperties: false },
)

export const InstanceRef = Type.Union([Type.Object({ instance_id: InstanceId }), Type.Object({ service_name: ServiceName, url: InstanceUrl })])

/** A heartbeat may carry the instance's current status (e.g. `draining` at shutdown). */
export const HeartbeatBody = Type.Union([
  Type.Object({ instance_id: InstanceId, status: Type.Optional(ReportedStatus) }),
  Type.Object({ service_name: ServiceName, url: InstanceUrl, status: Type.Optional(ReportedStatus) }),
])

/** `GET /discover/{service_name}`: the live instances. */
export const DiscoverResponse = Type.Object({ service_name: Type.String(), instances: Type.Array(Instance) })

export const DiscoverParams = Type.Object({ service_name: ServiceName })
export const InstanceParams = Type.Object({ id: InstanceId })

export type InstanceStatus = Static<typeof InstanceStatus>
export type ReportedStatus = Static<typeof ReportedStatus>
export type HeartbeatBody = Static<typeof HeartbeatBody>
export type InstanceView = Static<typeof Instance>
export type DiscoverResponse = Static<typeof DiscoverResponse>
export type RegisterBody = Static<typeof RegisterBody>
export type InstanceRef = Static<typeof InstanceRef>
