import { Type } from 'typebox'
import type { App } from '../http/app.ts'
import { REGISTRY_HEADERS, ServiceName } from '../protocol/registry.ts'
import { registryError } from './errors.ts'
import { effectiveStatus, type InstanceRecord, type RegistryStore } from './store.ts'

export interface PrometheusSdOptions {
  store: RegistryStore
}

/** One target group of Prometheus's HTTP service discovery. */
export interface TargetGroup {
  targets: string[]
  labels: Record<string, string>
}

const TargetGroupSchema = Type.Object({ targets: Type.Array(Type.String()), labels: Type.Record(Type.String(), Type.String()) })

const SdQuery = Type.Object({ service: Type.Optional(ServiceName) }, { additionalProperties: false })

/** A metadata key as a Prometheus label name's tail: anything but `[a-zA-Z0-9_]` becomes `_`. */
export function labelNamePart(key: string): string {
  return key.replace(/[^a-zA-Z0-9_]/g, '_')
}

/** `host:port` of an instance URL: the scheme's default port when none is given, IPv6 in brackets. */
export function targetOf(url: URL): string {
  const port = url.port === '' ? (url.protocol === 'https:' ? '443' : '80') : url.port
  // WHATWG URLs keep an IPv6 host's brackets in `hostname`, which is what a target needs.
  return `${url.hostname}:${port}`
}

/** The target group of one instance: its address, and everything the registry knows as meta labels. */
export function targetGroup(instance: InstanceRecord): TargetGroup {
  const url = new URL(instance.url)
  const labels: Record<string, string> = {
    __meta_registry_service: instance.serviceName,
    __meta_registry_instance_id: instance.id,
    __meta_registry_url: instance.url,
    __meta_registry_status: effectiveStatus(instance),
  }
  // Keys are sorted so that two keys that sanitize to the same name always resolve the same way
  // (the last, in sort order, wins).
  for (const key of Object.keys(instance.metadata).sort()) labels[`__meta_registry_metadata_${labelNamePart(key)}`] = instance.metadata[key]!
  const metricsPath = instance.metadata.metrics_path
  labels.__scheme__ = url.protocol.slice(0, -1)
  labels.__metrics_path__ = metricsPath?.startsWith('/') ? metricsPath : '/metrics'
  return { targets: [targetOf(url)], labels }
}

/**
 * `GET /sd/prometheus`: Prometheus HTTP service discovery (`http_sd_configs`). One target group
 * per instance clients may use (`up`, as `/discover` answers), by service name then registration
 * order, so that each target carries its own instance's labels.
 */
export function registerPrometheusSd(app: App, options: PrometheusSdOptions): void {
  const { store } = options
  app.get(
    '/sd/prometheus',
    {
      schema: {
        tags: ['registry'],
        summary: 'Live instances as Prometheus HTTP service discovery target groups (http_sd_configs)',
        querystring: SdQuery,
        response: { 200: Type.Array(TargetGroupSchema) },
      },
    },
    async (request, reply) => {
      // Before the store has loaded (etcd unreachable at start), an empty list would make
      // Prometheus drop every target: refuse instead, and it keeps the targets it has.
      if (!store.status().ready) throw registryError('STORE_UNAVAILABLE', `The registry has not loaded its state yet: ${store.status().detail ?? 'loading'}`)
      if (store.status().stale) reply.header(REGISTRY_HEADERS.stale, 'true')
      const { service } = request.query
      const names = service === undefined ? store.services().map((snapshot) => snapshot.serviceName) : [service]
      names.sort()
      const groups = names.flatMap((name) => store.discover(name).instances.map(targetGroup))
      return reply.type('application/json; charset=utf-8').send(groups)
    },
  )
}
