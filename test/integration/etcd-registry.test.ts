// Two registry replicas over one etcd: what a client relies on when it moves between them.
// The registry's other tests run on both stores (test/helpers/stores.ts); these are the
// behaviours only a shared store has: one view across replicas, expiry by etcd's leases, a
// restart that loses nothing, and a store that cannot write without failing requests.
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Etcd3 } from 'etcd3'
import { EtcdStore, firstMember } from '../../src/registry/etcd-store.ts'
import { LeaseKeepAlive } from '../../src/registry/etcd-keepalive.ts'
import { HealthChecker } from '../../src/registry/health-checker.ts'
import { buildRegistryApp, type RegistryApp } from '../../src/registry/server.ts'
import { type EtcdCluster, startEtcd } from '../helpers/etcd.ts'
import { capturingLogger, silentLogger } from '../helpers/logger.ts'
import { freshPrefix } from '../helpers/stores.ts'
import { waitFor } from '../helpers/wait.ts'

const CLOSE_CHILD = new URL('../helpers/etcd-close-child.ts', import.meta.url).pathname

const apps: RegistryApp[] = []
const clusters: EtcdCluster[] = []
after(async () => {
  await Promise.all(
    apps.splice(0).map(async (r) => {
      await r.app.close()
      await r.store.close()
    }),
  )
  await Promise.all(clusters.splice(0).map((c) => c.close()))
})

async function cluster(members: 1 | 3 = 1): Promise<EtcdCluster> {
  const started = await startEtcd({ members })
  clusters.push(started)
  return started
}

/** A registry replica over the cluster's `prefix`, loaded and following. */
async function replica(etcd: EtcdCluster, prefix: string, options: { ttlMs?: number; logger?: ReturnType<typeof silentLogger>; replicaName?: string } = {}) {
  const logger = options.logger ?? silentLogger()
  const ttlMs = options.ttlMs ?? 30_000
  const store = new EtcdStore({
    endpoints: etcd.endpoints.split(','),
    prefix,
    ttlMs,
    logger,
    requestTimeoutMs: 1000,
    probeIntervalMs: 200,
    ...(options.replicaName === undefined ? {} : { replicaName: options.replicaName }),
  })
  const registry = buildRegistryApp({ logger, ttlMs, store })
  apps.push(registry)
  await store.start()
  await waitFor(() => !store.status().stale, { what: 'the replica following etcd' })
  return { ...registry, store }
}

const register = (r: RegistryApp, body: Record<string, unknown>) => r.app.inject({ method: 'POST', url: '/register', payload: body })
const discover = (r: RegistryApp, name: string, query = '') => r.app.inject({ method: 'GET', url: `/discover/${name}${query}` })

describe('registry replicas over etcd', () => {
  it('serve one view: what one replica registers, the other discovers, with the same index and epoch', async () => {
    const etcd = await cluster()
    const prefix = freshPrefix()
    const [a, b] = [await replica(etcd, prefix), await replica(etcd, prefix)]
    const created = await register(a, { service_name: 'product', url: 'http://10.0.0.1:8081', metadata: { zone: 'a' } })
    assert.equal(created.statusCode, 201)
    // Read your writes on the replica that wrote; the other follows through its watch.
    const onA = await discover(a, 'product')
    assert.equal(onA.json().instances.length, 1)
    const onB = await waitFor(async () => {
      const answer = await discover(b, 'product')
      return answer.json().instances.length === 1 && answer
    })
    assert.deepEqual(
      onB.json().instances.map((i: { id: string }) => i.id),
      [created.json().id],
    )
    assert.equal(onB.headers['x-registry-index'], onA.headers['x-registry-index'])
    assert.equal(onB.headers['x-registry-epoch'], onA.headers['x-registry-epoch'])
    assert.match(String(onA.headers['x-registry-epoch']), /^etcd-[0-9a-f]+$/)
    assert.equal(onA.headers['x-registry-warmup-ms'], '0')
    assert.equal(onA.headers['x-registry-stale'], undefined)

    // Deregistered on B: gone on A too.
    const removed = await b.app.inject({ method: 'DELETE', url: `/instances/${created.json().id}` })
    assert.equal(removed.statusCode, 204)
    await waitFor(async () => (await discover(a, 'product')).json().instances.length === 0, { what: 'the deregistration seen by the other replica' })
  })

  it('a blocking query carried to the other replica continues there, and wakes on a change made on the first', async () => {
    const etcd = await cluster()
    const prefix = freshPrefix()
    const [a, b] = [await replica(etcd, prefix), await replica(etcd, prefix)]
    await register(a, { service_name: 'order', url: 'http://10.0.0.2:8083' })
    const first = await discover(a, 'order')
    const { 'x-registry-index': index, 'x-registry-epoch': epoch } = first.headers
    // Same index, same epoch, on B: it blocks (nothing changed) until A registers another.
    const waiting = discover(b, 'order', `?index=${index}&epoch=${epoch}&wait=10s`)
    let answered = false
    void waiting.then(() => {
      answered = true
    })
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(answered, false, 'the blocking query on the other replica waits: its index is current there')
    const started = Date.now()
    await register(a, { service_name: 'order', url: 'http://10.0.0.3:8083' })
    const woken = await waiting
    assert.ok(Date.now() - started < 5000)
    assert.equal(woken.json().instances.length, 2)
    assert.ok(Number(woken.headers['x-registry-index']) > Number(index))
  })

  it('an index ahead of a replica waits for its cache rather than answering with older data', async () => {
    const etcd = await cluster()
    const prefix = freshPrefix()
    const a = await replica(etcd, prefix)
    const created = await register(a, { service_name: 'product', url: 'http://10.0.0.4:8081' })
    const index = Number((await discover(a, 'product')).headers['x-registry-index'])
    // A replica whose cache is behind: it answers only once it has caught up with that index.
    const behind = await replica(etcd, prefix)
    assert.ok(behind.store.revision >= index, 'a replica that starts loads up to the current revision')
    const started = Date.now()
    const answer = await discover(behind, 'product', `?index=${index + 1000}&wait=300ms`)
    // Nothing reaches that revision: it waited the whole wait, and then answered what it has.
    assert.ok(Date.now() - started >= 280, `waited ${Date.now() - started} ms`)
    assert.equal(answer.statusCode, 200)
    assert.deepEqual(
      answer.json().instances.map((i: { id: string }) => i.id),
      [created.json().id],
    )

    // An index fresh from A, at once on B: whether or not B has seen it yet, B never answers with
    // the view from before it.
    for (let n = 0; n < 5; n++) {
      const url = `http://10.0.2.${n}:8081`
      await register(a, { service_name: 'product', url })
      const fresh = (await discover(a, 'product')).headers['x-registry-index']
      const onB = await discover(behind, 'product', `?index=${fresh}&wait=200ms`)
      assert.ok(Number(onB.headers['x-registry-index']) >= Number(fresh))
      assert.ok(
        onB.json().instances.some((i: { url: string }) => i.url === url),
        'the other replica answered with the view that index names, or a newer one',
      )
    }
  })

  it('a restarted replica serves the whole view at once, with the same epoch', async () => {
    const etcd = await cluster()
    const prefix = freshPrefix()
    const a = await replica(etcd, prefix)
    for (let n = 0; n < 25; n++) assert.equal((await register(a, { service_name: `svc-${n % 5}`, url: `http://10.0.1.${n}:80` })).statusCode, 201)
    const before = await a.app.inject({ method: 'GET', url: '/services' })
    const epoch = (await discover(a, 'svc-0')).headers['x-registry-epoch']
    const indexes = await Promise.all([0, 1, 2, 3, 4].map(async (n) => (await discover(a, `svc-${n}`)).headers['x-registry-index']))
    await a.app.close()
    await a.store.close()
    const restarted = await replica(etcd, prefix)
    // No warm-up and no waiting for re-registrations: its first answer is the whole registry.
    const after = await restarted.app.inject({ method: 'GET', url: '/services' })
    assert.deepEqual(after.json(), before.json())
    assert.equal((await discover(restarted, 'svc-0')).headers['x-registry-epoch'], epoch)
    // A service's index is its latest change: the same as the replica that saw each one happen.
    assert.deepEqual(await Promise.all([0, 1, 2, 3, 4].map(async (n) => (await discover(restarted, `svc-${n}`)).headers['x-registry-index'])), indexes)
  })

  it('the epoch names the data: another prefix, or the same prefix emptied, is another epoch', async () => {
    const etcd = await cluster()
    const prefix = freshPrefix()
    const first = await replica(etcd, prefix)
    const epoch = first.epoch
    assert.notEqual((await replica(etcd, freshPrefix())).epoch, epoch, 'another registry on the same cluster')
    await first.app.close()
    await first.store.close()
    // Everything under the prefix gone (a cluster recreated empty keeps its cluster id).
    const client = new Etcd3({ hosts: etcd.endpoints.split(',') })
    await client.delete().prefix(prefix)
    client.close()
    const again = await replica(etcd, prefix)
    assert.match(again.epoch, /^etcd-[0-9a-f]+$/)
    assert.notEqual(again.epoch, epoch, 'clients learn that what they knew is gone')
  })

  it('a member that stops answering (not refusing) costs no failed write or heartbeat', async () => {
    const etcd = await cluster(3)
    const prefix = freshPrefix()
    const a = await replica(etcd, prefix)
    const created = (await register(a, { service_name: 'product', url: 'http://10.0.3.1:8081' })).json()
    // Frozen, as a host gone from the network: connections open, nothing comes back. Not the
    // leader, so the cluster keeps quorum and nothing should fail.
    const leader = await etcd.leader()
    const frozen = [0, 1, 2].find((i) => i !== leader)!
    const pid = etcd.members[frozen]!.pid!
    process.kill(pid, 'SIGSTOP')
    try {
      for (let n = 0; n < 15; n++) {
        const started = Date.now()
        const beat = await a.app.inject({ method: 'POST', url: '/heartbeat', payload: { instance_id: created.id } })
        assert.equal(beat.statusCode, 200, `heartbeat ${n}: ${beat.body}`)
        const registered = await register(a, { service_name: 'product', url: `http://10.0.3.${n + 2}:8081` })
        assert.equal(registered.statusCode, 201, `registration ${n}: ${registered.body}`)
        assert.ok(Date.now() - started < 3000, `heartbeat and registration ${n} took ${Date.now() - started} ms`)
      }
      // Whatever member a renewal's stream happens to start on: when it is the silent one, the
      // renewal fails within its deadline and the next goes to another member, never back to it.
      const endpoints = etcd.endpoints.split(',')
      const members = endpoints.map((endpoint) => new Etcd3({ hosts: endpoint }))
      const keepAlive = new LeaseKeepAlive(members, 300, frozen)
      try {
        const lease = members[(frozen + 1) % members.length]!.lease(10, { autoKeepAlive: false })
        const id = await lease.grant()
        await assert.rejects(keepAlive.renew(id), /no answer from etcd to a lease renewal within 300 ms/)
        for (let n = 0; n < 5; n++) assert.equal(await keepAlive.renew(id), 10, `renewal ${n} after the silent member`)
        await lease.revoke()
      } finally {
        keepAlive.close()
        for (const client of members) client.close()
      }
    } finally {
      process.kill(pid, 'SIGCONT')
    }
  })

  it('a replica whose watch is on a member that stops answering moves it to another member and catches up', async () => {
    const etcd = await cluster(3)
    const prefix = freshPrefix()
    const leader = await etcd.leader()
    const frozen = [0, 1, 2].find((i) => i !== leader)!
    // A replica's watch starts on the member after its two keep-alives' (see the store's
    // constructor): b's on the member about to freeze, a's on another.
    const named = (watching: (member: number) => boolean) => {
      let n = 0
      while (!watching((firstMember(`replica-${n}`, 3) + 2) % 3)) n++
      return `replica-${n}`
    }
    const { logger, lines } = capturingLogger()
    const a = await replica(etcd, prefix, { replicaName: named((member) => member !== frozen) })
    const b = await replica(etcd, prefix, { replicaName: named((member) => member === frozen), logger })
    // b's watch is confirmed and delivering before its member freezes.
    assert.equal((await register(a, { service_name: 'warm-up', url: 'http://10.0.4.9:8081' })).statusCode, 201)
    await waitFor(async () => (await discover(b, 'warm-up')).json().instances.length === 1, { what: 'replica b following' })
    const pid = etcd.members[frozen]!.pid!
    process.kill(pid, 'SIGSTOP')
    try {
      const created = await register(a, { service_name: 'product', url: 'http://10.0.4.1:8081' })
      assert.equal(created.statusCode, 201, created.body)
      // Silent, not refusing: b learns that its member is gone from the gRPC keep-alive ping it
      // does not answer (sent every 6 s, due within the 1 s request timeout here), marks itself
      // stale, and watches from the next member, from the revision it had reached: at most about
      // 7 s, where before it never caught up.
      const started = Date.now()
      await waitFor(async () => (await discover(b, 'product')).json().instances.length === 1, { timeoutMs: 12_000, what: 'replica b to see the registration' })
      assert.ok(Date.now() - started < 10_000, `caught up after ${Date.now() - started} ms`)
      await waitFor(() => !b.store.status().stale, { what: 'replica b not stale' })
      assert.deepEqual(b.store.status(), { ready: true, stale: false })
      assert.ok(
        lines.some((line) => line.event === 'store_watch_lost'),
        'the replica said it lost its watch',
      )
      // And it goes on following: a change after the move arrives as usual.
      const removed = await a.app.inject({ method: 'DELETE', url: `/instances/${created.json().id}` })
      assert.equal(removed.statusCode, 204, removed.body)
      await waitFor(async () => (await discover(b, 'product')).json().instances.length === 0, { what: 'replica b to see the deregistration' })
    } finally {
      process.kill(pid, 'SIGCONT')
    }
  })

  it('instances expire by their etcd lease on every replica; heartbeats keep them and do not move the index', async () => {
    const etcd = await cluster()
    const prefix = freshPrefix()
    const { logger, lines } = capturingLogger()
    const [a, b] = [await replica(etcd, prefix, { ttlMs: 1000, logger }), await replica(etcd, prefix, { ttlMs: 1000 })]
    const kept = (await register(a, { service_name: 'product', url: 'http://10.0.0.5:8081' })).json()
    const dropped = (await register(a, { service_name: 'product', url: 'http://10.0.0.6:8081' })).json()
    // Replica b follows a through its watch, some milliseconds behind (now and then 60-80 ms here).
    await waitFor(async () => (await discover(b, 'product')).json().instances.length === 2, { what: 'replica b to see both registrations' })
    const index = (await discover(b, 'product')).headers['x-registry-index']
    // Heartbeats for one of them, through the other replica (any replica renews any lease).
    const deadline = Date.now() + 3500
    while (Date.now() < deadline) {
      assert.equal((await b.app.inject({ method: 'POST', url: '/heartbeat', payload: { instance_id: kept.id } })).statusCode, 200)
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    for (const r of [a, b]) {
      const answer = await discover(r, 'product')
      assert.deepEqual(
        answer.json().instances.map((i: { id: string }) => i.id),
        [kept.id],
        'the one without heartbeats expired, on both',
      )
      assert.notEqual(answer.headers['x-registry-index'], index, 'the expiry is a change')
    }
    const afterExpiry = (await discover(a, 'product')).headers['x-registry-index']
    assert.equal((await a.app.inject({ method: 'POST', url: '/heartbeat', payload: { instance_id: kept.id } })).statusCode, 200)
    assert.equal((await discover(a, 'product')).headers['x-registry-index'], afterExpiry, 'a heartbeat is not a change')
    // The expired one is unknown now: its heartbeat gets 404, so its client re-registers.
    assert.equal((await a.app.inject({ method: 'POST', url: '/heartbeat', payload: { instance_id: dropped.id } })).statusCode, 404)
    // The leader (the first replica, elected first) logs the eviction once.
    await a.sweep()
    await waitFor(
      async () => {
        await a.sweep()
        return lines.some((line) => line.event === 'evicted' && line.instance_id === dropped.id)
      },
      { what: 'the eviction logged by the leader' },
    )
  })

  it('one replica at a time probes health URLs; its results reach every replica', async () => {
    const etcd = await cluster()
    const prefix = freshPrefix()
    const [a, b] = [await replica(etcd, prefix), await replica(etcd, prefix)]
    let probes = 0
    let healthy = true
    const endpoint = createServer((_request, response) => {
      probes++
      response.writeHead(healthy ? 200 : 503).end()
    })
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve))
    const port = (endpoint.address() as AddressInfo).port
    try {
      const instance = (await register(a, { service_name: 'product', url: `http://127.0.0.1:${port}`, health_url: `http://127.0.0.1:${port}/health/ready` })).json()
      await waitFor(() => a.store.isLeader() || b.store.isLeader(), { what: 'a leader elected' })
      const checkers = [a, b].map((r) => new HealthChecker({ store: r.store, logger: silentLogger(), intervalMs: 60_000, timeoutMs: 1000, failuresToDown: 1 }))
      // Both replicas run a round, as their timers would: only the leader probes.
      await Promise.all(checkers.map((checker) => checker.runOnce()))
      assert.equal(probes, 1, 'one probe per round across the replicas')
      healthy = false
      await Promise.all(checkers.map((checker) => checker.runOnce()))
      assert.equal(probes, 2)
      // The leader stored the result in etcd: the instance is down, and out of discovery, on both.
      for (const r of [a, b]) {
        // Listed, and down (b may not even have seen the registration yet when this starts).
        await waitFor(
          async () => {
            const listed = (await r.app.inject({ method: 'GET', url: '/services' })).json().services[0]?.instances ?? []
            return listed.length === 1 && listed[0].id === instance.id && listed[0].status === 'down'
          },
          { what: 'the failing instance listed as down' },
        )
        assert.deepEqual((await discover(r, 'product')).json().instances, [], 'a down instance is out of discovery')
      }
      await Promise.all(checkers.map((checker) => checker.stop()))
    } finally {
      endpoint.closeAllConnections()
      await new Promise((resolve) => endpoint.close(resolve))
    }
  })

  it('when the leader closes, the other replica leads within a few seconds', async () => {
    const etcd = await cluster()
    const prefix = freshPrefix()
    const a = await replica(etcd, prefix)
    await waitFor(() => a.store.isLeader(), { what: 'the first replica leading' })
    const b = await replica(etcd, prefix)
    const reader = new Etcd3({ hosts: etcd.endpoints.split(',') })
    try {
      await waitFor(async () => (await reader.getAll().prefix(`election/${prefix}/leader/`).keys()).length === 2, { what: 'the second replica standing' })
    } finally {
      reader.close()
    }
    assert.equal(b.store.isLeader(), false, 'one leader at a time')
    await a.app.close()
    await a.store.close()
    // Its key is revoked at close: b leads from its next election step, well before a's lease would expire.
    await waitFor(() => b.store.isLeader(), { timeoutMs: 4000, what: 'the other replica leading' })
  })

  it('replicas that close leave nothing running: their process exits by itself, whichever closes first', async () => {
    const etcd = await cluster()
    for (const order of ['follower-first', 'leader-first', 'together']) {
      const child = spawn(process.execPath, [CLOSE_CHILD, order], {
        env: { ...process.env, ETCD_ENDPOINTS: etcd.endpoints, ETCD_PREFIX: freshPrefix() },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk))
      child.stderr.on('data', (chunk: Buffer) => (output += chunk))
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
      const deadline = new Promise<'running'>((resolve) => setTimeout(resolve, 30_000, 'running').unref())
      const outcome = await Promise.race([exited, deadline])
      if (outcome === 'running') {
        child.kill('SIGKILL')
        assert.fail(`${order}: still running 30 s after it started; output:\n${output}`)
      }
      assert.deepEqual(outcome, [0, null], `${order}: ${output}`)
      assert.match(output, /^closed$/m, order)
    }
  })

  it('two replicas registering the same instance at once make one instance', async () => {
    const etcd = await cluster()
    const prefix = freshPrefix()
    const [a, b] = [await replica(etcd, prefix), await replica(etcd, prefix)]
    const body = { service_name: 'product', url: 'http://10.0.0.7:8081' }
    const answers = await Promise.all([register(a, body), register(b, body), register(a, body), register(b, body)])
    assert.ok(
      answers.every((answer) => answer.statusCode === 201 || answer.statusCode === 200),
      answers.map((a) => a.body).join('\n'),
    )
    await waitFor(async () => (await discover(b, 'product')).json().instances.length === 1 && (await discover(a, 'product')).json().instances.length === 1)
    assert.equal(answers.filter((answer) => answer.statusCode === 201).length >= 1, true)
  })

  it('without etcd: discovery answers from the cache marked stale, writes get 503 at once, and it recovers by itself', async () => {
    const etcd = await cluster()
    const prefix = freshPrefix()
    const { logger, lines } = capturingLogger()
    const a = await replica(etcd, prefix, { logger })
    const created = (await register(a, { service_name: 'product', url: 'http://10.0.0.8:8081' })).json()
    await etcd.kill(0)
    await waitFor(() => a.store.status().stale, { what: 'the replica to notice etcd is gone' })
    const answer = await discover(a, 'product')
    assert.equal(answer.statusCode, 200)
    assert.equal(answer.headers['x-registry-stale'], 'true')
    assert.deepEqual(
      answer.json().instances.map((i: { id: string }) => i.id),
      [created.id],
    )
    const ready = await a.app.inject({ method: 'GET', url: '/health/ready' })
    assert.equal(ready.json().details.store.stale, true)
    assert.equal(typeof ready.json().details.store.detail, 'string')
    for (const request of [
      { method: 'POST' as const, url: '/register', payload: { service_name: 'product', url: 'http://10.0.0.9:8081' } },
      { method: 'POST' as const, url: '/heartbeat', payload: { instance_id: created.id } },
      { method: 'DELETE' as const, url: `/instances/${created.id}` },
    ]) {
      const started = Date.now()
      const refused = await a.app.inject(request)
      assert.equal(refused.statusCode, 503, `${request.method} ${request.url}: ${refused.body}`)
      assert.equal(refused.json().code, 'STORE_UNAVAILABLE')
      assert.equal(refused.headers['retry-after'], '1')
      assert.ok(Date.now() - started < 3000, `${request.method} ${request.url} answered within the request timeout`)
    }
    assert.ok(lines.some((line) => line.event === 'store_stale'))
    await etcd.restart(0)
    await waitFor(() => !a.store.status().stale, { what: 'the replica to recover by itself', timeoutMs: 15_000 })
    await waitFor(async () => (await a.app.inject({ method: 'POST', url: '/heartbeat', payload: { instance_id: created.id } })).statusCode === 200, {
      what: 'writes accepted again',
      timeoutMs: 15_000,
    })
    assert.equal((await discover(a, 'product')).headers['x-registry-stale'], undefined)
  })

  it('a replica whose etcd is gone still shuts down promptly', async () => {
    const etcd = await cluster()
    const a = await replica(etcd, freshPrefix())
    await waitFor(() => a.store.isLeader(), { what: 'elected (so there is a campaign to resign)' })
    // Silent rather than refusing (a frozen member, a host gone from the network): nothing answers.
    const pid = etcd.members[0]!.pid!
    process.kill(pid, 'SIGSTOP')
    try {
      const started = Date.now()
      await a.app.close()
      await a.store.close()
      // The request timeout is 1 s here: resigning and cancelling the watch each wait about that
      // at most; well within a shutdown timeout, where an unanswered call would hang for ever.
      assert.ok(Date.now() - started < 4500, `closed in ${Date.now() - started} ms`)
    } finally {
      process.kill(pid, 'SIGCONT')
    }
  })

  it('a replica started while etcd is unreachable keeps trying, not ready, and serves once etcd is there', async () => {
    const etcd = await cluster()
    await etcd.kill(0)
    const { logger, lines } = capturingLogger()
    const store = new EtcdStore({ endpoints: etcd.endpoints.split(','), prefix: freshPrefix(), ttlMs: 30_000, logger, requestTimeoutMs: 500 })
    const registry = buildRegistryApp({ logger, ttlMs: 30_000, store })
    apps.push(registry)
    const starting = store.start()
    await waitFor(() => lines.some((line) => line.event === 'store_unreachable'), { what: 'a clear log line' })
    const ready = await registry.app.inject({ method: 'GET', url: '/health/ready' })
    assert.equal(ready.statusCode, 503)
    const early = await discover(registry, 'product')
    assert.equal(early.statusCode, 503, 'no empty list before the state is loaded')
    assert.equal(early.json().code, 'STORE_UNAVAILABLE')
    // Nor from the other protocols' views: an empty list would make Prometheus drop every target.
    for (const url of ['/services', '/sd/prometheus', '/v1/catalog/services', '/v1/health/service/product']) {
      const answer = await registry.app.inject({ method: 'GET', url })
      assert.equal(answer.statusCode, 503, url)
      assert.equal(answer.json().code, 'STORE_UNAVAILABLE', url)
    }
    await etcd.restart(0)
    await starting
    await waitFor(async () => (await registry.app.inject({ method: 'GET', url: '/health/ready' })).statusCode === 200, { what: 'ready once etcd is up', timeoutMs: 15_000 })
  })
})
