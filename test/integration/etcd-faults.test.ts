// Faults under steady order traffic with the registry on etcd: three etcd members, two registry
// replicas over one prefix, two product instances and an order service that know both replicas
// (REGISTRY_URL=A,B). One etcd member dies and comes back; one replica dies and comes back on its
// port; two etcd members die (quorum lost) and come back. Every fault lasts longer than the TTL, so
// a lease that was not renewed through it would show as an instance gone. Each phase: no failed
// order (none retried by this client), no instance lost on either replica, none resurrected; at the
// end the order service holds exactly the orders it answered 201.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { type EtcdCluster, etcdAvailable, startEtcd } from '../helpers/etcd.ts'
import { http, type JsonResponse } from '../helpers/http.ts'
import type { LogLine, RunningProcess } from '../helpers/process.ts'
import { freePorts, startRoles, startTracked, stopAll, tempDir } from '../helpers/system.ts'
import { describeReport, orderTraffic, type TrafficReport } from '../helpers/traffic.ts'
import { waitFor } from '../helpers/wait.ts'

const TTL_S = 3
const HEARTBEAT_S = 0.5
// Each fault is held this long: past the TTL, so an instance whose lease stopped being renewed
// would expire during it (and the monitor would see it go).
const HOLD_MS = TTL_S * 1000 + 1000
// The registry's store answers a write within its request timeout (3 s); slack for a busy machine.
const WRITE_REFUSED_WITHIN_MS = 3000 + 1000
const RECOVERY_TIMEOUT_MS = 20_000
const SERVICES = ['product', 'order'] as const
const skip = etcdAvailable() ? false : 'etcd is not installed'

interface Answer {
  status: number
  ids: string[]
  stale: boolean
  epoch: string | null
}

/** One discovery answer, its instance ids sorted; throws when the replica cannot be reached. */
async function discoverIds(registryUrl: string, service: string): Promise<Answer> {
  const response = await fetch(`${registryUrl}/discover/${service}`, { signal: AbortSignal.timeout(2000) })
  const body = (await response.json()) as { instances?: Array<{ id: string }> }
  return {
    status: response.status,
    ids: (body.instances ?? []).map((instance) => instance.id).sort(),
    stale: response.headers.get('x-registry-stale') === 'true',
    epoch: response.headers.get('x-registry-epoch'),
  }
}

interface Readiness {
  status: number
  stale: boolean | undefined
  detail: string | undefined
}

async function readiness(registryUrl: string): Promise<Readiness> {
  const response = await http<{ details?: { store?: { stale?: boolean; detail?: string } } }>('GET', `${registryUrl}/health/ready`)
  return { status: response.status, stale: response.body.details?.store?.stale, detail: response.body.details?.store?.detail }
}

/** Both services' instance ids on one replica, sorted, and whether the answers were stale. */
async function view(registryUrl: string): Promise<{ ids: string[]; stale: boolean; epoch: string | null; status: number }> {
  const answers = await Promise.all(SERVICES.map((service) => discoverIds(registryUrl, service)))
  return {
    ids: answers.flatMap((answer) => answer.ids).sort(),
    stale: answers.some((answer) => answer.stale),
    epoch: answers[0]!.epoch,
    status: Math.max(...answers.map((answer) => answer.status)),
  }
}

/** The index of the member that leads the cluster now (etcd's JSON gateway, maintenance status). */
async function etcdLeader(etcd: EtcdCluster): Promise<number> {
  return waitFor(
    async () => {
      for (const [index, member] of etcd.members.entries()) {
        if (!member.running) continue
        const response = await fetch(`${member.clientUrl}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1000) })
        const status = (await response.json()) as { header?: { member_id?: string }; leader?: string }
        if (status.leader && status.leader !== '0' && status.header?.member_id === status.leader) return { index }
      }
      return undefined
    },
    { timeoutMs: 10_000, what: 'an etcd leader' },
  ).then(({ index }) => index)
}

/**
 * Polls discovery on both replicas (every ~100 ms, bounded) and records every answer that misses
 * one of the instances that must be there, or lists one that must not be (deregistered). A replica
 * that is down or not ready yet is not an answer.
 */
function membershipMonitor(replicas: () => Array<{ name: string; url: string }>, mustHave: readonly string[]) {
  const mustNotHave = new Set<string>()
  const lost: string[] = []
  const resurrected: string[] = []
  let answers = 0
  let staleAnswers = 0
  let phase = 'setup'
  let stopped = false
  const deadline = Date.now() + 150_000
  const loop = (async () => {
    while (!stopped && Date.now() < deadline) {
      for (const replica of replicas()) {
        let seen: Awaited<ReturnType<typeof view>>
        try {
          seen = await view(replica.url)
        } catch {
          continue
        }
        if (seen.status !== 200) continue
        answers++
        if (seen.stale) staleAnswers++
        const missing = mustHave.filter((id) => !seen.ids.includes(id))
        if (missing.length > 0) lost.push(`${phase}: ${replica.name} did not list ${missing.join(', ')} at ${new Date().toISOString()}`)
        const back = seen.ids.filter((id) => mustNotHave.has(id))
        if (back.length > 0) resurrected.push(`${phase}: ${replica.name} listed the deregistered ${back.join(', ')} at ${new Date().toISOString()}`)
      }
      await sleep(100)
    }
  })()
  return {
    lost,
    resurrected,
    forbid: (id: string) => mustNotHave.add(id),
    /** Starts counting for a new phase; returns the previous phase's counts. */
    phase(name: string) {
      const counts = { answers, staleAnswers }
      phase = name
      answers = 0
      staleAnswers = 0
      return counts
    },
    counts: () => ({ answers, staleAnswers }),
    async stop() {
      stopped = true
      await loop
    },
  }
}

/** Log events of interest, counted per process, since `from` (a count of log lines per process). */
function events(processes: RunningProcess[], from: Map<RunningProcess, number>, names: readonly string[]): string {
  const parts: string[] = []
  for (const p of processes) {
    const lines = p.logs.slice(from.get(p) ?? 0)
    const counted = names.map((name) => [name, lines.filter((line) => line.event === name).length] as const).filter(([, n]) => n > 0)
    if (counted.length > 0) parts.push(`${p.role}:${p.port} ${counted.map(([name, n]) => `${name}=${n}`).join(' ')}`)
  }
  return parts.join('; ') || 'none'
}

const INTERESTING = [
  'heartbeat_failed',
  'heartbeat_unknown',
  'registry_back',
  'registry_unreachable',
  'registered',
  'register_failed',
  'store_stale',
  'store_recovered',
  'store_watch_lost',
  'store_watching',
  'store_resync',
  'store_loaded',
  'evicted',
  'leader_elected',
  'leader_lost',
  'upstream_error',
] as const

describe('registry on etcd: faults under steady order traffic', { skip }, () => {
  const dataDir = tempDir('etcd-faults')
  const prefix = `/etcd-faults-${randomBytes(6).toString('hex')}`
  const started: RunningProcess[] = []
  const cleanups: Array<() => Promise<unknown>> = []
  let etcd: EtcdCluster | undefined
  let registryEnv: Record<string, string> = {}
  let serviceEnv: Record<string, string> = {}
  let ports: [number, number] = [0, 0]
  const replicas: { A?: RunningProcess; B?: RunningProcess } = {}
  let products: RunningProcess[] = []
  let order: RunningProcess | undefined
  let productId = ''
  /** Every core instance id (2 product, 1 order), sorted: what both replicas must list. */
  let core: string[] = []
  const created: string[] = []
  let monitor: ReturnType<typeof membershipMonitor> | undefined
  const marks = new Map<RunningProcess, number>()
  const mark = () => {
    for (const p of started) marks.set(p, p.logs.length)
  }
  const replicaList = () =>
    (['A', 'B'] as const).flatMap((name) => {
      const replica = replicas[name]
      return replica && replica.child.exitCode === null && replica.child.signalCode === null ? [{ name, url: replica.url }] : []
    })
  const urlOf = (name: 'A' | 'B') => `http://127.0.0.1:${ports[name === 'A' ? 0 : 1]}`

  /** Logs of every process (the last lines of each), for a failure message. */
  const dump = () =>
    [
      ...started.map((p) => `--- ${p.role}:${p.port} (pid ${p.child.pid}, exit ${p.child.exitCode ?? p.child.signalCode ?? 'running'})\n${p.output.slice(-40).join('\n')}`),
      ...(etcd?.members ?? []).map((m) => `--- etcd ${m.name} (${m.running ? 'running' : 'stopped'})\n${m.output.slice(-15).join('\n')}`),
    ].join('\n')

  /** Both replicas ready, not stale, listing exactly the core instances. */
  const recovered = (what: string) =>
    waitFor(
      async () => {
        for (const name of ['A', 'B'] as const) {
          const ready = await readiness(urlOf(name))
          if (ready.status !== 200 || ready.stale !== false) return undefined
          const seen = await view(urlOf(name))
          if (seen.status !== 200 || seen.stale || seen.ids.join() !== core.join()) return undefined
        }
        return true
      },
      { timeoutMs: RECOVERY_TIMEOUT_MS, intervalMs: 50, what: `${what}: both replicas ready, not stale, listing exactly the core instances` },
    ).catch((error: unknown) => {
      throw new Error(`${error instanceof Error ? error.message : String(error)}\n${dump()}`)
    })

  /** Order traffic for one phase; `stop` (once, whatever the phase's outcome) counts its 201s. */
  const traffic = (phase: string) => {
    const running = orderTraffic(order!.url, productId, { workers: 2, pauseMs: 10, maxMs: 60_000, idempotencyKeyPrefix: `${phase}-${randomBytes(4).toString('hex')}` })
    let stopped: Promise<TrafficReport> | undefined
    const stop = () => {
      stopped ??= running.stop().then((result) => {
        created.push(...result.created)
        return result
      })
      return stopped
    }
    cleanups.push(stop)
    return { ordersFromNow: (count: number) => running.ordersFromNow(count), stop }
  }

  const report = (t: { diagnostic: (message: string) => void }, phase: string, result: TrafficReport) => {
    t.diagnostic(describeReport(phase, result))
    const counts = monitor!.counts()
    t.diagnostic(`${phase}: ${counts.answers} discovery answers watched, ${counts.staleAnswers} of them stale`)
    t.diagnostic(`${phase} log events: ${events(started, marks, INTERESTING)}`)
    for (const [name, member] of etcd!.members.entries()) if (!member.running) t.diagnostic(`etcd m${name} not running`)
  }

  const assertPhase = (phase: string, result: TrafficReport) => {
    assert.deepEqual(result.failures, [], `${phase}: every order answered 201\n${dump()}`)
    assert.ok(result.sent >= 50, `${phase}: ${result.sent} orders is too few to mean anything`)
    // The monitor did watch (a check that saw nothing would pass for nothing).
    assert.ok(monitor!.counts().answers >= 10, `${phase}: only ${monitor!.counts().answers} discovery answers watched`)
    const ofPhase = (entries: string[]) => entries.filter((entry) => entry.startsWith(`${phase}:`))
    assert.deepEqual(ofPhase(monitor!.lost), [], `${phase}: no instance missing from either replica\n${dump()}`)
    assert.deepEqual(ofPhase(monitor!.resurrected), [], `${phase}: no deregistered instance back\n${dump()}`)
    for (const p of [...products, order!]) {
      const lines = p.logs.slice(marks.get(p) ?? 0)
      assert.deepEqual(
        lines.filter((line: LogLine) => line.event === 'heartbeat_unknown' || line.event === 'registered'),
        [],
        `${phase}: ${p.role}:${p.port} never had to register again`,
      )
    }
  }

  before(async () => {
    etcd = await startEtcd({ members: 3, name: 'faults' })
    const [portA, portB] = (await freePorts(2)) as [number, number]
    ports = [portA, portB]
    registryEnv = { REGISTRY_STORE: 'etcd', ETCD_ENDPOINTS: etcd.endpoints, ETCD_PREFIX: prefix, REGISTRY_TTL_SECONDS: String(TTL_S) }
    ;[replicas.A, replicas.B] = (await startRoles(
      started,
      ['registry', { env: { ...registryEnv, PORT: String(portA) } }],
      ['registry', { env: { ...registryEnv, PORT: String(portB) } }],
    )) as [RunningProcess, RunningProcess]
    serviceEnv = { REGISTRY_URL: `${urlOf('A')},${urlOf('B')}`, DATA_DIR: dataDir.path, HEARTBEAT_INTERVAL_SECONDS: String(HEARTBEAT_S) }
    const services = await startRoles(started, ['product', { env: serviceEnv }], ['product', { env: serviceEnv }], ['order', { env: serviceEnv }])
    products = services.slice(0, 2)
    order = services[2]
    await waitFor(
      async () => {
        const seen = await Promise.all([view(urlOf('A')), view(urlOf('B'))])
        return seen.every((s) => s.status === 200 && !s.stale && s.ids.length === 3 && s.ids.join() === seen[0]!.ids.join()) && seen[0]!.ids
      },
      { timeoutMs: 20_000, what: 'both replicas listing 2 product and 1 order instances' },
    ).then((ids) => {
      core = ids
    })
    const createdProduct = await http('POST', `${products[0]!.url}/products`, { name: 'Etcd widget', price: '1.25' })
    assert.equal(createdProduct.status, 201)
    productId = createdProduct.body.id
    monitor = membershipMonitor(replicaList, core)
  })

  after(async () => {
    await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()))
    await monitor?.stop()
    await stopAll(started)
    await etcd?.close()
    dataDir.remove()
  })

  it('1. kill -9 of the etcd leader, then its restart: no failed order, no instance lost', { timeout: 60_000 }, async (t) => {
    mark()
    monitor!.phase('etcd member')
    const orders = traffic('etcd-member')
    let victim = -1
    let killedAt = 0
    let restartedAt = 0
    let recoveredMs = 0
    try {
      await orders.ordersFromNow(20)
      victim = await etcdLeader(etcd!)
      killedAt = Date.now()
      await etcd!.kill(victim)
      await sleep(HOLD_MS)
      await etcd!.restart(victim)
      restartedAt = Date.now()
      await recovered('after the etcd member restarted')
      recoveredMs = Date.now() - restartedAt
      await orders.ordersFromNow(30)
    } finally {
      await orders.stop()
    }
    const result = await orders.stop()
    t.diagnostic(`etcd leader m${victim} down ${restartedAt - killedAt} ms; replicas recovered ${recoveredMs} ms after it was healthy again`)
    report(t, 'etcd member', result)
    assertPhase('etcd member', result)
  })

  it('2. kill -9 of replica A, then its restart on its port: clients fail over to B; A serves the full view at once', { timeout: 60_000 }, async (t) => {
    mark()
    monitor!.phase('registry replica')
    const orders = traffic('replica')
    try {
      await orders.ordersFromNow(20)
      const killedAt = Date.now()
      await replicas.A!.stop('SIGKILL')
      // A is down past the TTL: the instances stay only if their heartbeats reach B.
      await sleep(HOLD_MS)
      const restarting = Date.now()
      replicas.A = await startTracked(started, 'registry', { env: { ...registryEnv, PORT: String(ports[0]) } })
      const listeningAt = Date.now()
      assert.equal(replicas.A.port, ports[0])
      // From its first answer on, A never answers discovery with less than the whole view: before it
      // has loaded it refuses (503), after it answers everything.
      const partial: string[] = []
      const first = await waitFor(
        async () => {
          const ready = await readiness(urlOf('A'))
          const seen = await view(urlOf('A'))
          if (seen.status === 200 && seen.ids.join() !== core.join()) partial.push(`${seen.ids.join()} (ready ${ready.status})`)
          return ready.status === 200 && seen.status === 200 ? { seen, ready, at: Date.now() } : undefined
        },
        { timeoutMs: 15_000, intervalMs: 20, what: 'the restarted replica A ready' },
      )
      const onB = await view(urlOf('B'))
      t.diagnostic(`replica A down ${restarting - killedAt} ms; listening ${listeningAt - restarting} ms after its start; ready and answering ${first.at - listeningAt} ms later`)
      assert.deepEqual(partial, [], 'no partial view from the restarted replica')
      assert.deepEqual(first.seen.ids, core, 'its first answer once ready is the whole view')
      assert.equal(first.seen.epoch, onB.epoch, 'the same epoch as the other replica')
      assert.match(String(first.seen.epoch), /^etcd-[0-9a-f]+$/)
      await recovered('after replica A restarted')
      const freshAfterMs = Date.now() - first.at
      t.diagnostic(
        `replica A's first answer once ready: stale ${first.seen.stale} (readiness: stale ${first.ready.stale}, ${first.ready.detail ?? 'no detail'}); not stale ${freshAfterMs} ms later at the latest`,
      )
      // A replica that has just read everything with quorum is not stale, watch connected or not.
      await t.test("the restarted replica's first answer once ready is not marked stale", () => {
        assert.equal(first.seen.stale, false, `stale header on the first answer; readiness detail: ${first.ready.detail}`)
      })
      await orders.ordersFromNow(30)
    } finally {
      await orders.stop()
    }
    const result = await orders.stop()
    report(t, 'registry replica', result)
    assertPhase('registry replica', result)
    // The failover was the clients' own, and silent: every heartbeat that found A gone went on to B
    // (the instances outlived A's absence, longer than the TTL), none failed.
    for (const p of [...products, order!]) {
      const failed = p.logs.slice(marks.get(p) ?? 0).filter((line) => line.event === 'heartbeat_failed')
      assert.deepEqual(failed, [], `${p.role}:${p.port} heartbeats failed over to B`)
    }
  })

  it('3. two etcd members killed (quorum lost): stale discovery, fast 503 on writes; back by themselves once restored', { timeout: 90_000 }, async (t) => {
    // An extra product instance, stopped gracefully (deregistered) before the outage: it must not
    // come back when the replicas recover.
    const extra = await startTracked(started, 'product', { env: serviceEnv })
    const extraId = await waitFor(
      async () => {
        const seen = await Promise.all([discoverIds(urlOf('A'), 'product'), discoverIds(urlOf('B'), 'product')])
        const added = seen.map((answer) => answer.ids.filter((id) => !core.includes(id)))
        return added.every((ids) => ids.length === 1) && added[0]![0] === added[1]![0] && added[0]![0]
      },
      { what: 'the extra product instance on both replicas' },
    )
    const exit = await extra.stop('SIGTERM')
    assert.equal(exit.code, 0)
    assert.ok(
      extra.logs.some((line) => line.event === 'deregistered' && line.found === true),
      'the extra instance deregistered itself',
    )
    await waitFor(async () => !(await discoverIds(urlOf('A'), 'product')).ids.includes(extraId) && !(await discoverIds(urlOf('B'), 'product')).ids.includes(extraId), {
      what: 'the extra instance gone from both replicas',
    })
    monitor!.forbid(extraId)

    mark()
    monitor!.phase('quorum lost')
    const replicaPids = [replicas.A!.child.pid, replicas.B!.child.pid]
    const orders = traffic('quorum')
    const timings = { killedAt: 0, staleAfterMs: 0, restoringAt: 0, restoredAt: 0, recoveredMs: 0 }
    let victims: number[] = []
    const firstWrites: Array<{ replica: string; status: number; detail: string }> = []
    let refusals: Array<{ replica: string; what: string; status: number; code: string | undefined; tookMs: number; text: string }> = []
    try {
      await orders.ordersFromNow(20)
      const leader = await etcdLeader(etcd!)
      victims = [leader, (leader + 1) % 3]
      timings.killedAt = Date.now()
      await Promise.all(victims.map((index) => etcd!.kill(index)))

      // Both replicas notice, and stay ready: discovery answers from the cache, marked stale.
      await waitFor(async () => (await Promise.all([readiness(urlOf('A')), readiness(urlOf('B'))])).every((r) => r.status === 200 && r.stale === true), {
        timeoutMs: 15_000,
        intervalMs: 50,
        what: 'both replicas ready with details.store.stale === true',
      })
      timings.staleAfterMs = Date.now() - timings.killedAt
      for (const name of ['A', 'B'] as const) {
        const seen = await view(urlOf(name))
        assert.equal(seen.status, 200, `replica ${name} answers discovery`)
        assert.equal(seen.stale, true, `replica ${name} marks its answers stale`)
        assert.deepEqual(seen.ids, core, `replica ${name} answers the whole view from its cache`)
      }
      // Writes on both replicas at once: a registration, and a heartbeat of a live instance.
      refusals = await Promise.all(
        (['A', 'B'] as const).flatMap((replica) =>
          (
            [
              ['register', { path: '/register', body: { service_name: 'probe', url: `http://127.0.0.1:9/${replica}` } }],
              ['heartbeat', { path: '/heartbeat', body: { instance_id: core[0] } }],
            ] as const
          ).map(async ([what, request]) => {
            const sentAt = Date.now()
            const answer = await http('POST', `${urlOf(replica)}${request.path}`, request.body)
            return { replica, what, status: answer.status, code: answer.body?.code as string | undefined, tookMs: Date.now() - sentAt, text: answer.text }
          }),
        ),
      )
      for (const refused of refusals) {
        assert.equal(refused.status, 503, `${refused.replica} ${refused.what} without quorum: ${refused.text}`)
        assert.equal(refused.code, 'STORE_UNAVAILABLE')
        if (refused.what === 'register') assert.ok(refused.tookMs < WRITE_REFUSED_WITHIN_MS, `${refused.replica} register refused in ${refused.tookMs} ms`)
      }
      // Held past the TTL.
      await sleep(Math.max(0, timings.killedAt + HOLD_MS - Date.now()))
      timings.restoringAt = Date.now()
      for (const index of victims) await etcd!.restart(index)
      timings.restoredAt = Date.now()
      await recovered('after quorum returned')
      timings.recoveredMs = Date.now() - timings.restoredAt
      // Writes work again, by themselves: a registration on each replica, at once (noted) and
      // within the recovery deadline (asserted).
      for (const name of ['A', 'B'] as const) {
        const probe = { service_name: 'probe', url: `http://127.0.0.1:9/${name}` }
        const firstAt = Date.now()
        const firstTry = await http('POST', `${urlOf(name)}/register`, probe)
        firstWrites.push({ replica: name, status: firstTry.status, detail: firstTry.status === 201 ? '' : String(firstTry.body?.detail) })
        const registered =
          firstTry.status === 201
            ? firstTry
            : await waitFor(
                async () => {
                  const answer = await http('POST', `${urlOf(name)}/register`, probe)
                  return answer.status === 201 && answer
                },
                { timeoutMs: RECOVERY_TIMEOUT_MS, intervalMs: 100, what: `a registration on ${name} to succeed after quorum returned` },
              )
        if (firstTry.status !== 201) firstWrites.at(-1)!.detail += ` (accepted ${Date.now() - firstAt} ms later)`
        assert.equal((await http('DELETE', `${urlOf(name)}/instances/${registered.body.id}`)).status, 204)
      }
      await orders.ordersFromNow(30)
      // A last look, after the orders: the deregistered instance has not come back.
      for (const name of ['A', 'B'] as const) assert.ok(!(await discoverIds(urlOf(name), 'product')).ids.includes(extraId), `the deregistered instance is not back on ${name}`)
    } finally {
      await orders.stop()
    }
    const result = await orders.stop()
    t.diagnostic(
      `quorum lost ${timings.restoringAt - timings.killedAt} ms (m${victims.join(', m')}); stale on both after ${timings.staleAfterMs} ms; members healthy ${timings.restoredAt - timings.restoringAt} ms after the restarts began; replicas recovered ${timings.recoveredMs} ms later`,
    )
    t.diagnostic(`refused writes: ${refusals.map((r) => `${r.replica} ${r.what} ${r.status} ${r.code} in ${r.tookMs} ms`).join('; ')}`)
    report(t, 'quorum lost', result)
    // They recovered by themselves: the same processes as before the outage.
    assert.deepEqual([replicas.A!.child.pid, replicas.B!.child.pid], replicaPids)
    for (const replica of [replicas.A!, replicas.B!]) assert.equal(replica.child.exitCode, null)
    // The heartbeat fast path hands the store's refusal to the route as an answer: the renewal is
    // not tried twice (it once took twice the request timeout).
    await t.test('a heartbeat without quorum is refused within the store request timeout (~3 s)', () => {
      for (const refused of refusals.filter((r) => r.what === 'heartbeat')) {
        assert.ok(refused.tookMs < WRITE_REFUSED_WITHIN_MS, `${refused.replica} heartbeat refused in ${refused.tookMs} ms`)
      }
    })
    t.diagnostic(`first registration once not stale: ${firstWrites.map((w) => `${w.replica} ${w.status}${w.detail ? ` ${w.detail}` : ''}`).join('; ')}`)
    // Per-member breakers skip a failing member for 1 s and let the pool try another: once a
    // quorum probe has passed, writes do too (etcd3's default breakers refused everything for up
    // to 5 s after etcd was whole again).
    await t.test('a replica that no longer says stale accepts a registration at once', () => {
      for (const write of firstWrites) assert.equal(write.status, 201, `${write.replica}: ${write.detail}`)
    })
    assertPhase('quorum lost', result)
  })

  it('stores exactly the orders answered 201', async (t) => {
    const stored: string[] = []
    let cursor: string | null = null
    for (let page = 0; page < 1000; page++) {
      const response: JsonResponse<{ items: Array<{ id: string }>; next_cursor: string | null }> = await http(
        'GET',
        `${order!.url}/orders?limit=100${cursor === null ? '' : `&cursor=${cursor}`}`,
      )
      assert.equal(response.status, 200)
      stored.push(...response.body.items.map((item) => item.id))
      cursor = response.body.next_cursor
      if (cursor === null) break
    }
    assert.equal(cursor, null, 'read every page')
    t.diagnostic(`orders answered 201: ${created.length}; stored: ${stored.length}`)
    assert.equal(new Set(created).size, created.length, 'every 201 is a distinct order')
    assert.equal(stored.length, created.length)
    assert.deepEqual([...stored].sort(), [...created].sort())
    // Over the whole run: no core instance was ever evicted.
    const evicted = started.filter((p) => p.role === 'registry').flatMap((p) => p.logs.filter((line) => line.event === 'evicted' && core.includes(String(line.instance_id))))
    assert.deepEqual(evicted, [])
  })
})
