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
  /**
   * Set for an instance registered through Consul's agent API: it lives by its Consul check, not
   * by the registry's TTL (see `expiresAt`).
   */
  readonly consul?: ConsulCheck
}

/**
 * The check of an instance registered through Consul's agent API. With a TTL, `health` is the
 * check's status: `passing` after a pass (or a registration with `Status: passing`), `failing`
 * (Consul's `critical`) once no pass came for the TTL; without one, Consul's agent keeps a service
 * until it is deregistered, and so does the registry.
 */
export interface ConsulCheck {
  /** Consul's check id (`service:<instance id>` unless the registration named one). */
  readonly checkId: string
  readonly checkName: string
  /** A pass must come this often, or the check turns critical. Undefined: no TTL check. */
  readonly ttlMs: number | undefined
  /**
   * Consul's DeregisterCriticalServiceAfter: the instance is removed once its check has not passed
   * for the TTL and then this long. Undefined: never removed while registered.
   */
  readonly deregisterAfterMs: number | undefined
}

/** When the instance leaves discovery for good, unless a heartbeat (or a Consul pass) comes first. */
export function expiresAt(instance: InstanceRecord, ttlMs: number): number {
  const check = instance.consul
  if (check === undefined) return instance.lastHeartbeat + ttlMs
  if (check.ttlMs === undefined || check.deregisterAfterMs === undefined) return Number.POSITIVE_INFINITY
  return instance.lastHeartbeat + check.ttlMs + check.deregisterAfterMs
}

/** When a passing Consul TTL check turns critical without a pass; undefined for any other instance. */
export function checkLapsesAt(instance: InstanceRecord): number | undefined {
  const ttlMs = instance.consul?.ttlMs
  return ttlMs === undefined || instance.health !== 'passing' ? undefined : instance.lastHeartbeat + ttlMs
}

/** What one sweep did: instances removed, and Consul checks that turned critical. */
export interface SweepResult {
  readonly evicted: InstanceRecord[]
  readonly critical: InstanceRecord[]
}

/** The status clients see: `down` while the health check fails, else what the instance reported. */
export function effectiveStatus(instance: InstanceRecord): InstanceStatus {
  return instance.health === 'failing' ? 'down' : instance.reportedStatus
}

/** A service's two views (every live member; those clients may use), in registration order. */
export function serviceViews(serviceName: string, index: number, live: InstanceRecord[]): { discover: ServiceSnapshot; members: ServiceSnapshot } {
  live.sort((a, b) => a.registeredAt - b.registeredAt || (a.id < b.id ? -1 : 1))
  return {
    members: { serviceName, index, instances: live },
    discover: { serviceName, index, instances: live.filter((i) => effectiveStatus(i) === 'up') },
  }
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

/** Whether the store can be written, and whether what it answers may be out of date. */
export interface StoreStatus {
  /** False until the store holds the whole registry (etcd: until the first load). */
  readonly ready: boolean
  /** True when reads come from a cache that may miss recent changes (etcd unreachable, quorum lost). */
  readonly stale: boolean
  /** Why, for readiness details and logs. */
  readonly detail?: string
}

/**
 * What the registry needs from its storage. The memory store is the default; the etcd store
 * (shared by several registry replicas) implements the same interface. Reads are synchronous,
 * from memory (the etcd store's is a watch-fed cache); writes are asynchronous, and a store that
 * cannot write (etcd without quorum) rejects them with a STORE_UNAVAILABLE error, never hangs.
 */
export interface RegistryStore {
  readonly kind: 'memory' | 'etcd'
  /**
   * Names the registry's state to clients: the same on every replica of one etcd cluster, so a
   * client moving between them sees no restart; undefined for a store whose state is the process's.
   */
  readonly epoch: string | undefined
  /**
   * Registers (or refreshes) an instance; a new one belongs to `owner` (default the admin), a
   * refreshed one keeps its owner. With `consul`, it lives by that check (Consul's agent API);
   * `health` is then its check's first status.
   */
  register(request: RegisterBody, owner?: string, consul?: { check: ConsulCheck; health: 'passing' | 'failing' | 'unchecked' }): Promise<RegisterResult>
  /** The instance a reference names, if registered (expired or not). */
  find(ref: InstanceRef): InstanceRecord | undefined
  /**
   * Renews the instance (a native heartbeat, or the pass of a Consul TTL check, which also turns
   * the check `passing`). A routine one moves no index.
   */
  heartbeat(ref: HeartbeatBody): Promise<InstanceRecord | undefined>
  deregister(ref: InstanceRef): Promise<InstanceRecord | undefined>
  /** Records a health check result for an instance; undefined if it is gone. */
  setHealth(instanceId: string, health: 'passing' | 'failing'): Promise<InstanceRecord | undefined>
  /** Instances clients may use: `up`, and last heartbeat younger than the TTL. */
  discover(serviceName: string): ServiceSnapshot
  /** Every unexpired instance of the service, whatever its status. */
  members(serviceName: string): ServiceSnapshot
  /** Every service with at least one unexpired instance, with all of them (any status). */
  services(): ServiceSnapshot[]
  /**
   * The registry-wide index: moves with every change to any service (never with a routine
   * heartbeat); at least 1. Memory: a counter; etcd: the revision the cache has reached.
   */
  index(): number
  /**
   * Removes instances whose heartbeat is older than the TTL (or whose Consul check has been
   * critical for its DeregisterCriticalServiceAfter), turns lapsed Consul TTL checks critical, and
   * returns what it did. etcd expires instances itself: there, the instances whose leases expired
   * since the last call, and the checks only on the leader.
   */
  evictExpired(): Promise<SweepResult>
  /** Calls `listener` with the service's name after each change to its index; returns unsubscribe. */
  watch(listener: (serviceName: string) => void): () => void
  /**
   * Resolves once the store's view includes changes up to `index` (an index a client got from
   * another replica), or when `signal` aborts; the memory store is always there.
   */
  caughtUp(index: number, signal: AbortSignal): Promise<void>
  status(): StoreStatus
  /**
   * Whether this process should run the cluster's chores (health checks, eviction logs): always
   * for the memory store, for one replica at a time on etcd.
   */
  isLeader(): boolean
  /** Stops watching and releases connections; the memory store has nothing to release. */
  close(): Promise<void>
}
