// The `consul` npm client, unchanged, against a registry process: what an application that
// registers and finds its dependencies through Consul sees. It reads natively registered instances
// and follows them with a blocking watch; it registers a service with a TTL check, keeps it passing,
// reads it back, and deregisters it; without passes the check turns critical and, after
// DeregisterCriticalServiceAfter, the registry deregisters it.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import Consul from 'consul'
import { http } from '../helpers/http.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { waitFor } from '../helpers/wait.ts'

/** Requests the registry has answered on a route, from its /metrics. */
async function served(registryUrl: string, route: string): Promise<number> {
  const text = (await http('GET', `${registryUrl}/metrics`)).text
  let total = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('http_requests_total{') && line.includes(`route="${route}"`)) total += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return total
}

describe('the consul npm client against the registry', () => {
  let registry: RunningProcess
  let consul: Consul

  before(async () => {
    registry = await startRole('registry')
    const url = new URL(registry.url)
    consul = new Consul({ host: url.hostname, port: Number(url.port) })
  })

  after(async () => {
    await registry?.stop()
  })

  it('reads the agent, the catalog and the health view of natively registered instances', async () => {
    for (const port of [8081, 8082]) {
      const answer = await http('POST', `${registry.url}/register`, { service_name: 'product', url: `http://127.0.0.1:${port}`, metadata: { tags: 'v1' } })
      assert.equal(answer.status, 201)
    }
    const self = (await consul.agent.self()) as { Config: { Datacenter: string } }
    assert.equal(self.Config.Datacenter, 'dc1')
    const services = (await consul.catalog.service.list()) as Record<string, string[]>
    assert.deepEqual(services.product, ['v1'])
    const nodes = (await consul.catalog.service.nodes('product')) as Array<{ ServicePort: number; ServiceAddress: string }>
    assert.deepEqual(nodes.map((n) => n.ServicePort).sort(), [8081, 8082])
    const healthy = (await consul.health.service({ service: 'product', passing: true })) as Array<{ Service: { Port: number }; Checks: Array<{ Status: string }> }>
    assert.equal(healthy.length, 2)
    assert.ok(healthy.every((entry) => entry.Checks.every((check) => check.Status === 'passing')))
  })

  it('a watch wakes on a change, and does not poll in between', async () => {
    const watch = consul.watch({ method: consul.health.service, options: { service: 'product', passing: 'true' } })
    const seen: number[] = []
    watch.on('change', (data: unknown[]) => seen.push(data.length))
    const errors: unknown[] = []
    watch.on('error', (error: unknown) => errors.push(error))
    try {
      await waitFor(() => seen.length >= 1, { what: 'the first answer' })
      const first = seen.at(-1)
      // Idle: the client holds one blocking query open; the registry answers nothing meanwhile.
      const before = await served(registry.url, '/v1/health/service/:service')
      await new Promise((resolve) => setTimeout(resolve, 1500))
      const idle = (await served(registry.url, '/v1/health/service/:service')) - before
      assert.ok(idle <= 1, `${idle} answers while nothing changed: the watch polls`)
      const started = Date.now()
      await http('POST', `${registry.url}/register`, { service_name: 'product', url: 'http://127.0.0.1:8083' })
      await waitFor(() => seen.at(-1) === (first ?? 0) + 1, { what: 'the watch to see the new instance' })
      assert.ok(Date.now() - started < 2000, 'woken by the change, not by a timer')
      await http('POST', `${registry.url}/deregister`, { service_name: 'product', url: 'http://127.0.0.1:8083' })
      await waitFor(() => seen.at(-1) === first, { what: 'the watch to see it go' })
      assert.deepEqual(errors, [])
    } finally {
      watch.end()
    }
  })

  it('registers a service with a TTL check, passes it, reads it back, watches it, and deregisters it', async () => {
    await consul.agent.service.register({
      name: 'web',
      id: 'web-1',
      address: '127.0.0.1',
      port: 9101,
      tags: ['v2'],
      meta: { version: '2.0.0' },
      // The client's types want a name and a timeout (it sends a timeout with interval checks only).
      check: { name: 'web alive', timeout: '1s', ttl: '5s', deregistercriticalserviceafter: '1m' },
    })
    type Entry = { Service: { ID: string; Port: number; Tags: string[]; Meta: Record<string, string> }; Checks: Array<{ CheckID: string; Status: string }> }
    const entries = async (passing: boolean) => (await consul.health.service({ service: 'web', ...(passing ? { passing: true } : {}) })) as Entry[]
    const [registered] = await entries(false)
    assert.equal(registered?.Service.ID, 'web-1')
    assert.deepEqual(
      registered?.Checks.map((check) => [check.CheckID, check.Status]),
      [['service:web-1', 'critical']],
      'a TTL check starts critical',
    )
    assert.deepEqual(await entries(true), [])

    const watch = consul.watch({ method: consul.health.service, options: { service: 'web', passing: 'true' } })
    const seen: string[][] = []
    watch.on('change', (data: Entry[]) => seen.push(data.map((entry) => entry.Service.ID)))
    try {
      await waitFor(() => seen.length >= 1, { what: 'the watch to answer' })
      assert.deepEqual(seen.at(-1), [])
      // The client sends the check id as `service%3Aweb-1`.
      await consul.agent.check.pass({ id: 'service:web-1', note: 'ready' })
      await waitFor(() => seen.at(-1)?.length === 1, { what: 'the watch to see it passing' })
      const [passing] = await entries(true)
      assert.equal(passing?.Service.Port, 9101)
      assert.deepEqual(passing?.Service.Tags, ['v2'])
      assert.deepEqual(passing?.Service.Meta, { version: '2.0.0' })
      // Natively, it is an instance like any other.
      const native = (await http('GET', `${registry.url}/discover/web`)).body as { instances: Array<{ id: string; url: string }> }
      assert.deepEqual(
        native.instances.map((i) => [i.id, i.url]),
        [['web-1', 'http://127.0.0.1:9101']],
      )
      await consul.agent.service.deregister('web-1')
      await waitFor(() => seen.at(-1)?.length === 0, { what: 'the watch to see it deregistered' })
    } finally {
      watch.end()
    }
    assert.deepEqual(await entries(false), [])
  })

  it('a Consul-registered service lives by its check: critical after the TTL, deregistered after DeregisterCriticalServiceAfter', async () => {
    await consul.agent.service.register({
      name: 'batch',
      id: 'batch-1',
      address: '127.0.0.1',
      port: 9102,
      check: { name: 'batch alive', timeout: '1s', ttl: '1s', deregistercriticalserviceafter: '1s', status: 'passing' },
    })
    const status = async () => ((await consul.health.service('batch')) as Array<{ Checks: Array<{ Status: string }> }>)[0]?.Checks[0]?.Status
    assert.equal(await status(), 'passing')
    await waitFor(async () => (await status()) === 'critical', { timeoutMs: 5000, what: 'the check to turn critical a second after the last pass' })
    await waitFor(async () => (await status()) === undefined, { timeoutMs: 5000, what: 'the registry to deregister it' })
    await registry.waitForLog((line) => line.event === 'check_critical' && line.instance_id === 'batch-1')
    await registry.waitForLog((line) => line.event === 'evicted' && line.instance_id === 'batch-1')
  })
})
