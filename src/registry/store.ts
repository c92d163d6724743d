import type { InstanceRef, InstanceStatus, RegisterBody } from './schemas.ts'

/** An instance as the store keeps it; times are epoch milliseconds. */
export interface InstanceRecord {
  readonly id: string
  readonly serviceName: string
  readonly url: string
  readonly status: InstanceStatus
  readonly metadata: Readonly<Record<string, string>>
  readonly registeredAt: number
  readonly lastHeartbeat: number
}

export type RegisterResult =
  | { kind: 'created'; instance: InstanceRecord }
  | { kind: 'refreshed'; instance: InstanceRecord }
  | { kind: 'conflict'; existing: InstanceRecord }

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
  register(request: RegisterBody): RegisterResult
  heartbeat(ref: InstanceRef): InstanceRecord | undefined
  deregister(ref: InstanceRef): InstanceRecord | undefined
  /** Live instances only: last heartbeat younger than the TTL. */
  discover(serviceName: string): ServiceSnapshot
  /** Every service that has at least one live instance. */
  services(): ServiceSnapshot[]
  /** Removes instances whose heartbeat is older than the TTL; returns what it removed. */
  evictExpired(): InstanceRecord[]
  /** When the next instance would expire, for callers that cache a discovery answer. */
  expiresAt(instance: InstanceRecord): number
}
