// The `consul` npm client, unchanged, reading a registry process: what an application that finds
// its dependencies through Consul sees. Instances are registered natively; the client reads them
// back through the Consul API and follows them with a blocking watch.
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
})
