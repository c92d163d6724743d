import type { HeartbeatBody, InstanceRef, InstanceStatus, RegisterBody, ReportedStatus } from '../protocol/registry.ts'

/** An instance as the store keeps it; times are epoch milliseconds. */
export interface InstanceRecord {
  readonly id: string
  readonly serviceName: string
  readonly url: string
  readonly reportedStatus: ReportedStatus
  /** `failing` after the registry's health check failed repeatedly; `unchecked` without a health URL. */
  readonly health: 'unchecked' | 'passing' | 'failing'
  readonly healthUrl: string | undefined
  readonly metadata: Readonly<Record<string, string>>
  readonly registeredAt: number
  readonly lastHeartbeat: number
  /** Who registered it (`token:admin`, `acl:<name>` or `loopback`): only they may change it. */
  readonly owner: string
}

/** The status clients see: `down` while the health check fails, else what the instance reported. */
export function effectiveStatus(instance: InstanceRecord): InstanceStatus {
  return instance.health === 'failing' ? 'down' : instance.reportedStatus
}

export type RegisterResult =
  | { kind: 'created'; instance: InstanceRecord }
  | { kind: 'refreshed'; instance: InstanceRecord }
  | { kind: 'conflict'; existing: InstanceRecord }
  | { kind: 'full'; limit: number }
  | { kind: 'service_full'; limit: number }

export interface ServiceSnapshot {
  readonly serviceName: string
  /** Changes whenever the service's set of live instances or their data changes. */
  readonly index: number
  readonly instances: readonly InstanceRecord[]
}

/**
 * What the registry needs from its storage. The memory store is the default; an etcd store
 * (shared by several registry replicas) implements the same interface.
 */
export interface RegistryStore {
  /** Registers (or refreshes) an instance; a new one belongs to `owner` (default the admin), a refreshed one keeps its owner. */
  register(request: RegisterBody, owner?: string): RegisterResult
  /** The instance a reference names, if registered (expired or not). */
  find(ref: InstanceRef): InstanceRecord | undefined
  heartbeat(ref: HeartbeatBody): InstanceRecord | undefined
  deregister(ref: InstanceRef): InstanceRecord | undefined
  /** Records a health check result for an instance; undefined if it is gone. */
  setHealth(instanceId: string, health: 'passing' | 'failing'): InstanceRecord | undefined
  /** Instances clients may use: `up`, and last heartbeat younger than the TTL. */
  discover(serviceName: string): ServiceSnapshot
  /** Every unexpired instance of the service, whatever its status. */
  members(serviceName: string): ServiceSnapshot
  /** Every service with at least one unexpired instance, with all of them (any status). */
  services(): ServiceSnapshot[]
  /** Removes instances whose heartbeat is older than the TTL; returns what it removed. */
  evictExpired(): InstanceRecord[]
  /** Calls `listener` with the service's name after each change to its index; returns unsubscribe. */
  watch(listener: (serviceName: string) => void): () => void
}
