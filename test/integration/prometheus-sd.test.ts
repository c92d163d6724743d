// GET /sd/prometheus read by real scrapers: Debian's Prometheus (2.42) and VictoriaMetrics, each
// with an http_sd_configs job on a registry process that needs a read token. Two small HTTP
// servers of the test's own register (one with a metrics_path of its own); the scraper must list
// both as healthy targets with the registry's meta labels, then drop the one that deregisters.
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Registration } from '../../src/discovery/registration.ts'
import { RegistryClient } from '../../src/discovery/registry-client.ts'
import { http } from '../helpers/http.ts'
import { silentLogger } from '../helpers/logger.ts'
import type { RunningProcess } from '../helpers/process.ts'
import { freePorts, startTracked, stopAll, type TempDir, tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const READER = 'itest-sd-read-token-0123456789abcdef'

interface Scraper {
  name: string
  bin: string
  args: (port: number, dir: string, config: string) => string[]
  /** Answers 200 once the scraper serves its API. */
  ready: string
  /** Lines of the http_sd_configs entry besides its url (indented under it). */
  sdOptions: string[]
}

const SCRAPERS: Scraper[] = [
  {
    name: 'prometheus',
    bin: '/usr/bin/prometheus',
    args: (port, dir, config) => [`--web.listen-address=127.0.0.1:${port}`, `--storage.tsdb.path=${dir}`, `--config.file=${config}`],
    ready: '/-/ready',
    // The type, Bearer by the documentation's default, must be given: without it Prometheus 2.42
    // sends `Authorization: <token>` (https://github.com/prometheus/docs/issues/2377).
    sdOptions: ['refresh_interval: 1s', 'authorization:', '  type: Bearer', `  credentials: ${READER}`],
  },
  {
    name: 'victoria-metrics',
    bin: '/usr/bin/victoria-metrics',
    args: (port, dir, config) => [
      `-httpListenAddr=127.0.0.1:${port}`,
      `-storageDataPath=${dir}`,
      `-promscrape.config=${config}`,
      // VictoriaMetrics re-reads http_sd_configs on this interval (1 m by default), not refresh_interval.
      '-promscrape.httpSDCheckInterval=1s',
      // And the targets its Consul watch found (it follows Consul with blocking queries meanwhile).
      '-promscrape.consulSDCheckInterval=1s',
      // Keep the discovered labels for /api/v1/targets.
      '-promscrape.dropOriginalLabels=false',
    ],
    ready: '/health',
    // No refresh_interval: VictoriaMetrics refuses the field (its flag above sets the interval).
    sdOptions: ['authorization:', '  type: Bearer', `  credentials: ${READER}`],
  },
]

interface Target {
  discoveredLabels: Record<string, string>
  labels: Record<string, string>
  scrapePool: string
  scrapeUrl: string
  health: string
  lastError: string
}

const started: RunningProcess[] = []
const dirs: TempDir[] = []
const children: ChildProcess[] = []
const cleanups: Array<() => Promise<void>> = []
let registry: RunningProcess

before(async () => {
  registry = await startTracked(started, 'registry', { env: { REGISTRY_DNS_PORT: '0', REGISTRY_READ_TOKEN: READER } })
})

after(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup().catch(() => {})))
  await Promise.all(
    children.splice(0).map(async (child) => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGKILL')
        await exited
      }
    }),
  )
  await stopAll(started)
  for (const dir of dirs.splice(0)) dir.remove()
})

/** An HTTP server answering `metricsPath` with one Prometheus text metric, registered as `service`. */
async function metricsServer(service: string, name: string, metadata: Record<string, string>, metricsPath = '/metrics') {
  const server = createServer((request, response) => {
    if (request.url !== metricsPath) return response.writeHead(404).end()
    response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(`# TYPE sd_test_value gauge\nsd_test_value{server="${name}"} 1\n`)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const client = new RegistryClient({ urls: [registry.url] })
  const registration = new Registration({ client, serviceName: service, url, metadata, heartbeatIntervalMs: 500, logger: silentLogger() })
  registration.start()
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await registration.stop()
    await client.close()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
  cleanups.push(close)
  return { url, port: (server.address() as AddressInfo).port, close }
}

const REGISTRY_RELABEL = [
  '      - source_labels: [__meta_registry_service]',
  '        target_label: service',
  '      - source_labels: [__meta_registry_metadata_zone]',
  '        target_label: zone',
]

/** The job's http_sd_configs on the registry, for `service`. */
const httpSd = (scraper: Scraper, service: string) => [
  '    http_sd_configs:',
  `      - url: ${registry.url}/sd/prometheus?service=${service}`,
  ...scraper.sdOptions.map((line) => `        ${line}`),
]

/** Starts the scraper on a free port with a job discovering through `sd` (http_sd_configs by default); resolves once it is ready. */
async function startScraper(scraper: Scraper, service: string, sd = httpSd(scraper, service), relabel = REGISTRY_RELABEL) {
  const dir = tempDir(`sd-${scraper.name}`)
  dirs.push(dir)
  const [port] = await freePorts(1)
  const config = join(dir.path, 'scrape.yml')
  writeFileSync(
    config,
    ['global:', '  scrape_interval: 1s', '  scrape_timeout: 1s', 'scrape_configs:', '  - job_name: registry-sd', ...sd, '    relabel_configs:', ...relabel, ''].join('\n'),
  )
  const child = spawn(scraper.bin, scraper.args(port!, join(dir.path, 'data'), config), { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  const output: string[] = []
  child.stdout!.on('data', (chunk: Buffer) => output.push(chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()))
  const base = `http://127.0.0.1:${port}`
  const exited = () => child.exitCode !== null || child.signalCode !== null
  await waitFor(async () => exited() || (await fetch(`${base}${scraper.ready}`, { signal: AbortSignal.timeout(2000) })).status === 200, {
    timeoutMs: 30_000,
    intervalMs: 100,
    what: `${scraper.name} ready`,
  }).catch((error: Error) => {
    throw new Error(`${error.message}\n${output.join('').slice(-2000)}`)
  })
  if (exited()) throw new Error(`${scraper.name} exited at start:\n${output.join('').slice(-2000)}`)
  const targets = async () => {
    const response = await http<{ status: string; data: { activeTargets: Target[] } }>('GET', `${base}/api/v1/targets?state=active`)
    assert.equal(response.status, 200, response.text)
    return response.body.data.activeTargets.filter((target) => target.labels.job === 'registry-sd')
  }
  return { targets, output }
}

for (const scraper of SCRAPERS) {
  const skip = existsSync(scraper.bin) ? false : `${scraper.bin} is not installed (apt-get install ${scraper.name})`
  describe(`GET /sd/prometheus read by ${scraper.name}`, { skip }, () => {
    it('scrapes every registered instance with its meta labels, and drops one that deregisters', async () => {
      const service = `sd-${scraper.name}`
      const a = await metricsServer(service, 'a', { zone: 'eu-1', 'team.name': 'shop' })
      const b = await metricsServer(service, 'b', { zone: 'eu-2', metrics_path: '/custom/metrics' }, '/custom/metrics')
      const { targets, output } = await startScraper(scraper, service)
      const byUrl = (list: Target[], url: string) => list.find((target) => target.discoveredLabels.__meta_registry_url === url)

      const both = await waitFor(
        async () => {
          const list = await targets()
          return list.length === 2 && list.every((target) => target.health === 'up') && list
        },
        { timeoutMs: 30_000, intervalMs: 250, what: `${scraper.name} scraping both instances` },
      ).catch(async (error: Error) => {
        throw new Error(`${error.message}\ntargets: ${JSON.stringify(await targets().catch(() => []))}\n${output.join('').slice(-2000)}`)
      })
      const ta = byUrl(both, a.url)
      const tb = byUrl(both, b.url)
      assert.ok(ta && tb, JSON.stringify(both))
      assert.equal(ta.discoveredLabels.__meta_registry_service, service)
      assert.match(ta.discoveredLabels.__meta_registry_instance_id!, new RegExp(`^${service}-[0-9a-f]{12}$`))
      assert.equal(ta.discoveredLabels.__meta_registry_status, 'up')
      assert.equal(ta.discoveredLabels.__meta_registry_metadata_zone, 'eu-1')
      assert.equal(ta.discoveredLabels.__meta_registry_metadata_team_name, 'shop')
      assert.equal(ta.discoveredLabels.__address__, `127.0.0.1:${a.port}`)
      assert.equal(ta.scrapeUrl, `${a.url}/metrics`)
      assert.equal(tb.discoveredLabels.__meta_registry_metadata_metrics_path, '/custom/metrics')
      // The instance's own metrics path is where it is scraped (the server answers 404 elsewhere).
      assert.equal(tb.scrapeUrl, `${b.url}/custom/metrics`)
      // Relabelled from the meta labels, which are gone from the target's own labels.
      assert.equal(ta.labels.service, service)
      assert.equal(ta.labels.zone, 'eu-1')
      assert.equal(tb.labels.zone, 'eu-2')
      assert.equal(ta.labels.instance, `127.0.0.1:${a.port}`)
      for (const target of both) assert.ok(!Object.keys(target.labels).some((name) => name.startsWith('__')), JSON.stringify(target.labels))

      // Deregistered (and stopped): dropped from the targets at the next refresh.
      await b.close()
      await waitFor(
        async () => {
          const list = await targets()
          return list.length === 1 && byUrl(list, a.url)?.health === 'up'
        },
        { timeoutMs: 30_000, intervalMs: 250, what: `${scraper.name} dropping the deregistered instance` },
      )
    })
  })
}

// Consul service discovery, which Debian's Prometheus is built without: VictoriaMetrics reads the
// registry's Consul API (agent/self for the datacenter, catalog/services and health/service as
// blocking queries), with the read token as X-Consul-Token.
const VICTORIA = SCRAPERS.find((scraper) => scraper.name === 'victoria-metrics')!
describe('the Consul API read by victoria-metrics consul_sd_configs', { skip: existsSync(VICTORIA.bin) ? false : `${VICTORIA.bin} is not installed` }, () => {
  it('scrapes every live instance with its Consul labels, and drops one that deregisters', async () => {
    const service = 'consul-sd'
    const a = await metricsServer(service, 'a', { zone: 'eu-1', tags: 'v1,blue' })
    const b = await metricsServer(service, 'b', { zone: 'eu-2' })
    const sd = ['    consul_sd_configs:', `      - server: ${new URL(registry.url).host}`, `        token: ${READER}`, `        services: [${service}]`]
    const relabel = ['      - source_labels: [__meta_consul_service]', '        target_label: service']
    const { targets, output } = await startScraper(VICTORIA, service, sd, relabel)
    const byAddress = (list: Target[], port: number) => list.find((target) => target.discoveredLabels.__address__ === `127.0.0.1:${port}`)
    const both = await waitFor(
      async () => {
        const list = await targets()
        return list.length === 2 && list.every((target) => target.health === 'up') && list
      },
      { timeoutMs: 30_000, intervalMs: 250, what: 'victoria-metrics scraping both instances found through Consul SD' },
    ).catch(async (error: Error) => {
      throw new Error(`${error.message}\ntargets: ${JSON.stringify(await targets().catch(() => []))}\n${output.join('').slice(-2000)}`)
    })
    const ta = byAddress(both, a.port)
    assert.ok(ta && byAddress(both, b.port), JSON.stringify(both))
    assert.equal(ta.discoveredLabels.__meta_consul_service, service)
    assert.equal(ta.discoveredLabels.__meta_consul_dc, 'dc1')
    assert.equal(ta.discoveredLabels.__meta_consul_service_metadata_zone, 'eu-1')
    assert.equal(ta.discoveredLabels.__meta_consul_tags, ',v1,blue,')
    assert.equal(ta.labels.service, service)
    assert.equal(ta.scrapeUrl, `${a.url}/metrics`)

    await b.close()
    await waitFor(
      async () => {
        const list = await targets()
        return list.length === 1 && byAddress(list, a.port)?.health === 'up'
      },
      { timeoutMs: 30_000, intervalMs: 250, what: 'victoria-metrics dropping the deregistered instance' },
    )
  })
})
