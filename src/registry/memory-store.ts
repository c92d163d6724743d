import { instanceIdFor, type HeartbeatBody, type InstanceRef, type RegisterBody } from '../protocol/registry.ts'
import { ADMIN_OWNER } from './auth.ts'
import {
  checkLapsesAt,
  type ConsulCheck,
  effectiveStatus,
  expiresAt,
  type InstanceRecord,
  type RegisterResult,
  type RegistryStore,
  type ServiceSnapshot,
  type StoreStatus,
  type SweepResult,
  serviceViews,
} from './store.ts'

export type Clock = () => number

interface ServiceEntry {
  readonly serviceName: string
  /** Registry-wide counter value at this service's last membership change. */
  index: number
  readonly instances: Map<string, InstanceRecord>
  /** Views reused until a change or until their first instance expires. */
  cached?: { discover: ServiceSnapshot; members: ServiceSnapshot; validUntil: number }
}

const keyOf = (serviceName: string, url: string) => `${serviceName}\n${url}`

export interface MemoryStoreOptions {
  ttlMs: number
  clock?: Clock
  /** Registrations beyond this many instances are refused, so that no client can exhaust memory. */
  maxInstances?: number
  /** Nor can one service crowd out the others: a cap per service too. */
  maxInstancesPerService?: number
}

export class MemoryStore implements RegistryStore {
  readonly kind = 'memory'
  readonly epoch = undefined
  readonly #ttlMs: number
  readonly #clock: Clock
  readonly #maxInstances: number
  readonly #maxPerService: number
  readonly #services = new Map<string, ServiceEntry>()
  readonly #byId = new Map<string, InstanceRecord>()
  /** When each Consul check now critical turned critical (a sweep, or a `fail`): see #expiresAt. */
  readonly #criticalSince = new Map<string, number>()
  readonly #idByKey = new Map<string, string>()
  readonly #listeners = new Set<(serviceName: string) => void>()
  #counter = 0

  constructor(options: MemoryStoreOptions) {
    if (!(options.ttlMs > 0)) throw new RangeError(`ttlMs must be a positive number, got ${options.ttlMs}`)
    this.#ttlMs = options.ttlMs
    this.#clock = options.clock ?? Date.now
    this.#maxInstances = options.maxInstances ?? 10_000
    this.#maxPerService = options.maxInstancesPerService ?? 1000
  }

  async register(request: RegisterBody, owner = ADMIN_OWNER, consul?: { check: ConsulCheck; health: 'passing' | 'failing' | 'unchecked' }): Promise<RegisterResult> {
    const now = this.#clock()
    const key = keyOf(request.service_name, request.url)
    const existingId = this.#idByKey.get(key)
    const wantedId = request.instance_id ?? existingId ?? instanceIdFor(request.service_name, request.url)
    const holder = this.#byId.get(wantedId)
    if (holder && keyOf(holder.serviceName, holder.url) !== key) return { kind: 'conflict', existing: holder }

    const previous = existingId === undefined ? undefined : this.#byId.get(existingId)
    if (!previous && this.#byId.size >= this.#maxInstances) return { kind: 'full', limit: this.#maxInstances }
    if (!previous && (this.#services.get(request.service_name)?.instances.size ?? 0) >= this.#maxPerService) return { kind: 'service_full', limit: this.#maxPerService }
    // A refresh replaces the instance in one change: watchers never see it missing in between.
    if (previous) this.#forget(previous)
    const instance: InstanceRecord = {
      id: wantedId,
      serviceName: request.service_name,
      url: request.url,
      reportedStatus: request.status ?? 'up',
      // A new health URL starts unproven but usable; the same one keeps its last result.
      health: request.health_url === undefined ? (consul?.health ?? 'unchecked') : previous?.healthUrl === request.health_url ? previous.health : 'passing',
      healthUrl: request.health_url,
      metadata: { ...request.metadata },
      // A refresh keeps the original registration time: it is the same instance.
      registeredAt: previous && previous.id === wantedId ? previous.registeredAt : now,
      lastHeartbeat: now,
      owner: previous?.owner ?? owner,
      ...(consul === undefined ? {} : { consul: consul.check }),
    }
    const entry = this.#entry(instance.serviceName)
    entry.instances.set(instance.id, instance)
    this.#byId.set(instance.id, instance)
    this.#idByKey.set(key, instance.id)
    this.#changed(entry)
    return previous ? { kind: 'refreshed', instance } : { kind: 'created', instance }
  }

  find(ref: InstanceRef): InstanceRecord | undefined {
    return this.#find(ref)
  }

  async heartbeat(ref: HeartbeatBody): Promise<InstanceRecord | undefined> {
    const current = this.#find(ref)
    if (!current) return undefined
    const updated: InstanceRecord = {
      ...current,
      lastHeartbeat: this.#clock(),
      reportedStatus: ref.status ?? current.reportedStatus,
      // The pass of a Consul TTL check: the check is passing again.
      health: current.consul?.ttlMs === undefined ? current.health : 'passing',
    }
    // A routine heartbeat changes no membership: watchers are not woken, but the cached answer
    // carries last_heartbeat and must be rebuilt. A heartbeat that revives an instance that had
    // gone stale, or that changes its status (or its check's), is a membership change.
    const revived = this.#expiresAt(current) <= updated.lastHeartbeat
    if (updated.health !== 'failing') this.#criticalSince.delete(current.id)
    this.#put(updated, revived || effectiveStatus(updated) !== effectiveStatus(current) || updated.reportedStatus !== current.reportedStatus)
    return updated
  }

  async setHealth(instanceId: string, health: 'passing' | 'failing'): Promise<InstanceRecord | undefined> {
    const current = this.#byId.get(instanceId)
    if (!current) return undefined
    if (current.health === health) return current
    if (health === 'failing') this.#criticalSince.set(instanceId, this.#clock())
    else this.#criticalSince.delete(instanceId)
    const updated: InstanceRecord = { ...current, health }
    this.#put(updated, effectiveStatus(updated) !== effectiveStatus(current))
    return updated
  }

  async deregister(ref: InstanceRef): Promise<InstanceRecord | undefined> {
    const current = this.#find(ref)
    if (!current) return undefined
    this.#remove(current)
    return current
  }

  discover(serviceName: string): ServiceSnapshot {
    return this.#views(serviceName).discover
  }

  members(serviceName: string): ServiceSnapshot {
    return this.#views(serviceName).members
  }

  services(): ServiceSnapshot[] {
    return [...this.#services.keys()]
      .sort()
      .map((name) => this.members(name))
      .filter((snapshot) => snapshot.instances.length > 0)
  }

  index(): number {
    return Math.max(1, this.#counter)
  }

  async evictExpired(): Promise<SweepResult> {
    const now = this.#clock()
    const evicted: InstanceRecord[] = []
    const lapsed: InstanceRecord[] = []
    for (const instance of this.#byId.values()) {
      // A passing Consul check that lapsed turns critical first, even when a late sweep finds its
      // DeregisterCriticalServiceAfter run out too: watchers see it critical, and the log says so,
      // before the next sweep removes it (as Consul deregisters only what has been critical).
      if ((checkLapsesAt(instance) ?? Number.POSITIVE_INFINITY) <= now) lapsed.push(instance)
      else if (this.#expiresAt(instance) <= now) evicted.push(instance)
    }
    for (const instance of evicted) this.#remove(instance)
    const critical: InstanceRecord[] = []
    for (const instance of lapsed) {
      const updated = await this.setHealth(instance.id, 'failing')
      if (updated) critical.push(updated)
    }
    return { evicted, critical }
  }

  /**
   * When the instance leaves discovery. One registered through Consul with a TTL check and
   * DeregisterCriticalServiceAfter goes once its check has been critical that long, as in Consul:
   * not while the check still passes (the sweep turns a lapsed check critical first, within a
   * second), and counted from when it turned critical if that came later than the TTL's end (a
   * sweep held up by a busy event loop), so that watchers always see it critical before it goes.
   */
  #expiresAt(instance: InstanceRecord): number {
    const check = instance.consul
    if (check?.ttlMs !== undefined && check.deregisterAfterMs !== undefined) {
      if (instance.health === 'passing') return Number.POSITIVE_INFINITY
      const since = this.#criticalSince.get(instance.id)
      if (since !== undefined) return Math.max(since, instance.lastHeartbeat + check.ttlMs) + check.deregisterAfterMs
    }
    return expiresAt(instance, this.#ttlMs)
  }

  watch(listener: (serviceName: string) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  // One process holds the whole registry: always caught up, never stale, always the leader.
  async caughtUp(): Promise<void> {}

  status(): StoreStatus {
    return { ready: true, stale: false }
  }

  isLeader(): boolean {
    return true
  }

  async close(): Promise<void> {}

  #views(serviceName: string): { discover: ServiceSnapshot; members: ServiceSnapshot } {
    const entry = this.#services.get(serviceName)
    if (!entry) {
      const empty = { serviceName, index: 0, instances: [] }
      return { discover: empty, members: empty }
    }
    const now = this.#clock()
    if (entry.cached && now < entry.cached.validUntil) return entry.cached
    let validUntil = Number.POSITIVE_INFINITY
    const live: InstanceRecord[] = []
    for (const instance of entry.instances.values()) {
      const expiry = this.#expiresAt(instance)
      if (expiry <= now) continue
      live.push(instance)
      validUntil = Math.min(validUntil, expiry)
    }
    entry.cached = { ...serviceViews(serviceName, entry.index, live), validUntil }
    return entry.cached
  }

  #put(instance: InstanceRecord, membershipChanged: boolean): void {
    const entry = this.#entry(instance.serviceName)
    entry.instances.set(instance.id, instance)
    this.#byId.set(instance.id, instance)
    if (membershipChanged) this.#changed(entry)
    else entry.cached = undefined
  }

  #find(ref: InstanceRef): InstanceRecord | undefined {
    const id = 'instance_id' in ref ? ref.instance_id : this.#idByKey.get(keyOf(ref.service_name, ref.url))
    return id === undefined ? undefined : this.#byId.get(id)
  }

  /** Takes an instance out of the maps, telling no one (its replacement, or `#remove`, does). */
  #forget(instance: InstanceRecord): ServiceEntry | undefined {
    this.#byId.delete(instance.id)
    this.#criticalSince.delete(instance.id)
    this.#idByKey.delete(keyOf(instance.serviceName, instance.url))
    const entry = this.#services.get(instance.serviceName)
    entry?.instances.delete(instance.id)
    return entry
  }

  #remove(instance: InstanceRecord): void {
    const entry = this.#forget(instance)
    if (!entry) return
    this.#changed(entry)
    // Forget a service with no instances left, so that names cannot pile up. Watchers were told
    // above; if it comes back, the registry-wide counter gives it a fresh, higher index.
    if (entry.instances.size === 0) this.#services.delete(instance.serviceName)
  }

  #entry(serviceName: string): ServiceEntry {
    let entry = this.#services.get(serviceName)
    if (!entry) {
      entry = { serviceName, index: 0, instances: new Map() }
      this.#services.set(serviceName, entry)
    }
    return entry
  }

  #changed(entry: ServiceEntry): void {
    entry.index = ++this.#counter
    entry.cached = undefined
    for (const listener of this.#listeners) listener(entry.serviceName)
  }
}
