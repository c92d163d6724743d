import { createHash, randomBytes } from 'node:crypto'
import { Etcd3, EtcdLeaseInvalidError, isRecoverableError, type IKeyValue, type IOptions, type IRequestOp, type IResponseHeader, type Watcher } from 'etcd3'
import { Type, type Static } from 'typebox'
import { Compile } from 'typebox/compile'
import { backoffDelay, type BackoffOptions } from '../lib/backoff.ts'
import type { Logger } from '../lib/logger.ts'
import { instanceIdFor, ReportedStatus, type HeartbeatBody, type InstanceRef, type RegisterBody } from '../protocol/registry.ts'
import { ADMIN_OWNER } from './auth.ts'
import { LeaderElection } from './etcd-election.ts'
import { LeaseKeepAlive } from './etcd-keepalive.ts'
import { registryError } from './errors.ts'
import { type ConsulCheck, type InstanceRecord, type RegisterResult, type RegistryStore, type ServiceSnapshot, type StoreStatus, type SweepResult, serviceViews } from './store.ts'

export interface EtcdStoreOptions {
  /** Client URLs of the etcd members (ETCD_ENDPOINTS). */
  endpoints: readonly string[]
  /** Every key of this registry starts with it (ETCD_PREFIX); several registries may share a cluster. */
  prefix: string
  /** An instance's lease; etcd's leases are whole seconds, so this rounds up. */
  ttlMs: number
  logger: Logger
  /** Per cluster: every replica counts the same cache. */
  maxInstances?: number
  maxInstancesPerService?: number
  /** How long a write, a renewal or a quorum probe may take before it fails (a 503, never a hang). */
  requestTimeoutMs?: number
  /** How often the replica checks that etcd has quorum (a linearizable read). */
  probeIntervalMs?: number
  /** Names this replica in the leader election and logs. */
  replicaName?: string
}

// The value of an instance's key: the record, in the wire's spelling. Validated on the way in:
// the cluster may hold anything another writer put under the prefix.
const StoredInstance = Type.Object({
  id: Type.String({ maxLength: 128 }),
  service_name: Type.String({ maxLength: 64 }),
  url: Type.String({ maxLength: 2048 }),
  status: ReportedStatus,
  health: Type.Union([Type.Literal('unchecked'), Type.Literal('passing'), Type.Literal('failing')]),
  health_url: Type.Optional(Type.String({ maxLength: 2048 })),
  // As written by any version of the registry: keys were not checked before 2026-12 (a key
  // refused now must not make a stored instance unreadable).
  metadata: Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 512 }), { maxProperties: 64 }),
  registered_at: Type.Number(),
  last_heartbeat: Type.Number(),
  owner: Type.String({ maxLength: 256 }),
  consul: Type.Optional(
    Type.Object({
      check_id: Type.String({ maxLength: 256 }),
      check_name: Type.String({ maxLength: 256 }),
      ttl_ms: Type.Optional(Type.Number({ minimum: 1 })),
      deregister_after_ms: Type.Optional(Type.Number({ minimum: 0 })),
    }),
  ),
})
type StoredInstance = Static<typeof StoredInstance>
const checkStored = Compile(StoredInstance)

function encode(record: InstanceRecord): Buffer {
  const stored: StoredInstance = {
    id: record.id,
    service_name: record.serviceName,
    url: record.url,
    status: record.reportedStatus,
    health: record.health,
    ...(record.healthUrl === undefined ? {} : { health_url: record.healthUrl }),
    metadata: { ...record.metadata },
    registered_at: record.registeredAt,
    last_heartbeat: record.lastHeartbeat,
    owner: record.owner,
    ...(record.consul === undefined
      ? {}
      : {
          consul: {
            check_id: record.consul.checkId,
            check_name: record.consul.checkName,
            ...(record.consul.ttlMs === undefined ? {} : { ttl_ms: record.consul.ttlMs }),
            ...(record.consul.deregisterAfterMs === undefined ? {} : { deregister_after_ms: record.consul.deregisterAfterMs }),
          },
        }),
  }
  return Buffer.from(JSON.stringify(stored))
}

function decode(value: Buffer): InstanceRecord | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(value.toString('utf8'))
  } catch {
    return undefined
  }
  if (!checkStored.Check(parsed)) return undefined
  return {
    id: parsed.id,
    serviceName: parsed.service_name,
    url: parsed.url,
    reportedStatus: parsed.status,
    health: parsed.health,
    healthUrl: parsed.health_url,
    metadata: parsed.metadata,
    registeredAt: parsed.registered_at,
    lastHeartbeat: parsed.last_heartbeat,
    owner: parsed.owner,
    ...(parsed.consul === undefined
      ? {}
      : {
          consul: {
            checkId: parsed.consul.check_id,
            checkName: parsed.consul.check_name,
            ttlMs: parsed.consul.ttl_ms,
            deregisterAfterMs: parsed.consul.deregister_after_ms,
          },
        }),
  }
}

/** What the cache keeps of one key: the record, and what a later write must name. */
interface Entry {
  record: InstanceRecord
  key: string
  lease: string
  modRevision: number
}

interface Service {
  /** The etcd revision of the service's latest change. */
  index: number
  readonly entries: Map<string, Entry>
  views?: { discover: ServiceSnapshot; members: ServiceSnapshot }
}

const urlKey = (serviceName: string, url: string) => `${serviceName}\n${url}`
/**
 * A Consul TTL check that is passing is a key beside its instance's, `<instance key>/check`, on a
 * lease of the check's TTL that each pass renews: when passes stop, etcd deletes it, and the
 * leader turns the check critical. (The instance's own lease is then the TTL plus
 * DeregisterCriticalServiceAfter, or none.)
 */
const CHECK_SUFFIX = '/check'
/** No lease: the key stays until it is deleted. */
const NO_LEASE = '0'
/** The index of a service with no instances: never 0 (clients read 0 as "no index yet"). */
const EMPTY_INDEX = 1
const PAGE = 1000
const ELECTION_TTL_SECONDS = 5
/** gRPC keep-alive ping interval on every etcd connection (etcd's own minimum is 5 s). */
const KEEPALIVE_MS = 6000
/**
 * The wait before a lost watch is opened again, on the next member: the project's jittered
 * backoff, at most 100 ms at first, growing to at most 2 s while no member confirms one. (etcd3's
 * own reconnection waits up to 30 s, so a replica would serve a stale cache for up to 30 s after
 * etcd came back.)
 */
const WATCH_RETRY: BackoffOptions = { initialMs: 100, maxMs: 2000 }

/**
 * The registry's state in etcd, shared by any number of registry replicas.
 *
 * Each instance is one key, `<prefix>/services/<service>/<id>`, holding the record as JSON and
 * attached to a lease of the TTL: a heartbeat renews the lease (no write, no revision, nothing for
 * watchers), and when heartbeats stop etcd deletes the key, so every replica agrees when an
 * instance is gone. Reads are answered from a cache fed by one watch on the prefix, so discovery
 * costs no round trip; a service's index is the etcd revision of its latest change, the same on
 * every replica, so a client can carry it from one replica to another.
 *
 * Writes are compare-and-swap transactions on the key's revision, so two replicas cannot both
 * create or change the same instance. A write resolves once this replica's cache has seen it
 * (read your writes). Without quorum, writes and renewals fail within `requestTimeoutMs` with
 * STORE_UNAVAILABLE, and reads go on from the cache, marked stale.
 */
export class EtcdStore implements RegistryStore {
  readonly kind = 'etcd'
  readonly #client: Etcd3
  readonly #options: Required<Omit<EtcdStoreOptions, 'endpoints'>>
  readonly #servicesPrefix: string
  readonly #keepAlive: LeaseKeepAlive
  readonly #ttlSeconds: number
  readonly #services = new Map<string, Service>()
  readonly #byId = new Map<string, Entry>()
  readonly #idByUrl = new Map<string, string>()
  readonly #listeners = new Set<(serviceName: string) => void>()
  /** The cache holds every change up to this revision. */
  #revision = 0
  #catchUp: Array<{ revision: number; resolve: () => void }> = []
  #epoch: string | undefined
  #loaded = false
  #watcher: Watcher | undefined
  #watching = false
  #quorum = true
  #problem: string | undefined = 'not yet connected to etcd'
  readonly #election: LeaderElection
  /** The election's own renewals: a stream of theirs failing never fails an instance's heartbeat. */
  readonly #electionKeepAlive: LeaseKeepAlive
  /** One client per etcd member, for the streams: the watch and the lease renewals. */
  readonly #members: Etcd3[]
  /** The member the watch is on; it moves to the next when the watch is lost. */
  #watchMember: number
  /** Watches lost in a row, none confirmed since: how long to wait before the next (WATCH_RETRY). */
  #watchFailures = 0
  #electionTimer: NodeJS.Timeout | undefined
  /** Instances whose leases expired (seen by the leader), for `evictExpired`. */
  #expired: InstanceRecord[] = []
  /** The keys of passing Consul TTL checks (see CHECK_SUFFIX), by instance id. */
  readonly #checks = new Map<string, { key: string; lease: string }>()
  /** Ids this replica is deregistering: their deletes are not expiries. */
  readonly #deregistering = new Set<string>()
  #lastHeartbeat = new Map<string, number>()
  #probeTimer: NodeJS.Timeout | undefined
  #closed = false

  constructor(options: EtcdStoreOptions) {
    if (!(options.ttlMs > 0)) throw new RangeError(`ttlMs must be a positive number, got ${options.ttlMs}`)
    if (options.endpoints.length === 0) throw new RangeError('endpoints must name at least one etcd member')
    this.#options = {
      prefix: options.prefix.replace(/\/+$/, ''),
      ttlMs: options.ttlMs,
      logger: options.logger,
      maxInstances: options.maxInstances ?? 10_000,
      maxInstancesPerService: options.maxInstancesPerService ?? 1000,
      requestTimeoutMs: options.requestTimeoutMs ?? 3000,
      probeIntervalMs: options.probeIntervalMs ?? 1000,
      replicaName: options.replicaName ?? `registry-${randomBytes(4).toString('hex')}`,
    }
    this.#servicesPrefix = `${this.#options.prefix}/services/`
    this.#ttlSeconds = Math.ceil(options.ttlMs / 1000)
    // Each attempt at a member gets a third of the request timeout: a member that does not answer
    // (gone from the network: no refusal, just silence) fails the attempt, counts against that
    // member, and the pool tries another, all within the timeout. etcd3 sets no deadline itself.
    const attemptMs = Math.max(200, Math.floor(this.#options.requestTimeoutMs / 3))
    // gRPC keep-alive pings on every connection: a member that stops answering (frozen, or gone
    // from the network without a reset) fails its streams within KEEPALIVE_MS plus the request
    // timeout, instead of holding them silent for ever. etcd refuses pings closer than 5 s apart
    // (its --grpc-keepalive-min-time) and would close the connection.
    const grpcOptions = { 'grpc.keepalive_time_ms': KEEPALIVE_MS, 'grpc.keepalive_timeout_ms': this.#options.requestTimeoutMs }
    this.#client = new Etcd3({
      hosts: [...options.endpoints],
      grpcOptions,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + attemptMs }),
      faultHandling: { host: hostBreaker },
    })
    // The streams (the watch and the lease renewals) go to one member at a time, each through a
    // client of its own, and move on to the next member when theirs fails or stays silent (see
    // LeaseKeepAlive, #follow). Where each starts follows from the replica's name, so that replicas
    // spread over the members and the three streams of one replica start on different ones.
    this.#members = options.endpoints.map((endpoint) => new Etcd3({ hosts: endpoint, grpcOptions, faultHandling: { host: passThrough } }))
    const first = firstMember(this.#options.replicaName, this.#members.length)
    this.#keepAlive = new LeaseKeepAlive(this.#members, attemptMs, first)
    this.#electionKeepAlive = new LeaseKeepAlive(this.#members, attemptMs, first + 1)
    this.#watchMember = (first + 2) % this.#members.length
    this.#election = new LeaderElection({
      client: this.#client,
      keepAlive: this.#electionKeepAlive,
      name: `${this.#options.prefix}/leader`,
      // A short lease: when the leader dies, another replica takes over the checks within seconds.
      ttlSeconds: ELECTION_TTL_SECONDS,
      candidate: this.#options.replicaName,
      logger: this.#options.logger,
    })
  }

  /** The lease TTL etcd is asked for: the TTL rounded up to whole seconds. */
  get leaseSeconds(): number {
    return this.#ttlSeconds
  }

  get epoch(): string | undefined {
    return this.#epoch
  }

  /** The revision the cache has reached (for tests and readiness details). */
  get revision(): number {
    return this.#revision
  }

  /**
   * Loads the whole registry, then follows it. Resolves after the first load; until then (etcd
   * unreachable) it keeps trying and the store is not ready. Never rejects.
   */
  async start(): Promise<void> {
    let delay = 250
    let attempt = 0
    while (!this.#closed) {
      try {
        await this.#load()
        break
      } catch (error) {
        attempt++
        this.#problem = `cannot load the registry from etcd (${this.#describe(error)})`
        // The first failure and then one line in ten: a long outage should not flood the log.
        if (attempt === 1 || attempt % 10 === 0) {
          this.#options.logger.error({ event: 'store_unreachable', attempt, err: this.#describe(error) }, 'cannot reach etcd to load the registry; not ready, retrying')
        }
        await new Promise((resolve) => setTimeout(resolve, delay).unref())
        delay = Math.min(delay * 2, 5000)
      }
    }
    if (this.#closed) return
    this.#probeTimer = setInterval(() => void this.#probe(), this.#options.probeIntervalMs)
    this.#probeTimer.unref()
    // Runs for leader (health checks, eviction logs) as long as the store is open; renews its
    // lease three times per TTL at least.
    void this.#election.step()
    this.#electionTimer = setInterval(() => void this.#election.step(), Math.min(this.#options.probeIntervalMs, (ELECTION_TTL_SECONDS * 1000) / 3))
    this.#electionTimer.unref()
  }

  async close(): Promise<void> {
    this.#closed = true
    clearInterval(this.#probeTimer)
    clearInterval(this.#electionTimer)
    for (const waiter of this.#catchUp) waiter.resolve()
    this.#catchUp = []
    // Handing over the health checks at once is a courtesy: without etcd it would never answer,
    // and the election key expires with its lease anyway. So is cancelling the watch.
    const courtesy = async (step: Promise<unknown> | undefined) => {
      let timer: NodeJS.Timeout | undefined
      const giveUp = new Promise((resolve) => {
        timer = setTimeout(resolve, this.#options.requestTimeoutMs)
      })
      await Promise.race([step?.catch(() => {}), giveUp])
      clearTimeout(timer)
    }
    await courtesy(this.#election.close())
    this.#keepAlive.close()
    this.#electionKeepAlive.close()
    await courtesy(this.#watcher?.cancel())
    this.#client.close()
    for (const member of this.#members) member.close()
  }

  status(): StoreStatus {
    if (!this.#loaded) return { ready: false, stale: true, detail: this.#problem ?? 'loading the registry from etcd' }
    const stale = !this.#quorum || !this.#watching
    return stale ? { ready: true, stale: true, detail: this.#problem ?? 'etcd unreachable' } : { ready: true, stale: false }
  }

  isLeader(): boolean {
    return this.#election.leader && this.status().stale === false
  }

  watch(listener: (serviceName: string) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  caughtUp(index: number, signal: AbortSignal): Promise<void> {
    if (index <= this.#revision || signal.aborted) return Promise.resolve()
    return new Promise((resolve) => {
      const waiter = {
        revision: index,
        resolve: () => {
          signal.removeEventListener('abort', waiter.resolve)
          this.#catchUp = this.#catchUp.filter((w) => w !== waiter)
          resolve()
        },
      }
      signal.addEventListener('abort', waiter.resolve, { once: true })
      this.#catchUp.push(waiter)
    })
  }

  find(ref: InstanceRef): InstanceRecord | undefined {
    return this.#find(ref)?.record
  }

  discover(serviceName: string): ServiceSnapshot {
    return this.#views(serviceName).discover
  }

  members(serviceName: string): ServiceSnapshot {
    return this.#views(serviceName).members
  }

  services(): ServiceSnapshot[] {
    return [...this.#services.keys()].sort().map((name) => this.members(name))
  }

  index(): number {
    return Math.max(1, this.#revision)
  }

  async evictExpired(): Promise<SweepResult> {
    const evicted = this.#expired
    this.#expired = []
    const critical: InstanceRecord[] = []
    // The leader turns critical every passing TTL check whose key etcd has deleted (no pass within
    // the TTL); checking on every sweep also covers deletions while no replica was the leader.
    if (this.isLeader()) {
      for (const entry of [...this.#byId.values()]) {
        if (entry.record.consul?.ttlMs === undefined || entry.record.health !== 'passing' || this.#checks.has(entry.record.id)) continue
        try {
          const updated = await this.#update(entry, { health: 'failing' })
          if (updated) critical.push(updated.record)
        } catch {
          // Not written (etcd unreachable): the next sweep tries again.
        }
      }
    }
    return { evicted, critical }
  }

  /** The lease an instance's key is put on: the registry's TTL, or its Consul check's (none without DeregisterCriticalServiceAfter). */
  async #instanceLease(check: ConsulCheck | undefined): Promise<string> {
    if (check !== undefined && (check.ttlMs === undefined || check.deregisterAfterMs === undefined)) return NO_LEASE
    const ttl = check === undefined ? this.#ttlSeconds : Math.ceil((check.ttlMs! + check.deregisterAfterMs!) / 1000)
    return (await this.#timed('grant a lease', this.#client.leaseClient.leaseGrant({ TTL: ttl, ID: 0 }))).ID
  }

  /** A lease for a passing check's key: its TTL, in whole seconds. */
  async #checkLease(check: ConsulCheck): Promise<string> {
    return (await this.#timed('grant a lease', this.#client.leaseClient.leaseGrant({ TTL: Math.ceil(check.ttlMs! / 1000), ID: 0 }))).ID
  }

  async register(request: RegisterBody, owner = ADMIN_OWNER, consul?: { check: ConsulCheck; health: 'passing' | 'failing' | 'unchecked' }): Promise<RegisterResult> {
    this.#writable()
    // A compare-and-swap: if another replica changed the instance in between, look again.
    for (let attempt = 0; attempt < 5; attempt++) {
      const existingId = this.#idByUrl.get(urlKey(request.service_name, request.url))
      const wantedId = request.instance_id ?? existingId ?? instanceIdFor(request.service_name, request.url)
      const holder = this.#byId.get(wantedId)
      if (holder && (holder.record.serviceName !== request.service_name || holder.record.url !== request.url)) return { kind: 'conflict', existing: holder.record }
      const previous = existingId === undefined ? undefined : this.#byId.get(existingId)
      if (!previous && this.#byId.size >= this.#options.maxInstances) return { kind: 'full', limit: this.#options.maxInstances }
      if (!previous && (this.#services.get(request.service_name)?.entries.size ?? 0) >= this.#options.maxInstancesPerService) {
        return { kind: 'service_full', limit: this.#options.maxInstancesPerService }
      }
      const now = Date.now()
      const record: InstanceRecord = {
        id: wantedId,
        serviceName: request.service_name,
        url: request.url,
        reportedStatus: request.status ?? 'up',
        health: request.health_url === undefined ? (consul?.health ?? 'unchecked') : previous?.record.healthUrl === request.health_url ? previous.record.health : 'passing',
        healthUrl: request.health_url,
        metadata: { ...request.metadata },
        registeredAt: previous && previous.record.id === wantedId ? previous.record.registeredAt : now,
        lastHeartbeat: now,
        owner: previous?.record.owner ?? owner,
        ...(consul === undefined ? {} : { consul: consul.check }),
      }
      const key = this.#keyOf(record)
      // A registration (or refresh) starts a fresh lease: it counts as a heartbeat. The previous
      // lease, if any, is left with no key and expires on its own.
      const lease = await this.#instanceLease(record.consul)
      const ops: IRequestOp[] = [{ request_put: { key: Buffer.from(key), value: encode(record), ...(lease === NO_LEASE ? {} : { lease }) } }]
      const passing = record.consul?.ttlMs !== undefined && record.health === 'passing'
      if (passing) ops.push({ request_put: { key: Buffer.from(key + CHECK_SUFFIX), value: Buffer.from(record.id), lease: await this.#checkLease(record.consul!) } })
      else ops.push({ request_delete_range: { key: Buffer.from(key + CHECK_SUFFIX) } })
      // The same instance under a new id: its old keys go in the same transaction.
      if (previous && previous.key !== key) {
        ops.push({ request_delete_range: { key: Buffer.from(previous.key) } }, { request_delete_range: { key: Buffer.from(previous.key + CHECK_SUFFIX) } })
      }
      const compare = previous
        ? { key: Buffer.from(previous.key), target: 'Mod' as const, result: 'Equal' as const, mod_revision: String(previous.modRevision) }
        : { key: Buffer.from(key), target: 'Create' as const, result: 'Equal' as const, create_revision: '0' }
      const result = await this.#timed('register', this.#client.kv.txn({ compare: [compare], success: ops, failure: [] }))
      await this.#reach(result.header)
      if (!result.succeeded) {
        for (const op of ops) {
          const unused = op.request_put?.lease
          if (unused !== undefined) void this.#client.leaseClient.leaseRevoke({ ID: unused }).catch(() => {})
        }
        continue
      }
      this.#lastHeartbeat.set(wantedId, now)
      const stored = this.#byId.get(wantedId)?.record ?? record
      return previous ? { kind: 'refreshed', instance: stored } : { kind: 'created', instance: stored }
    }
    throw registryError('STORE_UNAVAILABLE', 'The instance kept changing under this registration; try again')
  }

  async heartbeat(ref: HeartbeatBody): Promise<InstanceRecord | undefined> {
    this.#writable()
    let entry = this.#find(ref)
    if (!entry) return undefined
    if (ref.status !== undefined && ref.status !== entry.record.reportedStatus) {
      const changed = await this.#update(entry, { reportedStatus: ref.status })
      if (!changed) return undefined
      entry = changed
    }
    if (entry.lease !== NO_LEASE) {
      const ttl = await this.#timed('renew a lease', this.#renew(entry.lease))
      // The lease is gone: the instance expired, and its delete is on its way to every replica.
      if (ttl <= 0) return undefined
    }
    if (entry.record.consul?.ttlMs !== undefined) {
      const passed = await this.#pass(entry)
      if (!passed) return undefined
      entry = passed
    }
    const now = Date.now()
    this.#lastHeartbeat.set(entry.record.id, now)
    const current = this.#byId.get(entry.record.id)
    if (!current) return undefined
    // The time of the heartbeat is this replica's to know (it is not written: a write per
    // heartbeat would wake every watcher): shown here, and the cached views rebuilt.
    current.record = { ...current.record, lastHeartbeat: now }
    const service = this.#services.get(current.record.serviceName)
    if (service) service.views = undefined
    return current.record
  }

  /**
   * The pass of a Consul TTL check: its key is renewed, or put again on a fresh lease if it has
   * lapsed (first, so that the leader never sees the check passing without its key), and the check
   * turned passing if it was not.
   */
  async #pass(entry: Entry): Promise<Entry | undefined> {
    const check = this.#checks.get(entry.record.id)
    const renewed = check !== undefined && (await this.#timed('renew a lease', this.#renew(check.lease))) > 0
    if (!renewed) {
      const lease = await this.#checkLease(entry.record.consul!)
      const result = await this.#timed(
        'pass a check',
        this.#client.kv.txn({
          compare: [{ key: Buffer.from(entry.key), target: 'Create', result: 'Greater', create_revision: '0' }],
          success: [{ request_put: { key: Buffer.from(entry.key + CHECK_SUFFIX), value: Buffer.from(entry.record.id), lease } }],
          failure: [],
        }),
      )
      await this.#reach(result.header)
      if (!result.succeeded) return undefined
    }
    const current = this.#byId.get(entry.record.id)
    if (!current) return undefined
    return current.record.health === 'passing' ? current : await this.#update(current, { health: 'passing' })
  }

  /** A renewal, tried once more on a fresh stream (perhaps to another member) if the first fails. */
  async #renew(lease: string): Promise<number> {
    try {
      return await this.#keepAlive.renew(lease)
    } catch {
      return await this.#keepAlive.renew(lease)
    }
  }

  async deregister(ref: InstanceRef): Promise<InstanceRecord | undefined> {
    this.#writable()
    for (let attempt = 0; attempt < 5; attempt++) {
      const entry = this.#find(ref)
      if (!entry) return undefined
      this.#deregistering.add(entry.record.id)
      try {
        const result = await this.#timed(
          'deregister',
          this.#client.kv.txn({
            compare: [{ key: Buffer.from(entry.key), target: 'Mod', result: 'Equal', mod_revision: String(entry.modRevision) }],
            success: [{ request_delete_range: { key: Buffer.from(entry.key) } }, { request_delete_range: { key: Buffer.from(entry.key + CHECK_SUFFIX) } }],
            failure: [],
          }),
        )
        await this.#reach(result.header)
        if (result.succeeded) return entry.record
      } finally {
        this.#deregistering.delete(entry.record.id)
      }
    }
    throw registryError('STORE_UNAVAILABLE', 'The instance kept changing under this deregistration; try again')
  }

  async setHealth(instanceId: string, health: 'passing' | 'failing'): Promise<InstanceRecord | undefined> {
    this.#writable()
    const entry = this.#byId.get(instanceId)
    if (!entry) return undefined
    if (entry.record.health === health) return entry.record
    return (await this.#update(entry, { health }))?.record
  }

  /** Writes a changed record under the same lease, if the key is as the cache has it; undefined if it is gone. */
  async #update(entry: Entry, change: Partial<InstanceRecord>): Promise<Entry | undefined> {
    const record: InstanceRecord = { ...entry.record, ...change }
    let result: Awaited<ReturnType<Etcd3['kv']['txn']>>
    try {
      result = await this.#timed(
        'update an instance',
        this.#client.kv.txn({
          compare: [{ key: Buffer.from(entry.key), target: 'Mod', result: 'Equal', mod_revision: String(entry.modRevision) }],
          success: [{ request_put: { key: Buffer.from(entry.key), value: encode(record), ...(entry.lease === NO_LEASE ? {} : { lease: entry.lease }) } }],
          failure: [],
        }),
      )
    } catch (error) {
      if (error instanceof EtcdLeaseInvalidError) return undefined
      throw error
    }
    await this.#reach(result.header)
    return result.succeeded ? this.#byId.get(record.id) : undefined
  }

  #writable(): void {
    if (!this.#loaded) throw registryError('STORE_UNAVAILABLE', `The registry has not loaded its state from etcd yet: ${this.#problem ?? 'connecting'}`)
  }

  /** A store call that answers within the request timeout, or fails with STORE_UNAVAILABLE. */
  async #timed<T>(what: string, call: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.#options.requestTimeoutMs} ms`)), this.#options.requestTimeoutMs)
    })
    try {
      return await Promise.race([call, timeout])
    } catch (error) {
      // The lease a write named has expired: the instance is gone (its delete is on its way), etcd is fine.
      if (error instanceof EtcdLeaseInvalidError) throw error
      // The call may still complete; whatever it did, the watch will tell.
      call.catch(() => {})
      this.#quorumLost(error)
      throw registryError('STORE_UNAVAILABLE', `etcd could not ${what}: ${this.#describe(error)}`)
    } finally {
      clearTimeout(timer)
    }
  }

  /** Waits (a bounded time) until the watch has brought the cache to a write's revision. */
  async #reach(header: IResponseHeader): Promise<void> {
    const revision = Number(header.revision)
    if (revision <= this.#revision) return
    const signal = AbortSignal.timeout(this.#options.requestTimeoutMs)
    await this.caughtUp(revision, signal)
  }

  #find(ref: InstanceRef): Entry | undefined {
    const id = 'instance_id' in ref ? ref.instance_id : this.#idByUrl.get(urlKey(ref.service_name, ref.url))
    return id === undefined ? undefined : this.#byId.get(id)
  }

  #keyOf(record: InstanceRecord): string {
    return `${this.#servicesPrefix}${record.serviceName}/${record.id}`
  }

  #views(serviceName: string): { discover: ServiceSnapshot; members: ServiceSnapshot } {
    const service = this.#services.get(serviceName)
    if (!service) {
      const empty = { serviceName, index: EMPTY_INDEX, instances: [] }
      return { discover: empty, members: empty }
    }
    service.views ??= serviceViews(
      serviceName,
      service.index,
      [...service.entries.values()].map((entry) => entry.record),
    )
    return service.views
  }

  /** Reads every key under the prefix at one revision, then watches from the next. */
  async #load(): Promise<void> {
    const start = Buffer.from(this.#servicesPrefix)
    const end = prefixEnd(start)
    const kvs: IKeyValue[] = []
    let header: IResponseHeader | undefined
    let from = start
    for (;;) {
      const page = await this.#timed('load the registry', this.#client.kv.range({ key: from, range_end: end, limit: PAGE, ...(header ? { revision: header.revision } : {}) }))
      header ??= page.header
      kvs.push(...page.kvs)
      if (!page.more || page.kvs.length === 0) break
      from = Buffer.concat([page.kvs[page.kvs.length - 1]!.key, Buffer.from([0])])
    }
    if (!header) return
    const before = new Map([...this.#services].map(([name, service]) => [name, service.index]))
    this.#services.clear()
    this.#byId.clear()
    this.#idByUrl.clear()
    this.#checks.clear()
    for (const kv of kvs) this.#put(kv)
    this.#epoch = await this.#readEpoch()
    this.#revision = Number(header.revision)
    this.#loaded = true
    this.#problem = undefined
    this.#quorum = true
    // Just read at a quorum's revision, and the watch resumes from the next one: not stale
    // unless the watch is then lost.
    this.#watching = true
    // After a reload (the watch fell behind a compaction), tell watchers of every service that moved.
    const changed = new Set<string>()
    for (const [name, index] of before) if (this.#services.get(name)?.index !== index) changed.add(name)
    for (const [name, service] of this.#services) if (before.get(name) !== service.index) changed.add(name)
    this.#settle(changed)
    this.#follow(this.#revision + 1)
    this.#options.logger.info(
      { event: 'store_loaded', store: 'etcd', instances: this.#byId.size, services: this.#services.size, revision: this.#revision, epoch: this.#epoch },
      'registry state loaded from etcd',
    )
  }

  /**
   * The registry's epoch: a random name its first replica writes under the prefix, read by every
   * other. It names the data, not the processes or the cluster: etcd derives a cluster's id from
   * its members' URLs and token, so a cluster recreated empty with the same settings would keep
   * its id, and clients would not learn that everything they knew is gone.
   */
  async #readEpoch(): Promise<string> {
    const key = Buffer.from(`${this.#options.prefix}/epoch`)
    const mine = Buffer.from(`etcd-${randomBytes(8).toString('hex')}`)
    const result = await this.#timed(
      'read the epoch',
      this.#client.kv.txn({
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: '0' }],
        success: [{ request_put: { key, value: mine } }],
        failure: [{ request_range: { key } }],
      }),
    )
    return result.succeeded ? mine.toString() : (result.responses[0]?.response_range.kvs[0]?.value.toString() ?? mine.toString())
  }

  /**
   * Watches the services from `fromRevision` on, through one member. A watch that member does not
   * confirm within the request timeout, or loses (its stream failed, or its connection stopped
   * answering keep-alive pings), moves to the next member and resumes from the revision the cache
   * has reached: etcd3's own reconnection would go back to the same member, or to a random one.
   */
  #follow(fromRevision: number): void {
    // Not awaited: cancelling a watch its member has not confirmed waits for that member, which
    // may never answer. Whatever the old watch still brings is ignored (`this.#watcher` differs).
    void this.#watcher?.cancel().catch(() => {})
    this.#watcher = undefined
    if (this.#closed) return
    const member = this.#members[this.#watchMember]!
    const watcher = member.watch().prefix(this.#servicesPrefix).withPreviousKV().startRevision(String(fromRevision)).watcher()
    this.#watcher = watcher
    const unconfirmed = setTimeout(
      () => this.#watchLost(watcher, new Error(`etcd did not confirm the watch within ${this.#options.requestTimeoutMs} ms`)),
      this.#options.requestTimeoutMs,
    )
    unconfirmed.unref()
    watcher.on('connected', () => {
      clearTimeout(unconfirmed)
      if (this.#watcher !== watcher) return
      this.#watchFailures = 0
      if (!this.#watching) this.#options.logger.info({ event: 'store_watching', revision: this.#revision }, 'following etcd again')
      this.#watching = true
      if (this.#quorum) this.#problem = undefined
    })
    watcher.on('disconnected', (error) => {
      clearTimeout(unconfirmed)
      this.#watchLost(watcher, error)
    })
    watcher.on('data', (response) => {
      if (this.#watcher !== watcher) return
      const changed = new Set<string>()
      for (const event of response.events) {
        const name = event.type === 'Delete' ? this.#delete(event.kv, event.prev_kv) : this.#put(event.kv)
        if (name !== undefined) changed.add(name)
      }
      this.#revision = Math.max(this.#revision, Number(response.header.revision))
      this.#settle(changed)
    })
    // A watch that fell behind etcd's compaction cannot resume: load everything again.
    watcher.on('error', (error) => {
      clearTimeout(unconfirmed)
      if (this.#closed || this.#watcher !== watcher) return
      this.#watching = false
      this.#options.logger.warn({ event: 'store_resync', err: this.#describe(error) }, 'etcd watch cancelled; reloading the registry')
      void this.#reload()
    })
  }

  /** The watch is lost: stale until another member confirms a new one, from where the cache is. */
  #watchLost(watcher: Watcher, error: unknown): void {
    if (this.#closed || this.#watcher !== watcher) return
    if (this.#watching) this.#options.logger.warn({ event: 'store_watch_lost', err: this.#describe(error) }, 'lost the etcd watch; answering from the cache, reconnecting')
    this.#watching = false
    if (this.#quorum) this.#problem = `lost the etcd watch (${this.#describe(error)}); watching from another member`
    // Cancelled now, so that etcd3 does not reconnect it to the same member meanwhile.
    void watcher.cancel().catch(() => {})
    this.#watchMember = (this.#watchMember + 1) % this.#members.length
    setTimeout(
      () => {
        if (!this.#closed && this.#watcher === watcher) this.#follow(this.#revision + 1)
      },
      backoffDelay(this.#watchFailures++, WATCH_RETRY),
    ).unref()
  }

  async #reload(): Promise<void> {
    for (let delay = 250; !this.#closed; delay = Math.min(delay * 2, 5000)) {
      try {
        return await this.#load()
      } catch (error) {
        this.#problem = `cannot reload the registry from etcd (${this.#describe(error)})`
        await new Promise((resolve) => setTimeout(resolve, delay).unref())
      }
    }
  }

  /** The instance id of a check key (see CHECK_SUFFIX); undefined for any other key. */
  #checkOf(key: string): string | undefined {
    const parts = key.slice(this.#servicesPrefix.length).split('/')
    return parts.length === 3 && `/${parts[2]}` === CHECK_SUFFIX ? parts[1] : undefined
  }

  /** Applies a put to the cache; returns the service it changed. */
  #put(kv: IKeyValue): string | undefined {
    const key = kv.key.toString('utf8')
    const checked = this.#checkOf(key)
    if (checked !== undefined) {
      this.#checks.set(checked, { key, lease: String(kv.lease) })
      return undefined
    }
    const record = decode(kv.value)
    if (!record || key !== this.#keyOf(record)) {
      this.#options.logger.warn({ event: 'store_value_ignored', key }, 'ignoring a key under the registry prefix that is not an instance')
      return undefined
    }
    const modRevision = Number(kv.mod_revision)
    const local = this.#lastHeartbeat.get(record.id)
    const entry: Entry = {
      record: local !== undefined && local > record.lastHeartbeat ? { ...record, lastHeartbeat: local } : record,
      key,
      lease: String(kv.lease),
      modRevision,
    }
    const previous = this.#byId.get(record.id)
    if (previous) this.#forget(previous)
    let service = this.#services.get(record.serviceName)
    if (!service) {
      service = { index: modRevision, entries: new Map() }
      this.#services.set(record.serviceName, service)
    }
    service.entries.set(record.id, entry)
    // Keys load in key order, not revision order: the latest change is the highest.
    service.index = Math.max(service.index, modRevision)
    service.views = undefined
    this.#byId.set(record.id, entry)
    this.#idByUrl.set(urlKey(record.serviceName, record.url), record.id)
    return record.serviceName
  }

  /** Applies a delete to the cache; returns the service it changed. */
  #delete(kv: IKeyValue, previousKv: IKeyValue | undefined): string | undefined {
    const key = kv.key.toString('utf8')
    const checked = this.#checkOf(key)
    if (checked !== undefined) {
      if (this.#checks.get(checked)?.key === key) this.#checks.delete(checked)
      return undefined
    }
    const id = key.slice(key.lastIndexOf('/') + 1)
    const entry = this.#byId.get(id)
    if (!entry || entry.key !== key) return undefined
    this.#forget(entry)
    this.#lastHeartbeat.delete(id)
    const service = this.#services.get(entry.record.serviceName)
    if (service) {
      service.index = Number(kv.mod_revision)
      service.views = undefined
      if (service.entries.size === 0) this.#services.delete(entry.record.serviceName)
    }
    if (this.#election.leader && !this.#deregistering.has(id)) void this.#noteExpiry(entry, previousKv)
    return entry.record.serviceName
  }

  #forget(entry: Entry): void {
    this.#byId.delete(entry.record.id)
    if (this.#idByUrl.get(urlKey(entry.record.serviceName, entry.record.url)) === entry.record.id) this.#idByUrl.delete(urlKey(entry.record.serviceName, entry.record.url))
    const service = this.#services.get(entry.record.serviceName)
    service?.entries.delete(entry.record.id)
  }

  /**
   * The leader tells an expiry from another replica's deregistration by the lease: a deregistered
   * key goes while its lease lives on; an expired one goes with its lease.
   */
  async #noteExpiry(entry: Entry, previousKv: IKeyValue | undefined): Promise<void> {
    const lease = previousKv ? String(previousKv.lease) : entry.lease
    // A key with no lease only goes when it is deregistered.
    if (lease === NO_LEASE) return
    try {
      const answer = await this.#timed('read a lease', this.#client.leaseClient.leaseTimeToLive({ ID: lease, keys: false }))
      if (Number(answer.TTL) <= 0) this.#expired.push(entry.record)
    } catch {
      // Unknown: not counted as an eviction.
    }
  }

  /** After the cache moved: release the waiters it has caught up with, and tell listeners. */
  #settle(changed: Set<string>): void {
    if (this.#catchUp.length > 0) for (const waiter of this.#catchUp.filter((w) => w.revision <= this.#revision)) waiter.resolve()
    for (const name of changed) for (const listener of this.#listeners) listener(name)
  }

  /** A linearizable read: it needs a leader with quorum, which is exactly what writes need. */
  async #probe(): Promise<void> {
    try {
      await this.#timed('confirm quorum', this.#client.kv.range({ key: Buffer.from(`${this.#options.prefix}/quorum-probe`) }))
      if (!this.#quorum) this.#options.logger.info({ event: 'store_recovered', revision: this.#revision }, 'etcd quorum is back; writes accepted again')
      this.#quorum = true
      if (this.#watching) this.#problem = undefined
    } catch {
      // Logged by #quorumLost.
    }
  }

  #quorumLost(error: unknown): void {
    if (this.#quorum && this.#loaded) {
      this.#options.logger.warn(
        { event: 'store_stale', err: this.#describe(error) },
        'etcd does not answer (quorum lost or unreachable): discovery answers from the cache, marked stale; writes refused',
      )
    }
    this.#quorum = false
    this.#problem = `etcd unreachable or without quorum (${this.#describe(error)})`
  }

  #describe(error: unknown): string {
    if (error && typeof error === 'object' && 'detail' in error && typeof error.detail === 'string') return error.detail
    return error instanceof Error ? error.message : String(error)
  }
}

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>

/**
 * Per etcd member: after 3 failures in a row, calls skip it (the pool tries another member) for
 * 1 s, then one call at a time may try it again. etcd3's default breaker skips a member for 5 s:
 * after a quorum loss, when every member has failed, that kept every write refused for up to 5 s
 * after etcd was whole again (while leases, renewed by nobody, ran down).
 */
function hostBreaker(): HostPolicy {
  let failures = 0
  let openUntil = 0
  const policy = {
    async execute<T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> {
      if (failures >= 3 && Date.now() < openUntil) throw new Error('etcd member skipped after repeated failures')
      try {
        const result = await fn({ signal: new AbortController().signal })
        // Opening a stream proves nothing about the member (it fails later, if at all): only an
        // answered call closes the breaker.
        if (!(typeof result === 'object' && result !== null && 'write' in result)) failures = 0
        return result
      } catch (error) {
        if (error instanceof Error && isRecoverableError(error)) {
          failures++
          if (failures >= 3) openUntil = Date.now() + 1000
        }
        throw error
      }
    },
  }
  // The pool calls only `execute`; cockatiel's events are not used by it.
  return policy as unknown as HostPolicy
}

/**
 * The member a replica's streams start on: a hash of its name, so that replicas spread over the
 * members (and a test can choose a member through the name).
 */
export function firstMember(replicaName: string, members: number): number {
  return createHash('sha256').update(replicaName).digest().readUInt32BE(0) % members
}

/** No breaker and no retry: the streams' own rotation over members is their failover. */
function passThrough(): HostPolicy {
  // Async, as etcd3 expects: it reports a stream's failure with `execute(() => { throw error })`.
  const policy = { execute: async <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> => await fn({ signal: new AbortController().signal }) }
  return policy as unknown as HostPolicy
}

/** The end of a prefix range: the prefix with its last byte incremented. */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++
      return end.subarray(0, i + 1)
    }
  }
  return Buffer.from([0])
}
