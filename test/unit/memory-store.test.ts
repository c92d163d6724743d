import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { instanceIdFor } from '../../src/protocol/registry.ts'
import { MemoryStore } from '../../src/registry/memory-store.ts'

function setup(ttlMs = 30_000) {
  let now = 1_700_000_000_000
  const clock = {
    now: () => now,
    advance: (ms: number) => {
      now += ms
    },
  }
  const store = new MemoryStore({ ttlMs, clock: clock.now })
  return { store, clock }
}

const product = (port: number) => ({ service_name: 'product', url: `http://10.0.0.1:${port}` })

describe('MemoryStore', () => {
  it('rejects a non-positive TTL', async () => {
    assert.throws(() => new MemoryStore({ ttlMs: 0 }), RangeError)
  })

  it('registers an instance with a stable id derived from (service_name, url)', async () => {
    const { store } = setup()
    const result = await store.register(product(8081))
    assert.ok(result.kind === 'created')
    assert.equal(result.instance.id, instanceIdFor('product', 'http://10.0.0.1:8081'))
    assert.equal(result.instance.reportedStatus, 'up')
    // A restarted registry derives the same id for the same instance.
    const again = await new MemoryStore({ ttlMs: 1 }).register(product(8081))
    assert.ok(again.kind === 'created')
    assert.equal(again.instance.id, result.instance.id)
  })

  it('tells watchers of a refresh once, never showing the instance missing in between', async () => {
    const { store } = setup()
    await store.register(product(8081))
    await store.register(product(8082))
    const seen: number[] = []
    store.watch((name) => seen.push(store.members(name).instances.length))
    await store.register({ ...product(8081), metadata: { zone: 'b' } })
    assert.deepEqual(seen, [2])
    // The only instance of a service, refreshed: the service is not forgotten on the way.
    await store.register({ service_name: 'order', url: 'http://10.0.0.2:8083' })
    seen.length = 0
    await store.register({ service_name: 'order', url: 'http://10.0.0.2:8083', status: 'draining' })
    assert.deepEqual(seen, [1])
  })

  it('refreshes instead of duplicating when the same instance registers again', async () => {
    const { store, clock } = setup()
    const first = await store.register(product(8081))
    clock.advance(1000)
    const second = await store.register({ ...product(8081), metadata: { zone: 'a' } })
    assert.equal(second.kind, 'refreshed')
    assert.ok(first.kind === 'created' && second.kind === 'refreshed')
    assert.equal(second.instance.id, first.instance.id)
    assert.equal(second.instance.registeredAt, first.instance.registeredAt)
    assert.equal(second.instance.lastHeartbeat, first.instance.lastHeartbeat + 1000)
    assert.deepEqual(
      store.discover('product').instances.map((i) => i.metadata),
      [{ zone: 'a' }],
    )
  })

  it('refuses an explicit instance_id that belongs to another instance', async () => {
    const { store } = setup()
    await store.register({ ...product(8081), instance_id: 'p1' })
    const result = await store.register({ ...product(8082), instance_id: 'p1' })
    assert.equal(result.kind, 'conflict')
  })

  it('discovers only instances whose last heartbeat is younger than the TTL', async () => {
    const { store, clock } = setup(30_000)
    await store.register(product(8081))
    clock.advance(20_000)
    await store.register(product(8082))
    assert.equal(store.discover('product').instances.length, 2)
    clock.advance(9_999) // first is 29.999 s old
    assert.equal(store.discover('product').instances.length, 2)
    clock.advance(1) // first is exactly 30 s old: stale
    assert.deepEqual(
      store.discover('product').instances.map((i) => i.url),
      ['http://10.0.0.1:8082'],
    )
  })

  it('answers an unknown service with an empty list', async () => {
    const { store } = setup()
    assert.deepEqual(store.discover('nothing').instances, [])
  })

  it('keeps an instance alive with heartbeats, by url or by id', async () => {
    const { store, clock } = setup(30_000)
    const registered = await store.register(product(8081))
    assert.ok(registered.kind === 'created')
    for (let i = 0; i < 10; i++) {
      clock.advance(10_000)
      const beat = i % 2 === 0 ? await store.heartbeat(product(8081)) : await store.heartbeat({ instance_id: registered.instance.id })
      assert.ok(beat)
    }
    assert.equal(store.discover('product').instances.length, 1)
  })

  it('answers a heartbeat for an unknown instance with undefined (404 on the wire)', async () => {
    const { store } = setup()
    assert.equal(await store.heartbeat(product(9999)), undefined)
    assert.equal(await store.heartbeat({ instance_id: 'nope' }), undefined)
  })

  it('evicts only instances that stayed stale, and reports each', async () => {
    const { store, clock } = setup(30_000)
    await store.register(product(8081))
    clock.advance(15_000)
    await store.register(product(8082))
    assert.deepEqual(await store.evictExpired(), { evicted: [], critical: [] })
    clock.advance(15_000)
    const { evicted } = await store.evictExpired()
    assert.deepEqual(
      evicted.map((i) => i.url),
      ['http://10.0.0.1:8081'],
    )
    assert.equal(await store.heartbeat(product(8081)), undefined, 'an evicted instance must register again')
    assert.ok(await store.heartbeat(product(8082)))
  })

  it('deregisters by (service_name, url) and by id', async () => {
    const { store } = setup()
    const a = await store.register(product(8081))
    await store.register(product(8082))
    assert.ok(a.kind === 'created')
    assert.equal((await store.deregister(product(8082)))?.url, 'http://10.0.0.1:8082')
    assert.equal((await store.deregister({ instance_id: a.instance.id }))?.id, a.instance.id)
    assert.equal(await store.deregister(product(8081)), undefined)
    assert.deepEqual(store.discover('product').instances, [])
  })

  it('moves the service index on membership changes, not on routine heartbeats', async () => {
    const { store, clock } = setup(30_000)
    await store.register(product(8081))
    const afterRegister = store.discover('product').index
    clock.advance(5_000)
    await store.heartbeat(product(8081))
    assert.equal(store.discover('product').index, afterRegister)
    await store.register(product(8082))
    const afterSecond = store.discover('product').index
    assert.ok(afterSecond > afterRegister)
    await store.deregister(product(8082))
    assert.ok(store.discover('product').index > afterSecond)
    // Another service's changes do not move this one's index.
    const before = store.discover('product').index
    await store.register({ service_name: 'order', url: 'http://10.0.0.2:8083' })
    assert.equal(store.discover('product').index, before)
  })

  it('reuses the discovery snapshot until something changes, and rebuilds it after a heartbeat', async () => {
    const { store, clock } = setup(30_000)
    await store.register(product(8081))
    const first = store.discover('product')
    assert.equal(store.discover('product'), first, 'same snapshot object while nothing changed')
    clock.advance(1000)
    await store.heartbeat(product(8081))
    const second = store.discover('product')
    assert.notEqual(second, first)
    assert.equal(second.instances[0]!.lastHeartbeat, first.instances[0]!.lastHeartbeat + 1000)
    // The cache never outlives an instance's expiry.
    clock.advance(30_000)
    assert.deepEqual(store.discover('product').instances, [])
  })

  it('lists every service that has live instances', async () => {
    const { store, clock } = setup(30_000)
    await store.register(product(8081))
    await store.register({ service_name: 'order', url: 'http://10.0.0.2:8083' })
    assert.deepEqual(
      store.services().map((s) => s.serviceName),
      ['order', 'product'],
    )
    clock.advance(30_000)
    assert.deepEqual(store.services(), [])
  })
})

describe('MemoryStore limits', () => {
  it('refuses registrations beyond maxInstances, but still refreshes known ones', async () => {
    const store = new MemoryStore({ ttlMs: 60_000, maxInstances: 2 })
    assert.equal((await store.register(product(1))).kind, 'created')
    assert.equal((await store.register(product(2))).kind, 'created')
    assert.deepEqual(await store.register(product(3)), { kind: 'full', limit: 2 })
    assert.equal((await store.register(product(2))).kind, 'refreshed')
    await store.deregister(product(1))
    assert.equal((await store.register(product(3))).kind, 'created')
  })

  it('forgets services that have no instance left, and a returning one gets a higher index', async () => {
    const store = new MemoryStore({ ttlMs: 60_000 })
    await store.register({ service_name: 'once', url: 'http://10.0.0.9:1' })
    const before = store.discover('once').index
    await store.deregister({ service_name: 'once', url: 'http://10.0.0.9:1' })
    assert.equal(store.discover('once').index, 0)
    await store.register({ service_name: 'once', url: 'http://10.0.0.9:1' })
    assert.ok(store.discover('once').index > before)
  })
})
