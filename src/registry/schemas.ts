import { Type, type Static } from 'typebox'

// The wire contract of the registry. Types are derived from these schemas, which also validate
// every request, so a handler only ever sees well-formed input.

export const ServiceName = Type.String({
  pattern: '^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$',
  description: 'A short lowercase name such as "product": letters, digits, ".", "_" and "-", at most 64 characters',
})

export const InstanceUrl = Type.String({
  minLength: 8,
  maxLength: 2048,
  pattern: '^https?://[^\\s/?#@]+(/[^\\s?#]*)?$',
  description: 'Absolute http(s) URL the instance is reached at',
})

export const InstanceId = Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' })

export const Metadata = Type.Record(
  Type.String({ pattern: '^[A-Za-z0-9._/-]{1,64}$' }),
  Type.String({ maxLength: 512 }),
  { maxProperties: 32 },
)

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

export const RegisterBody = Type.Object({
  service_name: ServiceName,
  url: InstanceUrl,
  instance_id: Type.Optional(InstanceId),
  metadata: Type.Optional(Metadata),
  status: Type.Optional(ReportedStatus),
  /** When given, the registry probes it and shows the instance `down` after repeated failures. */
  health_url: Type.Optional(InstanceUrl),
})

export const InstanceRef = Type.Union([
  Type.Object({ instance_id: InstanceId }),
  Type.Object({ service_name: ServiceName, url: InstanceUrl }),
])

/** A heartbeat may carry the instance's current status (e.g. `draining` at shutdown). */
export const HeartbeatBody = Type.Union([
  Type.Object({ instance_id: InstanceId, status: Type.Optional(ReportedStatus) }),
  Type.Object({ service_name: ServiceName, url: InstanceUrl, status: Type.Optional(ReportedStatus) }),
])

export const DiscoverParams = Type.Object({ service_name: ServiceName })
export const InstanceParams = Type.Object({ id: InstanceId })

export type InstanceStatus = Static<typeof InstanceStatus>
export type ReportedStatus = Static<typeof ReportedStatus>
export type HeartbeatBody = Static<typeof HeartbeatBody>
export type InstanceView = Static<typeof Instance>
export type RegisterBody = Static<typeof RegisterBody>
export type InstanceRef = Static<typeof InstanceRef>
