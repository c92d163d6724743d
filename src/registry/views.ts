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

// Discovery answers and change events repeat every instance of a service, and one change
// replaces one record (records are never modified). So each record is serialized once, the first
// time it is needed, and every answer or event that holds it is put together from those pieces:
// a change to one of 2000 instances costs one serialization, not 2000 per answer. The text is
// exactly JSON.stringify's of the views above (an array's elements are joined by commas, without
// spaces). A memo of a pure function, keyed by record: it can never be stale, and it goes when
// the record does.
const instanceTexts = new WeakMap<InstanceRecord, string>()
let serializations = 0

/** The instance's JSON text (as `JSON.stringify(toView(instance))`), serialized once per record. */
export function instanceJson(instance: InstanceRecord): string {
  let text = instanceTexts.get(instance)
  if (text === undefined) {
    text = JSON.stringify(toView(instance))
    serializations++
    instanceTexts.set(instance, text)
  }
  return text
}

/** How many instances have been serialized so far, in this process (for tests and benchmarks). */
export function instanceSerializations(): number {
  return serializations
}

/** `service_name` and `instances` of a snapshot, without the braces: the rest of an object. */
function snapshotMembers(snapshot: ServiceSnapshot): string {
  return `"service_name":${JSON.stringify(snapshot.serviceName)},"instances":[${snapshot.instances.map(instanceJson).join(',')}]`
}

/** As `JSON.stringify(snapshotView(snapshot))`, from the instances' cached texts. */
export function snapshotJson(snapshot: ServiceSnapshot): string {
  return `{${snapshotMembers(snapshot)}}`
}

/** The event a stream receives when a service changes: its index and every member. */
export function changeEvent(snapshot: ServiceSnapshot): string {
  return `event: change\ndata: {"index":${JSON.stringify(snapshot.index)},${snapshotMembers(snapshot)}}\n\n`
}

/** The event a stream starts with: the registry's epoch and every service it follows. */
export function snapshotEvent(epoch: string, snapshots: readonly ServiceSnapshot[]): string {
  return `event: snapshot\ndata: {"epoch":${JSON.stringify(epoch)},"services":[${snapshots.map(snapshotJson).join(',')}]}\n\n`
}
