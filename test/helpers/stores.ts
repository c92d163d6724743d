import { randomBytes } from 'node:crypto'
import { after } from 'node:test'
import { EtcdStore } from '../../src/registry/etcd-store.ts'
import { MemoryStore } from '../../src/registry/memory-store.ts'
import type { RegistryStore } from '../../src/registry/store.ts'
import { type EtcdCluster, startEtcd } from './etcd.ts'
import { silentLogger } from './logger.ts'
import { waitFor } from './wait.ts'

export interface StoreOptions {
  ttlMs?: number
  maxInstances?: number
  maxInstancesPerService?: number
  /** etcd only: replicas of one registry share a prefix; by default each store gets its own. */
  prefix?: string
}

/** One way of storing the registry, for tests that must hold on every store. */
export interface StoreKind {
  readonly name: 'memory' | 'etcd'
  /** A started store (loaded, for etcd), closed when the test file ends. */
  make(options?: StoreOptions): Promise<RegistryStore>
}

let cluster: Promise<EtcdCluster> | undefined
const open: RegistryStore[] = []

// Registered as the module loads, so on the test file's root and run once the file ends. Registered
// on first use instead, it would belong to the test that made the first store (node:test attaches a
// hook to the test it is called in) and stop etcd under every test after that one.
after(async () => {
  await Promise.all(open.splice(0).map((store) => store.close()))
  await (await cluster?.catch(() => undefined))?.close()
})

/** One etcd member for the whole test file, started on first use, stopped when the file ends. */
export function sharedEtcd(): Promise<EtcdCluster> {
  cluster ??= startEtcd({ members: 1 })
  return cluster
}

/** A prefix no other store in this run uses, so tests on one etcd cannot see each other's keys. */
export function freshPrefix(): string {
  return `/test-${randomBytes(6).toString('hex')}`
}

export const memory: StoreKind = {
  name: 'memory',
  make: async (options = {}) => new MemoryStore({ ttlMs: options.ttlMs ?? 60_000, maxInstances: options.maxInstances, maxInstancesPerService: options.maxInstancesPerService }),
}

export const etcd: StoreKind = {
  name: 'etcd',
  make: async (options = {}) => {
    const { endpoints } = await sharedEtcd()
    const store = new EtcdStore({
      endpoints: endpoints.split(','),
      prefix: options.prefix ?? freshPrefix(),
      ttlMs: options.ttlMs ?? 60_000,
      logger: silentLogger(),
      maxInstances: options.maxInstances,
      maxInstancesPerService: options.maxInstancesPerService,
    })
    open.push(store)
    await store.start()
    await waitFor(() => store.status().ready && !store.status().stale, { what: 'the etcd store loaded and following' })
    return store
  },
}

/** Every store: the registry's behaviour must not depend on which one holds its state. */
export const STORE_KINDS: readonly StoreKind[] = [memory, etcd]
