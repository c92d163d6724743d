import type { InstanceView } from '../protocol/registry.ts'
import { effectiveStatus, type InstanceRecord, type ServiceSnapshot } from './store.ts'

// The wire form of what the store keeps.

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

export function snapshotView(snapshot: ServiceSnapshot) {
  return { service_name: snapshot.serviceName, instances: snapshot.instances.map(toView) }
}

/** The event a stream receives when a service changes: its index and every member. */
export function changeEvent(snapshot: ServiceSnapshot): string {
  return `event: change\ndata: ${JSON.stringify({ index: snapshot.index, ...snapshotView(snapshot) })}\n\n`
}
