// Consul's agent writes, on both stores: a service registered with a TTL check lives by that check
// (critical without a pass, deregistered after DeregisterCriticalServiceAfter), passes renew it
// without moving the index, and native and Consul-registered instances are one set.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, it } from 'node:test'
import { RegistryAuth } from '../../src/registry/auth.ts'
import { goDurationMs } from '../../src/registry/consul.ts'
import { closeRegistries, registry } from '../helpers/registry-app.ts'
import { silentLogger } from '../helpers/logger.ts'
import { etcd, freshPrefix, memory, STORE_KINDS } from '../helpers/stores.ts'
import { waitFor } from '../helpers/wait.ts'

/** A clock the test moves by hand. */
class FakeClock {
  #now = Date.parse('2026-12-01T00:00:00Z')
  readonly now = () => this.#now
  advance(ms: number): void {
    this.#now += ms
  }
}

/** An ACL file of scoped tokens, as REGISTRY_ACL_FILE holds them. */
function aclFile(tokens: Array<{ name: string; token: string; services: string[] }>): string {
  const path = join(mkdtempSync(join(tmpdir(), 'consul-agent-')), 'acl.json')
  const sha = (token: string) => createHash('sha256').update(token).digest('hex')
  writeFileSync(path, JSON.stringify({ tokens: tokens.map((t) => ({ name: t.name, sha256: sha(t.token), services: t.services })) }))
  return path
}

afterEach(closeRegistries)

type Built = Awaited<ReturnType<typeof registry>>
type Headers = Record<string, string>
const put = (r: Built, url: string, payload?: unknown, headers: Headers = {}) =>
  r.app.inject({ method: 'PUT', url, ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }), headers })
const get = (r: Built, url: string) => r.app.inject({ method: 'GET', url })

interface HealthEntry {
  Service: { ID: string; Port: number; Address: string; Tags: string[]; Meta: Record<string, string> }
  Checks: Array<{ CheckID: string; Status: string; Type: string }>
}
const health = async (r: Built, query = '') => (await get(r, `/v1/health/service/web${query}`)).json() as HealthEntry[]
const status = async (r: Built, id: string) => (await health(r)).find((entry) => entry.Service.ID === id)?.Checks[0]?.Status
const indexOf = async (r: Built, url = '/v1/health/service/web') => (await get(r, url)).headers['x-consul-index']

const ttlService = (check: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  Name: 'web',
  ID: 'web-1',
  Address: '10.0.0.7',
  Port: 9001,
  Tags: ['v1', 'blue'],
  Meta: { zone: 'a' },
  Check: { TTL: '10s', ...check },
  ...extra,
})

describe('Go durations', () => {
  it('read as Consul reads TTL and DeregisterCriticalServiceAfter', () => {
    assert.equal(goDurationMs('10s'), 10_000)
    assert.equal(goDurationMs('1m30s'), 90_000)
    assert.equal(goDurationMs('500ms'), 500)
    assert.equal(goDurationMs('1.5h'), 5_400_000)
    assert.equal(goDurationMs('10'), undefined)
    assert.equal(goDurationMs('s'), undefined)
    assert.equal(goDurationMs('-1s'), undefined)
  })
})

for (const kind of STORE_KINDS) {
  describe(`Consul agent writes (${kind.name})`, () => {
    it('a TTL check starts critical, a pass makes it passing (and discoverable); routine passes move no index', async () => {
      const r = await registry(kind)
      const registered = await put(r, '/v1/agent/service/register', ttlService())
      assert.equal(registered.statusCode, 200, registered.body)
      assert.equal(registered.body, '')
      const [entry] = await health(r)
      assert.equal(entry!.Service.ID, 'web-1')
      assert.equal(entry!.Service.Address, '10.0.0.7')
      assert.equal(entry!.Service.Port, 9001)
      assert.deepEqual(entry!.Service.Tags, ['v1', 'blue'])
      assert.deepEqual(entry!.Service.Meta, { zone: 'a' })
      assert.deepEqual(
        entry!.Checks.map((c) => [c.CheckID, c.Status, c.Type]),
        [['service:web-1', 'critical', 'ttl']],
        "Consul's TTL checks start critical",
      )
      assert.deepEqual(await health(r, '?passing'), [])
      assert.deepEqual((await get(r, '/discover/web')).json().instances, [], 'a critical check keeps it out of discovery')

      const before = await indexOf(r)
      // The check id arrives percent-encoded, as Consul's clients send it.
      assert.equal((await put(r, '/v1/agent/check/pass/service%3Aweb-1')).statusCode, 200)
      assert.equal(await status(r, 'web-1'), 'passing')
      assert.equal((await health(r, '?passing')).length, 1)
      assert.deepEqual(
        (await get(r, '/discover/web')).json().instances.map((i: { url: string }) => i.url),
        ['http://10.0.0.7:9001'],
      )
      const passing = await indexOf(r)
      assert.notEqual(passing, before, 'critical to passing is a change')
      const catalog = await indexOf(r, '/v1/catalog/services')
      for (let i = 0; i < 3; i++) assert.equal((await put(r, '/v1/agent/check/pass/service:web-1?note=ok')).statusCode, 200)
      assert.equal(await indexOf(r), passing, 'a routine pass is not a change')
      assert.equal(await indexOf(r, '/v1/catalog/services'), catalog)

      // fail and update set the status too.
      assert.equal((await put(r, '/v1/agent/check/fail/service%3Aweb-1')).statusCode, 200)
      assert.equal(await status(r, 'web-1'), 'critical')
      assert.equal((await put(r, '/v1/agent/check/update/service%3Aweb-1', { Status: 'passing', Output: 'fine' })).statusCode, 200)
      assert.equal(await status(r, 'web-1'), 'passing')

      assert.equal((await put(r, '/v1/agent/service/deregister/web-1')).statusCode, 200)
      assert.deepEqual(await health(r), [])
      assert.equal((await put(r, '/v1/agent/service/deregister/web-1')).statusCode, 404)
      assert.equal((await put(r, '/v1/agent/check/pass/service%3Aweb-1')).statusCode, 404)
    })

    it('Status passing starts passing; a custom CheckID is passed by that id; ID defaults to Name', async () => {
      const r = await registry(kind)
      assert.equal((await put(r, '/v1/agent/service/register', ttlService({ Status: 'passing', CheckID: 'web-ttl', Name: 'web alive' }))).statusCode, 200)
      assert.deepEqual(
        (await health(r))[0]!.Checks.map((c) => [c.CheckID, c.Status]),
        [['web-ttl', 'passing']],
      )
      assert.equal((await put(r, '/v1/agent/check/fail/web-ttl')).statusCode, 200)
      assert.equal(await status(r, 'web-1'), 'critical')
      assert.equal((await put(r, '/v1/agent/check/pass/web-ttl')).statusCode, 200)
      assert.equal(await status(r, 'web-1'), 'passing')
      assert.equal((await put(r, '/v1/agent/check/pass/service%3Aweb-1')).statusCode, 404, 'the check has its own id')
      // Another instance may not take that check id.
      const clash = await put(r, '/v1/agent/service/register', ttlService({ CheckID: 'web-ttl' }, { ID: 'web-2', Port: 9002 }))
      assert.equal(clash.statusCode, 409)
      assert.match(clash.json().detail, /web-ttl belongs to instance web-1/)

      assert.equal((await put(r, '/v1/agent/service/register', { Name: 'web', Address: '10.0.0.8', Port: 9003 })).statusCode, 200)
      const plain = (await health(r)).find((entry) => entry.Service.ID === 'web')
      assert.ok(plain, 'ID defaults to Name')
      assert.deepEqual(plain.Checks, [], 'no check registered, none shown')
      assert.equal((await health(r, '?passing')).length, 2, 'a service without checks counts as passing, as in Consul')
    })

    it('registering the same ID again replaces the instance, at a new address too', async () => {
      const r = await registry(kind)
      assert.equal((await put(r, '/v1/agent/service/register', ttlService({ Status: 'passing' }))).statusCode, 200)
      assert.equal((await put(r, '/v1/agent/service/register', ttlService({ Status: 'passing' }, { Port: 9010, Tags: ['v2'] }))).statusCode, 200)
      const entries = await health(r)
      assert.deepEqual(
        entries.map((e) => [e.Service.ID, e.Service.Port, e.Service.Tags]),
        [['web-1', 9010, ['v2']]],
      )
    })

    it('native and Consul-registered instances are one set: each API reads, renews and removes the other', async () => {
      const r = await registry(kind)
      const native = (await r.app.inject({ method: 'POST', url: '/register', payload: { service_name: 'web', url: 'http://10.0.0.1:8081' } })).json()
      assert.equal((await put(r, '/v1/agent/service/register', ttlService({ Status: 'passing' }))).statusCode, 200)
      const discovered = (await get(r, '/discover/web')).json().instances.map((i: { id: string }) => i.id)
      assert.deepEqual(discovered.sort(), [native.id, 'web-1'].sort())
      // A Consul client passing the check Consul's views show for a native instance renews it.
      const beforePass = (await get(r, '/services')).json().services[0].instances.find((i: { id: string }) => i.id === native.id).last_heartbeat
      await waitFor(() => Date.now() > Date.parse(beforePass) + 5, { what: 'the clock to move' })
      assert.equal((await put(r, `/v1/agent/check/pass/${encodeURIComponent(`service:${native.id}`)}`)).statusCode, 200)
      const afterPass = (await get(r, '/services')).json().services[0].instances.find((i: { id: string }) => i.id === native.id).last_heartbeat
      assert.ok(Date.parse(afterPass) > Date.parse(beforePass), 'the pass was a heartbeat')
      const failNative = await put(r, `/v1/agent/check/fail/${encodeURIComponent(`service:${native.id}`)}`)
      assert.equal(failNative.statusCode, 400, 'only a TTL check is failed by hand')
      // The native API removes a Consul-registered instance; Consul's removes a native one.
      assert.equal((await r.app.inject({ method: 'DELETE', url: '/instances/web-1' })).statusCode, 204)
      assert.equal((await put(r, `/v1/agent/service/deregister/${native.id}`)).statusCode, 200)
      assert.deepEqual(await health(r), [])
    })

    it("takes the JSON whatever the Content-Type, as Consul does (`curl --data @payload.json` sends a form's)", async () => {
      const r = await registry(kind)
      for (const type of ['application/x-www-form-urlencoded', 'text/plain']) {
        const answer = await r.app.inject({ method: 'PUT', url: '/v1/agent/service/register', headers: { 'content-type': type }, payload: JSON.stringify(ttlService()) })
        assert.equal(answer.statusCode, 200, `${type}: ${answer.body}`)
        const broken = await r.app.inject({ method: 'PUT', url: '/v1/agent/service/register', headers: { 'content-type': type }, payload: 'Name=web&Port=1' })
        assert.equal(broken.statusCode, 400, type)
        assert.equal(broken.json().code, 'INVALID_JSON', type)
      }
      assert.equal((await health(r)).length, 1)
      // Only Consul's routes: the native API still wants JSON labelled as JSON.
      const native = await r.app.inject({
        method: 'POST',
        url: '/register',
        headers: { 'content-type': 'text/plain' },
        payload: JSON.stringify({ service_name: 'web', url: 'http://10.0.0.1:1' }),
      })
      assert.equal(native.statusCode, 415)
    })

    it('an HTTP check is the registry health check of the instance', async () => {
      const r = await registry(kind)
      const answer = await put(r, '/v1/agent/service/register', {
        Name: 'web',
        ID: 'web-h',
        Address: '127.0.0.1',
        Port: 9020,
        Check: { HTTP: 'http://127.0.0.1:9020/health', Interval: '10s' },
      })
      assert.equal(answer.statusCode, 200, answer.body)
      const instance = (await get(r, '/services')).json().services[0].instances[0]
      assert.equal(instance.health_url, 'http://127.0.0.1:9020/health')
      assert.deepEqual(
        (await health(r))[0]!.Checks.map((c) => c.Type),
        ['http'],
      )
    })

    it('refuses, with a reason, what it does not support or cannot use', async () => {
      const r = await registry(kind)
      const refusals: Array<[string, unknown, RegExp]> = [
        ['a TCP check', { Name: 'web', Port: 1, Check: { TCP: '10.0.0.1:1', Interval: '1s' } }, /TCP/],
        ['both TTL and HTTP', { Name: 'web', Port: 1, Check: { TTL: '5s', HTTP: 'http://10.0.0.1:1/', Interval: '1s' } }, /not both/],
        ['a check with neither', { Name: 'web', Port: 1, Check: { Interval: '1s' } }, /TTL/],
        ['a TTL under a second', { Name: 'web', Port: 1, Check: { TTL: '500ms' } }, /between 1s/],
        ['a malformed TTL', { Name: 'web', Port: 1, Check: { TTL: '10 seconds' } }, /TTL/],
        [
          'DeregisterCriticalServiceAfter on an HTTP check',
          { Name: 'web', Port: 1, Check: { HTTP: 'http://10.0.0.1:1/', DeregisterCriticalServiceAfter: '1m' } },
          /TTL checks only/,
        ],
        ['no Port', { Name: 'web' }, /Port/],
        ['Port 0', { Name: 'web', Port: 0 }, /Port/],
        ['an upper-case Name', { Name: 'Web', Port: 1 }, /Name/],
        ['an Address that is no host', { Name: 'web', Port: 1, Address: 'a b/c' }, /Address/],
        ['Meta tags', { Name: 'web', Port: 1, Meta: { tags: 'x' } }, /Tags/],
        ['a tag with a comma', { Name: 'web', Port: 1, Tags: ['a,b'] }, /Tags/],
        ['Check and Checks', { Name: 'web', Port: 1, Check: { TTL: '5s' }, Checks: [{ TTL: '5s' }] }, /not both/],
        ['two Checks', { Name: 'web', Port: 1, Checks: [{ TTL: '5s' }, { TTL: '6s' }] }, /Checks/],
      ]
      for (const [what, body, reason] of refusals) {
        const answer = await put(r, '/v1/agent/service/register', body)
        assert.equal(answer.statusCode, 400, `${what}: ${answer.body}`)
        assert.equal(answer.headers['content-type'], 'application/problem+json; charset=utf-8', what)
        assert.match(answer.body, reason, what)
      }
      assert.equal((await put(r, '/v1/agent/check/update/x', { Status: 'warning' })).statusCode, 400, 'warning is not a status here')
      assert.equal((await put(r, '/v1/agent/check/pass/nothing-here')).statusCode, 404)
      assert.deepEqual(await health(r), [], 'nothing was registered')
    })

    it('tokens: X-Consul-Token is a registry token; only the owner passes or removes its instance', async (t) => {
      const auth = new RegistryAuth({
        logger: silentLogger(),
        adminToken: 'admin-token-0123456789abcdef',
        aclFile: aclFile([
          { name: 'web', token: 'web-token-0123456789abcdefgh', services: ['web'] },
          { name: 'web-other', token: 'web-other-token-0123456789ab', services: ['web'] },
          { name: 'order', token: 'order-token-0123456789abcdef', services: ['order'] },
        ]),
      })
      auth.loadSync()
      t.after(() => auth.close())
      const r = await registry(kind, { auth })
      const as = (token: string) => ({ 'x-consul-token': token })
      assert.equal((await put(r, '/v1/agent/service/register', ttlService())).statusCode, 401)
      assert.equal((await put(r, '/v1/agent/service/register', ttlService(), as('order-token-0123456789abcdef'))).statusCode, 403)
      assert.equal((await put(r, '/v1/agent/service/register', ttlService(), as('web-token-0123456789abcdefgh'))).statusCode, 200)
      for (const url of ['/v1/agent/check/pass/service%3Aweb-1', '/v1/agent/check/fail/service%3Aweb-1', '/v1/agent/service/deregister/web-1']) {
        assert.equal((await put(r, url)).statusCode, 401, url)
        const other = await put(r, url, undefined, as('web-other-token-0123456789ab'))
        assert.equal(other.statusCode, 403, url)
        assert.equal(other.json().code, 'NOT_OWNER', url)
      }
      // Without a token, an unknown check is a 401 too: whether it exists is not for anyone to learn.
      assert.equal((await put(r, '/v1/agent/check/pass/nothing-here')).statusCode, 401)
      // Taking over the ID at another address is the owner's alone.
      assert.equal((await put(r, '/v1/agent/service/register', ttlService({}, { Port: 9999 }), as('web-other-token-0123456789ab'))).statusCode, 403)
      assert.equal((await put(r, '/v1/agent/check/pass/service%3Aweb-1', undefined, as('web-token-0123456789abcdefgh'))).statusCode, 200)
      assert.equal(await status(r, 'web-1'), 'passing')
      assert.equal((await put(r, '/v1/agent/service/deregister/web-1', undefined, as('admin-token-0123456789abcdef'))).statusCode, 200)
    })
  })
}

describe('Consul TTL checks on a fake clock (memory store)', () => {
  it('critical after the TTL without a pass, deregistered after DeregisterCriticalServiceAfter more; a pass in time keeps it', async () => {
    const clock = new FakeClock()
    const r = await registry(memory, { clock: clock.now, ttlMs: 5000 })
    const body = ttlService({ TTL: '10s', DeregisterCriticalServiceAfter: '30s', Status: 'passing' })
    assert.equal((await put(r, '/v1/agent/service/register', body)).statusCode, 200)
    clock.advance(9000)
    await r.sweep()
    assert.equal(await status(r, 'web-1'), 'passing', "the registry's own 5 s TTL does not apply")
    assert.equal((await put(r, '/v1/agent/check/pass/service%3Aweb-1')).statusCode, 200)
    clock.advance(9999)
    await r.sweep()
    assert.equal(await status(r, 'web-1'), 'passing', 'a pass restarts the TTL')
    const index = await indexOf(r)
    clock.advance(1)
    await r.sweep()
    assert.equal(await status(r, 'web-1'), 'critical')
    assert.notEqual(await indexOf(r), index, 'turning critical is a change watchers see')
    assert.deepEqual((await get(r, '/discover/web')).json().instances, [])
    clock.advance(29_999)
    await r.sweep()
    assert.equal(await status(r, 'web-1'), 'critical', 'still listed, critical, until DeregisterCriticalServiceAfter')
    clock.advance(1)
    await r.sweep()
    assert.deepEqual(await health(r), [], 'deregistered')
    assert.equal((await put(r, '/v1/agent/check/pass/service%3Aweb-1')).statusCode, 404)
  })

  it('a sweep that comes late, after the TTL and DeregisterCriticalServiceAfter both ran out, turns it critical first; the next one deregisters it', async () => {
    const clock = new FakeClock()
    const r = await registry(memory, { clock: clock.now, ttlMs: 5000 })
    const body = ttlService({ TTL: '1s', DeregisterCriticalServiceAfter: '1s', Status: 'passing' })
    assert.equal((await put(r, '/v1/agent/service/register', body)).statusCode, 200)
    // The sweeper was held up (a busy event loop): its next run is past both deadlines.
    clock.advance(2500)
    await r.sweep()
    assert.equal(await status(r, 'web-1'), 'critical', 'watchers see the check critical before the service goes')
    clock.advance(1000)
    await r.sweep()
    assert.deepEqual(await health(r), [], 'deregistered')
  })

  it('without DeregisterCriticalServiceAfter (or without a check) it stays, as an agent keeps its services', async () => {
    const clock = new FakeClock()
    const r = await registry(memory, { clock: clock.now, ttlMs: 5000 })
    assert.equal((await put(r, '/v1/agent/service/register', ttlService({ TTL: '10s', Status: 'passing' }))).statusCode, 200)
    assert.equal((await put(r, '/v1/agent/service/register', { Name: 'web', ID: 'web-2', Address: '10.0.0.9', Port: 9002 })).statusCode, 200)
    clock.advance(24 * 3_600_000)
    await r.sweep()
    assert.deepEqual(
      (await health(r)).map((e) => [e.Service.ID, e.Checks[0]?.Status]),
      [
        ['web-1', 'critical'],
        ['web-2', undefined],
      ],
    )
    // A pass brings the critical one back.
    assert.equal((await put(r, '/v1/agent/check/pass/service%3Aweb-1')).statusCode, 200)
    assert.equal((await get(r, '/discover/web')).json().instances.length, 2)
  })
})

describe('Consul TTL checks on etcd (real time, whole-second leases)', () => {
  it('a check passed through one replica stays passing on both; without passes it turns critical, then is deregistered', async () => {
    const prefix = freshPrefix()
    const a = await registry(etcd, { store: await etcd.make({ prefix }) })
    const b = await registry(etcd, { store: await etcd.make({ prefix }) })
    // One of the two leads (turns lapsed checks critical); both sweep, as their sweepers would.
    const sweep = () => Promise.all([a.sweep(), b.sweep()])
    assert.equal((await put(a, '/v1/agent/service/register', ttlService({ TTL: '2s', DeregisterCriticalServiceAfter: '2s', Status: 'passing' }))).statusCode, 200)
    await waitFor(async () => (await status(b, 'web-1')) === 'passing', { what: 'replica b to see the passing check' })
    // Passes through b for longer than the TTL: the check never lapses.
    const until = Date.now() + 3500
    while (Date.now() < until) {
      assert.equal((await put(b, '/v1/agent/check/pass/service%3Aweb-1')).statusCode, 200)
      await sweep()
      assert.equal(await status(a, 'web-1'), 'passing', 'passed within its TTL')
      await new Promise((resolve) => setTimeout(resolve, 400))
    }
    // No more passes: critical on both within the TTL (and etcd's lease granularity), then gone.
    await waitFor(
      async () => {
        await sweep()
        return (await status(a, 'web-1')) === 'critical' && (await status(b, 'web-1')) === 'critical'
      },
      { timeoutMs: 8000, intervalMs: 200, what: 'the check to turn critical on both replicas' },
    )
    await waitFor(
      async () => {
        await sweep()
        return (await health(a)).length === 0 && (await health(b)).length === 0
      },
      { timeoutMs: 10_000, intervalMs: 200, what: 'the instance to be deregistered after DeregisterCriticalServiceAfter' },
    )
  })

  it('a pass brings a critical check back on both replicas', async () => {
    const prefix = freshPrefix()
    const a = await registry(etcd, { store: await etcd.make({ prefix }) })
    const b = await registry(etcd, { store: await etcd.make({ prefix }) })
    assert.equal((await put(a, '/v1/agent/service/register', ttlService({ TTL: '60s' }))).statusCode, 200)
    await waitFor(async () => (await status(b, 'web-1')) === 'critical', { what: 'replica b to see it critical' })
    assert.equal((await put(b, '/v1/agent/check/pass/service%3Aweb-1')).statusCode, 200)
    await waitFor(async () => (await status(a, 'web-1')) === 'passing', { what: 'replica a to see it passing' })
    // Both sweep, and the passing check (its key renewed) is left alone.
    await Promise.all([a.sweep(), b.sweep()])
    assert.equal(await status(a, 'web-1'), 'passing')
    assert.equal(await status(b, 'web-1'), 'passing')
  })
})
