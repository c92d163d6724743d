// Two registry replicas' stores over one etcd prefix, the first leading and the second standing
// by; closes them in the order argv[2] names (follower-first, leader-first, together), prints
// `closed` and does nothing else: the process must then exit by itself, with nothing of the
// stores (a timer, a watch, a stream) left running. For etcd-registry.test.ts.
import { Etcd3 } from 'etcd3'
import { EtcdStore } from '../../src/registry/etcd-store.ts'
import { silentLogger } from './logger.ts'
import { waitFor } from './wait.ts'

const endpoints = (process.env.ETCD_ENDPOINTS ?? '').split(',')
const prefix = process.env.ETCD_PREFIX ?? ''
const order = process.argv[2]
const replica = (name: string) => new EtcdStore({ endpoints, prefix, ttlMs: 30_000, logger: silentLogger(), replicaName: name, requestTimeoutMs: 1000, probeIntervalMs: 200 })

const leader = replica('leader')
await leader.start()
await waitFor(() => leader.isLeader(), { what: 'the first replica leading' })
const follower = replica('follower')
await follower.start()
// Both stand: two keys in the election (etcd3's Election keys, which the store keeps).
const reader = new Etcd3({ hosts: endpoints })
await waitFor(async () => (await reader.getAll().prefix(`election/${prefix}/leader/`).keys()).length === 2, { what: 'the second replica standing' })
reader.close()
if (follower.isLeader()) throw new Error('two leaders')

if (order === 'follower-first') {
  await follower.close()
  await leader.close()
} else if (order === 'leader-first') {
  await leader.close()
  await follower.close()
} else if (order === 'together') {
  await Promise.all([leader.close(), follower.close()])
} else {
  throw new Error(`unknown order ${order}`)
}
console.log('closed')
