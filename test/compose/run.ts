// `npm run test:compose`: deploys docker-compose.yml for real (podman + docker-compose over its
// socket, `--scale product=3 --scale order=2`, secrets from deploy/make-secrets.sh) and checks what
// the deployment promises: no start without the secrets; every replica in discovery at its own
// address, each service with its own scoped token; a container on the network without a valid
// token cannot register or touch an instance; only the gateway (and the registry, on 127.0.0.1)
// published; resource limits in force; products and orders through the published gateway, data
// shared through PostgreSQL, a crashed instance leaving discovery within the TTL while orders keep
// succeeding, a SIGTERM'd instance deregistering at once, graceful stops, and a prompt exit on
// SIGTERM even while a service is still starting; Prometheus (the monitoring profile) scraping every
// instance it found through the registry. Then the etcd variant (deploy/docker-compose.etcd.yml,
// a second project): three etcd members form one cluster, two registry replicas serve the same view
// (instances and epoch) from it, with the etcd leader or one registry replica killed writes,
// heartbeats and orders go on, a restarted replica answers the whole view or nothing, and `stop`
// ends services, replicas and etcd in that order, each with exit 0.
// Everything it creates is torn down at the end, also on failure or Ctrl-C.
// See the README's Deployment section.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { waitFor } from '../helpers/wait.ts'
import { REPO_ROOT, engineEnv, ensurePackages, run, startSocketService, type SocketService } from './engine.ts'
import { ensureEtcdImage, ensureNodeBaseImage, ensurePostgresImage, ensurePrometheusImage } from './images.ts'
import { InNetworkClient, sendFromNewContainer, type HttpAnswer, type HttpCall } from './in-network.ts'
import { PROJECT_PREFIX, Stack, clearState, reapAbandonedRuns, removeProjectResources, saveState, type ContainerInfo } from './stack.ts'

/** As set in test/compose/docker-compose.test.yml. */
const TTL_MS = 3000
const SCALE = { product: 3, order: 2 } as const
/** Every service that registers, and how many instances of it the test runs. */
const INSTANCES = { ...SCALE, gateway: 1 } as const
const APP_IMAGE = 'localhost/microservices-advanced-test/app:latest'
const COMPOSE_FILES = ['docker-compose.yml', 'test/compose/docker-compose.test.yml']
const VERBOSE = process.env.TEST_VERBOSE === '1'

const log = (message: string) => process.stderr.write(`[compose-test] ${message}\n`)

const runStarted = performance.now()
const timings: Array<[string, number]> = []
async function phase<T>(name: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now()
  try {
    return await work()
  } finally {
    timings.push([name, performance.now() - started])
    if (VERBOSE) log(`${name}: ${((performance.now() - started) / 1000).toFixed(1)} s`)
  }
}

// What setup made, so that teardown can undo exactly that, however far setup got.
const project = `${PROJECT_PREFIX}-${process.pid}-${randomBytes(3).toString('hex')}`
let workDir: string | undefined
let socket: SocketService | undefined
let stack: Stack | undefined
let client: InNetworkClient | undefined
let registryUrl = ''
let gatewayUrl = ''
let registryPort = 0
let gatewayPort = 0
let prometheusUrl = ''
let prometheusPort = 0
/** The Compose variables of the run (DOCKER_HOST, images, ports, SECRETS_DIR). */
let composeEnv: Record<string, string> = {}
/** Made by deploy/make-secrets.sh for this run only (never the developer's ./secrets). */
let secretsDir = ''
let failed = false
/** For the etcd variant (deploy/docker-compose.etcd.yml), built in `before`. */
let etcdImage = ''

const SECRET_FILES = ['registry_admin_token', 'product_registry_token', 'order_registry_token', 'gateway_registry_token', 'postgres_password', 'database_url'] as const
const ACL_FILE = 'registry-acl/registry_acl.json'
const MARKER_FILE = 'made-by-deploy-make-secrets.env'

function secretOf(name: (typeof SECRET_FILES)[number]): string {
  return readFileSync(join(secretsDir, name), 'utf8').replace(/\n$/, '')
}

async function makeSecrets(): Promise<string> {
  const result = await run('bash', [join(REPO_ROOT, 'deploy', 'make-secrets.sh')], { env: { ...engineEnv(), SECRETS_DIR: secretsDir }, timeoutMs: 60_000 })
  return result.stdout + result.stderr
}

/** Wraps a test body so that teardown knows to print the services' logs. */
function step(body: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await body()
    } catch (error) {
      failed = true
      throw error
    }
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen({ port, host: '0.0.0.0' }, () => server.close(() => resolve(true)))
  })
}

/** The usual port when it is free, else any free one (never one of `taken`). */
async function hostPort(usual: number, taken: number[] = []): Promise<number> {
  if (await canListen(usual)) return usual
  for (;;) {
    const port = await freePort()
    if (!taken.includes(port)) return port
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen({ port: 0, host: '0.0.0.0' }, () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** Every ${VARIABLE} the Compose files read: cleared, so a developer's own DATABASE_URL etc. cannot leak in. */
function composeVariables(files = COMPOSE_FILES): Record<string, string> {
  const names = new Set<string>()
  for (const file of files) {
    for (const match of readFileSync(join(REPO_ROOT, file), 'utf8').matchAll(/\$\{([A-Z0-9_]+)/g)) names.add(match[1]!)
  }
  return Object.fromEntries([...names].map((name) => [name, '']))
}

/** deploy/prometheus.yml with 1 s intervals instead of 15 s (mounted by docker-compose.test.yml), in `dir`. */
function prometheusTestConfig(dir: string): string {
  const deployed = readFileSync(join(REPO_ROOT, 'deploy', 'prometheus.yml'), 'utf8')
  const fast = deployed.replace(/^(\s*(?:scrape_interval|evaluation_interval|refresh_interval):) 15s$/gm, '$1 1s')
  assert.equal((fast.match(/_interval: 1s$/gm) ?? []).length, 3, 'deploy/prometheus.yml sets scrape, evaluation and refresh intervals of 15 s')
  const path = join(dir, 'prometheus.yml')
  writeFileSync(path, fast, { mode: 0o644 })
  return path
}

interface Instance {
  id: string
  url: string
}

async function discover(service: string): Promise<Instance[]> {
  const response = await fetch(`${registryUrl}/discover/${service}`, { signal: AbortSignal.timeout(5000) })
  assert.equal(response.status, 200, `GET /discover/${service}`)
  return ((await response.json()) as { instances: Instance[] }).instances
}

interface TimedAnswer extends HttpAnswer {
  /** When the answer came (Date.now()). */
  at: number
}

/** HTTP from the host: only to the published ports on 127.0.0.1. */
async function http(method: 'GET' | 'POST', url: string, body?: unknown, timeoutMs = 20_000): Promise<TimedAnswer> {
  const started = performance.now()
  try {
    const response = await fetch(url, {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    })
    const text = await response.text()
    let parsed: unknown = text
    try {
      parsed = JSON.parse(text)
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, body: parsed, ms: Math.round(performance.now() - started), at: Date.now(), headers: Object.fromEntries(response.headers) }
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause
    return { status: 0, body: null, ms: Math.round(performance.now() - started), at: Date.now(), error: cause?.code ?? String(error) }
  }
}

function hostOf(url: string): string {
  return new URL(url).hostname
}

async function running(service: string): Promise<ContainerInfo[]> {
  return (await stack!.containers(service)).filter((c) => c.running)
}

async function registryLog(): Promise<Array<Record<string, unknown>>> {
  const registry = (await stack!.containers('registry'))[0]
  if (!registry) return []
  const result = await run('podman', ['logs', registry.id], { timeoutMs: 30_000 })
  return (result.stdout + result.stderr)
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>]
      } catch {
        return []
      }
    })
}

function describeFailures(answers: HttpAnswer[]): string {
  return JSON.stringify(answers.filter((a) => a.status !== 201).slice(0, 5))
}

before(async () => {
  try {
    workDir = mkdtempSync(join(tmpdir(), 'ma-compose-'))
    const logFile = join(workDir, 'run.log')
    log(`project ${project}; logs in ${workDir}`)
    await phase('clean up after runs that were killed', () => reapAbandonedRuns(log))
    saveState({ project, runnerPid: process.pid, workDir })

    await phase('install podman, runc, docker-compose, debootstrap (when missing)', () => ensurePackages(log, logFile))
    const nodeImage = await phase('Node 24 base image (cached by tag)', () => ensureNodeBaseImage(log, logFile))
    const postgresImage = await phase('PostgreSQL image (cached by tag)', () => ensurePostgresImage(log, logFile, workDir!))
    etcdImage = await phase('etcd image (cached by tag)', () => ensureEtcdImage(log, logFile))
    const prometheusImage = await phase('Prometheus image (cached by tag)', () => ensurePrometheusImage(log, logFile))
    socket = await phase('podman API socket', () => startSocketService(workDir!, join(workDir!, 'podman-service.log')))
    saveState({ project, runnerPid: process.pid, workDir, socketPid: socket.pid, socketPath: socket.socketPath })

    registryPort = await hostPort(8080)
    gatewayPort = await hostPort(8000, [registryPort])
    if (registryPort !== 8080 || gatewayPort !== 8000) log(`8080 or 8000 is taken: registry on ${registryPort}, gateway on ${gatewayPort}`)
    prometheusPort = await hostPort(9090, [registryPort, gatewayPort])
    registryUrl = `http://127.0.0.1:${registryPort}`
    gatewayUrl = `http://127.0.0.1:${gatewayPort}`
    prometheusUrl = `http://127.0.0.1:${prometheusPort}`
    secretsDir = join(workDir, 'secrets')
    await phase('secrets (deploy/make-secrets.sh)', makeSecrets)
    composeEnv = {
      ...composeVariables(),
      DOCKER_HOST: socket.dockerHost,
      NODE_IMAGE: nodeImage,
      TEST_POSTGRES_IMAGE: postgresImage,
      IMAGE: APP_IMAGE,
      REGISTRY_HOST_PORT: String(registryPort),
      GATEWAY_HOST_PORT: String(gatewayPort),
      SECRETS_DIR: secretsDir,
      PROMETHEUS_IMAGE: prometheusImage,
      PROMETHEUS_HOST_PORT: String(prometheusPort),
      TEST_PROMETHEUS_CONFIG: prometheusTestConfig(workDir),
    }
    // The monitoring profile for every command on this project (up, stop, logs, down), as
    // `--profile monitoring` would be; the etcd variant below runs without it.
    stack = new Stack({ project, files: COMPOSE_FILES, logFile, env: { ...composeEnv, COMPOSE_PROFILES: 'monitoring' } })
    log(`docker-compose --profile monitoring up -d --build --scale product=${SCALE.product} --scale order=${SCALE.order}`)
    await phase('docker-compose up --build (image build and start)', () =>
      stack!.compose(['up', '-d', '--build', '--scale', `product=${SCALE.product}`, '--scale', `order=${SCALE.order}`], { timeoutMs: 900_000 }),
    )
    await phase('every instance registered', () =>
      waitFor(
        async () => {
          for (const [service, count] of Object.entries(INSTANCES)) if ((await discover(service)).length !== count) return false
          return (await http('GET', `${gatewayUrl}/health/ready`)).status === 200
        },
        { timeoutMs: 180_000, intervalMs: 250, what: `${JSON.stringify(INSTANCES)} instances in ${registryUrl}/discover and a ready gateway` },
      ),
    )
    client = new InNetworkClient((await stack.container('registry')).id)
  } catch (error) {
    failed = true
    throw error
  }
})

let productId = ''

test(
  `discovery lists ${SCALE.product} product and ${SCALE.order} order instances, each at its own container address`,
  step(async () => {
    for (const [service, count] of Object.entries(INSTANCES)) {
      const instances = await discover(service)
      const containers = await running(service)
      assert.equal(containers.length, count, `${service} containers`)
      assert.equal(instances.length, count, `${service} instances: ${JSON.stringify(instances)}`)
      assert.equal(new Set(instances.map((i) => hostOf(i.url))).size, count, `distinct ${service} addresses`)
      assert.deepEqual(instances.map((i) => hostOf(i.url)).sort(), containers.map((c) => c.ip).sort(), `each ${service} replica advertises its own container address`)
      const health = await client!.send(instances.map((i) => ({ url: `${i.url}/health/ready` })))
      assert.deepEqual(
        health.map((h) => h.status),
        instances.map(() => 200),
        `every ${service} instance answers at its advertised URL`,
      )
    }
  }),
)

interface PrometheusTarget {
  labels: Record<string, string>
  scrapeUrl: string
  health: string
  lastError: string
}

test(
  'Prometheus (monitoring profile) scrapes every instance it finds through the registry (http_sd_configs), each up and labelled with its service',
  step(async () => {
    const started = performance.now()
    const targets = async () => {
      const answer = await http('GET', `${prometheusUrl}/api/v1/targets?state=active`, undefined, 5000)
      if (answer.status !== 200) return []
      return (answer.body as { data: { activeTargets: PrometheusTarget[] } }).data.activeTargets.filter((t) => t.labels.job === 'services')
    }
    let expected: Array<{ service: string } & Instance> = []
    const found = await waitFor(
      async () => {
        expected = (await Promise.all(Object.keys(INSTANCES).map(async (service) => (await discover(service)).map((i) => ({ service, ...i }))))).flat()
        const list = await targets()
        const ok = expected.every((i) => list.some((t) => t.labels.instance_id === i.id && t.labels.service === i.service && t.health === 'up'))
        return ok && list
      },
      { timeoutMs: 60_000, intervalMs: 500, what: `Prometheus at ${prometheusUrl} scraping every registered instance` },
    ).catch(async (error: Error) => {
      throw new Error(`${error.message}\nregistered: ${JSON.stringify(expected)}\ntargets: ${JSON.stringify(await targets().catch(() => []))}`)
    })
    assert.equal(
      expected.length,
      Object.values(INSTANCES).reduce((a, b) => a + b, 0),
      `every instance: ${JSON.stringify(expected)}`,
    )
    for (const instance of expected) {
      const target = found.find((t) => t.labels.instance_id === instance.id)!
      assert.equal(target.scrapeUrl, `${instance.url}/metrics`, `${instance.id} is scraped at its own address`)
      assert.equal(target.lastError, '', `${instance.id}: ${target.lastError}`)
    }
    log(
      `Prometheus: ${expected.length} instances (${Object.entries(INSTANCES)
        .map(([service, count]) => `${count} ${service}`)
        .join(', ')}) up in /api/v1/targets ${Math.round(performance.now() - started)} ms into the test`,
    )
  }),
)

test(
  'deploy/make-secrets.sh: a private folder, a scoped token per service in the ACL, nothing changed by a second run; without it Compose starts nothing',
  step(async () => {
    assert.equal(statSync(secretsDir).mode & 0o777, 0o700, 'the secrets folder is 0700')
    for (const name of [...SECRET_FILES, ACL_FILE]) {
      const mode = statSync(join(secretsDir, name)).mode & 0o777
      assert.equal(mode & 0o022, 0, `${name} (${mode.toString(8)}) is writable by its owner only`)
    }
    assert.equal(statSync(join(secretsDir, 'postgres_password')).mode & 0o777, 0o600, 'postgres_password is 0600')
    const tokens = ['registry_admin_token', 'product_registry_token', 'order_registry_token', 'gateway_registry_token', 'postgres_password'] as const
    const values = tokens.map((name) => secretOf(name))
    for (const [i, value] of values.entries()) assert.match(value, /^[0-9a-f]{64}$/, `${tokens[i]}: 256 random bits`)
    assert.equal(new Set(values).size, values.length, 'every token differs')
    assert.equal(secretOf('database_url'), `postgres://app:${secretOf('postgres_password')}@postgres:5432/app`)
    const acl = JSON.parse(readFileSync(join(secretsDir, ACL_FILE), 'utf8')) as { tokens: Array<{ name: string; sha256: string; services: string[] }> }
    const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')
    assert.deepEqual(
      acl.tokens.map((t) => [t.services, t.sha256]).sort(),
      (['gateway', 'order', 'product'] as const).map((service) => [[service], sha256(secretOf(`${service}_registry_token`))]).sort(),
      'one scoped token per service, for that service only; the admin token is not in the ACL',
    )

    const before = readdirSync(secretsDir).map((name) => [name, statSync(join(secretsDir, name)).mtimeMs])
    assert.match(await makeSecrets(), /every secret is in .* already/)
    assert.deepEqual(
      readdirSync(secretsDir).map((name) => [name, statSync(join(secretsDir, name)).mtimeMs]),
      before,
      'a second run changes nothing',
    )

    // `up` without the secrets: refused before anything is made (no empty folders in their place).
    const missing = join(workDir!, 'no-secrets')
    const without = new Stack({ project: `${project}-nosecrets`, files: COMPOSE_FILES, logFile: join(workDir!, 'run.log'), env: { ...composeEnv, SECRETS_DIR: missing } })
    const refused = await without.compose(['up', '-d', '--no-build'], { allowFailure: true, timeoutMs: 60_000 })
    assert.notEqual(refused.code, 0, 'docker-compose up without the secrets fails')
    assert.ok((refused.stdout + refused.stderr).includes(join(missing, MARKER_FILE)), `it names the missing file: ${refused.stdout}${refused.stderr}`)
    assert.deepEqual(await without.leftovers(), [], 'and creates nothing')
    assert.ok(!existsSync(missing), 'not even the secrets folder')
  }),
)

/** The `code` of a problem+json answer. */
function codeOf(answer: HttpAnswer): string {
  return (answer.body as { code?: string } | null)?.code ?? ''
}

/** The product service's own image and code, started on the network without a valid token: how it ends. */
async function productWithout(token: string | undefined): Promise<{ code: number | null; fatal: Record<string, unknown> | undefined }> {
  const result = await run(
    'podman',
    [
      'run',
      '--rm',
      '--network',
      stack!.network,
      '--no-healthcheck',
      '--label',
      `com.docker.compose.project=${project}`,
      '--env',
      'REGISTRY_URL=http://registry:8080',
      // The value comes from this process's environment, so that it is not on a command line.
      ...(token === undefined ? [] : ['--env', 'REGISTRY_TOKEN']),
      APP_IMAGE,
      'product',
    ],
    { env: engineEnv(token === undefined ? {} : { REGISTRY_TOKEN: token }), allowFailure: true, timeoutMs: 60_000 },
  )
  const fatal = (result.stdout + result.stderr)
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .find((entry) => entry.level === 'fatal')
  return { code: result.code, fatal }
}

test(
  'a container on the Compose network without a valid token cannot register or touch an instance; discovery keeps only the real instances',
  step(async () => {
    const real = await discover('product')
    assert.equal(real.length, SCALE.product)
    const victim = real[0]!.id
    const registry = 'http://registry:8080'
    const impostor = { service_name: 'product', url: 'http://impostor.invalid:8081' }
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
    const wrong = randomBytes(32).toString('hex')
    const calls: Array<[HttpCall, number, string]> = [
      // Reads are open: the registry is reachable from here, so every refusal below is the registry's.
      [{ url: `${registry}/discover/product` }, 200, ''],
      [{ method: 'POST', url: `${registry}/register`, body: impostor }, 401, 'UNAUTHORIZED'],
      [{ method: 'POST', url: `${registry}/register`, body: impostor, headers: bearer(wrong) }, 401, 'UNAUTHORIZED'],
      [{ method: 'POST', url: `${registry}/register`, body: impostor, headers: bearer(secretOf('gateway_registry_token')) }, 403, 'TOKEN_NOT_ALLOWED'],
      [{ method: 'POST', url: `${registry}/heartbeat`, body: { instance_id: victim } }, 401, 'UNAUTHORIZED'],
      [{ method: 'POST', url: `${registry}/deregister`, body: { instance_id: victim }, headers: bearer(secretOf('order_registry_token')) }, 403, 'TOKEN_NOT_ALLOWED'],
      [{ method: 'DELETE', url: `${registry}/instances/${encodeURIComponent(victim)}`, headers: bearer(wrong) }, 401, 'UNAUTHORIZED'],
    ]
    const [answers, noToken, otherToken] = await Promise.all([
      sendFromNewContainer(
        { image: APP_IMAGE, network: stack!.network, labels: { 'com.docker.compose.project': project } },
        calls.map(([call]) => call),
      ),
      productWithout(undefined),
      productWithout(secretOf('order_registry_token')),
    ])
    assert.deepEqual(
      answers.map((a, i) => `${calls[i]![0].method ?? 'GET'} ${new URL(calls[i]![0].url).pathname}: ${a.status} ${codeOf(a)}`),
      calls.map(([call, status, code]) => `${call.method ?? 'GET'} ${new URL(call.url).pathname}: ${status} ${code}`),
    )
    // The product service itself, without its token or with order's: it stops (exit 1), saying why.
    for (const [what, outcome, status, code] of [
      ['no token', noToken, 401, 'UNAUTHORIZED'],
      ["order's token", otherToken, 403, 'TOKEN_NOT_ALLOWED'],
    ] as const) {
      assert.equal(outcome.code, 1, `product with ${what}: exit code`)
      assert.deepEqual(
        [outcome.fatal?.event, outcome.fatal?.status, outcome.fatal?.code],
        ['registry_refused', status, code],
        `product with ${what}: ${JSON.stringify(outcome.fatal)}`,
      )
      assert.match(String(outcome.fatal?.msg), /REGISTRY_TOKEN/)
    }

    const after = await discover('product')
    assert.deepEqual(after.map((i) => i.id).sort(), real.map((i) => i.id).sort(), 'the same product instances, and only them')
    assert.deepEqual(after.map((i) => hostOf(i.url)).sort(), (await running('product')).map((c) => c.ip).sort())
    assert.equal((await discover('product')).length, SCALE.product)
  }),
)

test(
  'only the gateway is published, and the registry and Prometheus on 127.0.0.1 only; product, order and PostgreSQL are reachable inside the network only',
  step(async () => {
    const containers = (await stack!.containers()).filter((c) => c.running)
    assert.deepEqual([...new Set(containers.map((c) => c.service))].sort(), ['gateway', 'order', 'postgres', 'product', 'prometheus', 'registry'])
    for (const container of containers) {
      const published = Object.fromEntries(Object.entries(container.published).map(([port, bindings]) => [port, bindings.map((b) => `${b.hostIp || '0.0.0.0'}:${b.hostPort}`)]))
      const expected =
        container.service === 'gateway'
          ? { '8000/tcp': [`0.0.0.0:${gatewayPort}`] }
          : container.service === 'registry'
            ? { '8080/tcp': [`127.0.0.1:${registryPort}`] }
            : container.service === 'prometheus'
              ? { '9090/tcp': [`127.0.0.1:${prometheusPort}`] }
              : {}
      assert.deepEqual(published, expected, `${container.name} publishes`)
    }
    // From inside the network, at the host's own address on it: the gateway's published port
    // answers there (it is published on every address), the registry's does not (loopback only).
    const host = await stack!.networkGateway()
    const [gateway, registry] = await client!.send([{ url: `http://${host}:${gatewayPort}/health/ready` }, { url: `http://${host}:${registryPort}/health/ready`, timeoutMs: 3000 }])
    assert.equal(gateway!.status, 200, `the gateway at ${host}:${gatewayPort}: ${JSON.stringify(gateway)}`)
    assert.equal(registry!.status, 0, `the registry at ${host}:${registryPort} must not answer: ${JSON.stringify(registry)}`)
  }),
)

/** The secrets each service is given, and nothing more. */
const SECRETS_OF: Record<string, string[]> = {
  registry: ['registry_admin_token'],
  product: ['database_url', 'product_registry_token'],
  order: ['database_url', 'order_registry_token'],
  gateway: ['gateway_registry_token'],
}

test(
  'one image serves every role: non-root, node as PID 1, compiled JavaScript only (and the dashboard files), its own secrets only, resource limits in force, HEALTHCHECK passing',
  step(async () => {
    const containers = (await Promise.all(['registry', ...Object.keys(INSTANCES)].map((service) => running(service)))).flat()
    assert.equal(containers.length, 1 + SCALE.product + SCALE.order + 1)
    // cgroup v1 (this machine) or v2: what the kernel enforces, as seen from inside.
    const probe = `
      const fs = await import('node:fs')
      const status = fs.readFileSync('/proc/1/status', 'utf8')
      const read = (...paths) => { for (const p of paths) { try { return fs.readFileSync(p, 'utf8').trim() } catch {} } return '' }
      const quota = read('/sys/fs/cgroup/cpu.max') || read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us') + ' ' + read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')
      console.log(JSON.stringify({
        pid1: fs.readFileSync('/proc/1/cmdline', 'utf8').split('\\0').filter(Boolean),
        uid: Number(/^Uid:\\s+(\\d+)/m.exec(status)[1]),
        compiled: fs.existsSync('/app/dist/cli.js'),
        sources: fs.existsSync('/app/src'),
        devDependencies: fs.existsSync('/app/node_modules/typescript'),
        secrets: fs.existsSync('/run/secrets') ? fs.readdirSync('/run/secrets').sort() : [],
        readable: fs.existsSync('/run/secrets') ? fs.readdirSync('/run/secrets').every((f) => fs.readFileSync('/run/secrets/' + f, 'utf8').length > 0) : true,
        acl: fs.existsSync('/run/registry-acl/registry_acl.json'),
        memory: Number(read('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes')),
        pids: Number(read('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max')),
        cpus: quota.split(' ').map(Number).reduce((q, p) => q / p),
      }))`
    const secretValues = SECRET_FILES.map((name) => secretOf(name))
    for (const container of [...containers, ...(await running('postgres'))]) {
      const { limits } = container
      assert.ok(limits.memoryBytes > 0 && limits.cpus > 0 && limits.pids > 0, `${container.name} has memory, CPU and PID limits: ${JSON.stringify(limits)}`)
      assert.equal(limits.memorySwapBytes, limits.memoryBytes, `${container.name}: no swap beyond its memory limit`)
      // Secrets come as files: no value of one is in any container's configured environment.
      const leaked = container.env.filter((entry) => secretValues.some((value) => entry.includes(value)))
      assert.deepEqual(
        leaked.map((entry) => entry.split('=')[0]),
        [],
        `${container.name}: secrets in its environment`,
      )
    }
    for (const container of containers) {
      assert.equal(container.user, 'node', `${container.name} runs as node`)
      const facts = JSON.parse((await run('podman', ['exec', container.id, 'node', '--input-type=module', '-e', probe])).stdout) as {
        pid1: string[]
        uid: number
        compiled: boolean
        sources: boolean
        devDependencies: boolean
        secrets: string[]
        readable: boolean
        acl: boolean
        memory: number
        pids: number
        cpus: number
      }
      assert.deepEqual(facts.pid1, ['node', 'dist/cli.js', container.service], `${container.name}: node is PID 1`)
      assert.notEqual(facts.uid, 0, `${container.name}: PID 1 is not root`)
      assert.deepEqual([facts.compiled, facts.sources, facts.devDependencies], [true, false, false], `${container.name}: dist only, no src or dev dependencies`)
      assert.deepEqual(facts.secrets, SECRETS_OF[container.service], `${container.name}: its own secrets only`)
      assert.ok(facts.readable, `${container.name}: the node user reads its secrets`)
      assert.equal(facts.acl, container.service === 'registry', `${container.name}: the ACL is the registry's only`)
      assert.deepEqual(
        { memory: facts.memory, pids: facts.pids, cpus: facts.cpus },
        { memory: container.limits.memoryBytes, pids: container.limits.pids, cpus: container.limits.cpus },
        `${container.name}: the limits are enforced (its cgroup)`,
      )
      const health = await run('podman', ['healthcheck', 'run', container.id], { allowFailure: true, timeoutMs: 30_000 })
      assert.equal(health.code, 0, `${container.name}: HEALTHCHECK (${health.stdout.trim()} ${health.stderr.trim()})`)
    }
    // The build copies what is not TypeScript too: the registry's dashboard is served.
    for (const path of ['/ui', '/ui/dashboard.js', '/ui/dashboard.css']) {
      assert.equal((await http('GET', `${registryUrl}${path}`)).status, 200, `GET ${path} on the registry`)
    }
  }),
)

test(
  'through the published gateway: a product is created and orders are priced from it; every replica sees the same data',
  step(async () => {
    const created = await http('POST', `${gatewayUrl}/products`, { name: 'Compose pencil', price: '19.99', description: 'HB' })
    assert.equal(created.status, 201, JSON.stringify(created))
    productId = (created.body as { id: string }).id

    // PostgreSQL is shared: each product replica, asked directly inside the network, has it.
    const products = await discover('product')
    const reads = await client!.send(products.map((i) => ({ url: `${i.url}/products/${productId}` })))
    for (const read of reads) {
      assert.equal(read.status, 200, JSON.stringify(read))
      assert.equal((read.body as { price: unknown }).price, 19.99)
    }

    const orders: TimedAnswer[] = []
    for (let i = 0; i < 6; i++) orders.push(await http('POST', `${gatewayUrl}/orders`, { product_id: productId, quantity: 3 }))
    for (const order of orders) {
      assert.equal(order.status, 201, JSON.stringify(order))
      const { product_id, quantity, unit_price, total_price } = order.body as Record<string, unknown>
      assert.deepEqual({ product_id, quantity, unit_price, total_price }, { product_id: productId, quantity: 3, unit_price: 19.99, total_price: 59.97 })
    }
    const orderIds = orders.map((o) => (o.body as { id: string }).id)
    const orderReplicas = await discover('order')
    const fetched = await client!.send(orderReplicas.flatMap((i) => orderIds.map((id) => ({ url: `${i.url}/orders/${id}` }))))
    assert.ok(
      fetched.every((f) => f.status === 200),
      `every order replica serves every order: ${JSON.stringify(fetched.map((f) => f.status))}`,
    )

    const services = (await http('GET', `${registryUrl}/services`)).body as { services: Array<{ service_name: string; instances: unknown[] }> }
    const counts = Object.fromEntries(services.services.map((s) => [s.service_name, s.instances.length]))
    assert.deepEqual({ product: counts.product, order: counts.order, gateway: counts.gateway }, INSTANCES)
  }),
)

/**
 * Orders sent one after another through the gateway while `fault` runs and for 10 more answers
 * after the moment it returns (when the instance has left discovery). Bounded in count and time.
 */
async function ordersDuring(fault: () => Promise<number>, target = { gateway: gatewayUrl, productId }): Promise<{ answers: TimedAnswer[]; mark: number }> {
  const answers: TimedAnswer[] = []
  let sending = true
  const started = Date.now()
  const loop = (async () => {
    while (sending && answers.length < 2000 && Date.now() - started < 90_000) {
      answers.push(await http('POST', `${target.gateway}/orders`, { product_id: target.productId, quantity: 1 }))
      await new Promise((resolve) => setTimeout(resolve, 100)) // pacing, not waiting for anything
    }
  })()
  let mark = 0
  try {
    await waitFor(() => answers.length >= 3, { timeoutMs: 30_000, what: 'orders flowing before the fault' })
    mark = await fault()
    await waitFor(() => answers.filter((a) => a.at > mark).length >= 10, { timeoutMs: 60_000, what: 'orders after the instance left discovery' })
  } finally {
    sending = false
    await loop
  }
  return { answers, mark }
}

/** Resolves with the time at which `url` is no longer in discovery. */
function leftDiscovery(url: string): Promise<number> {
  return waitFor(async () => !(await discover('product')).some((i) => i.url === url) && Date.now(), {
    timeoutMs: TTL_MS + 10_000,
    intervalMs: 50,
    what: `${url} to leave discovery`,
  })
}

test(
  'a crashed product instance (SIGKILL): orders keep succeeding, and it leaves discovery within the TTL',
  step(async () => {
    const victim = (await running('product'))[0]!
    const url = (await discover('product')).find((i) => hostOf(i.url) === victim.ip)?.url
    assert.ok(url, `${victim.name} is in discovery`)
    let killedAt = 0
    const { answers, mark: goneAt } = await ordersDuring(async () => {
      killedAt = Date.now()
      await stack!.podman(['kill', '--signal', 'SIGKILL', victim.id])
      return leftDiscovery(url)
    })
    const during = answers.filter((a) => a.at >= killedAt && a.at <= goneAt)
    log(
      `SIGKILL: ${url} left discovery ${goneAt - killedAt} ms after the kill (TTL ${TTL_MS} ms); ${answers.length} orders, ${during.length} while it was still listed, slowest ${Math.max(...answers.map((a) => a.ms))} ms`,
    )
    assert.ok(goneAt - killedAt <= TTL_MS + 1000, `left discovery after ${goneAt - killedAt} ms; TTL is ${TTL_MS} ms`)
    assert.ok(during.length > 0, 'orders were sent while the dead instance was still listed')
    assert.equal(answers.filter((a) => a.status !== 201).length, 0, `every order succeeded; failures: ${describeFailures(answers)}`)
    await waitFor(async () => (await registryLog()).some((e) => e.event === 'evicted' && e.url === url), {
      timeoutMs: 15_000,
      intervalMs: 500,
      what: `the registry's "evicted" log line for ${url}`,
    })
  }),
)

test(
  'SIGTERM: a product instance deregisters at once, drains and exits 0; orders keep succeeding',
  step(async () => {
    const victim = (await running('product'))[0]!
    const url = (await discover('product')).find((i) => hostOf(i.url) === victim.ip)?.url
    assert.ok(url, `${victim.name} is in discovery`)
    let signalledAt = 0
    let killMs = 0
    const { answers, mark: goneAt } = await ordersDuring(async () => {
      signalledAt = Date.now()
      killMs = (await stack!.podman(['kill', '--signal', 'SIGTERM', victim.id])).ms
      return leftDiscovery(url)
    })
    log(
      `SIGTERM: ${url} left discovery ${goneAt - signalledAt} ms after \`podman kill\` started (it took ${killMs} ms; TTL ${TTL_MS} ms); ${answers.length} orders, slowest ${Math.max(...answers.map((a) => a.ms))} ms`,
    )
    assert.ok(goneAt - signalledAt < TTL_MS / 2, `left discovery after ${goneAt - signalledAt} ms, not at once (TTL ${TTL_MS} ms)`)
    assert.ok(
      (await registryLog()).some((e) => e.event === 'deregistered' && e.url === url),
      'the registry logged its deregistration',
    )
    // podman's restart policy (unless-stopped) starts a container again once its process has exited
    // after a `kill`, so its state shows the new run: the engine's "died" event has the exit code.
    const exitCode = await waitFor(
      async () => {
        const events = await run('podman', [
          'events',
          '--stream=false',
          '--since',
          new Date(signalledAt - 1000).toISOString(),
          '--filter',
          `container=${victim.id}`,
          '--filter',
          'event=died',
          '--format',
          '{{.ContainerExitCode}}',
        ])
        return events.stdout.trim().split('\n').filter(Boolean)[0]
      },
      { timeoutMs: 15_000, intervalMs: 250, what: `${victim.name} to exit` },
    )
    assert.equal(exitCode, '0', `${victim.name} exit code after SIGTERM (137 would mean it ignored SIGTERM and was killed)`)
    assert.equal(answers.filter((a) => a.status !== 201).length, 0, `every order succeeded; failures: ${describeFailures(answers)}`)
  }),
)

test(
  'docker-compose stop: every container shuts down gracefully (exit 0) well within the grace period',
  step(async () => {
    // podman starts a container that was sent SIGTERM again (restart: unless-stopped): let every
    // running service finish starting first, so that each one is stopped in its steady state.
    await waitFor(
      async () => {
        for (const service of Object.keys(INSTANCES)) {
          const listed = new Set((await discover(service)).map((i) => hostOf(i.url)))
          if (!(await running(service)).every((c) => listed.has(c.ip))) return false
        }
        return true
      },
      { timeoutMs: 60_000, intervalMs: 250, what: 'every running service registered' },
    )
    const before = (await stack!.containers()).filter((c) => c.running)
    assert.ok(before.length >= 5, `running: ${before.map((c) => c.name).join(', ')}`)
    const stop = await stack!.compose(['stop', '--timeout', '10'], { timeoutMs: 120_000 })
    log(`docker-compose stop: ${before.length} containers in ${stop.ms} ms`)
    const after = await stack!.containers()
    for (const container of before) {
      const now = after.find((c) => c.id === container.id)
      assert.ok(now && !now.running, `${container.name} stopped`)
      assert.equal(now.exitCode, 0, `${container.name} exit code (137 would mean it ignored SIGTERM and was killed)`)
    }
    assert.ok(stop.ms < 10_000, `stop took ${stop.ms} ms`)
  }),
)

test(
  'SIGTERM while a service is still starting (its database is down): the container exits at once',
  step(async () => {
    // Everything is stopped now, PostgreSQL included: a new product container waits for it.
    const started = await stack!.compose(['run', '-d', '--no-deps', 'product'], { timeoutMs: 120_000 })
    const name = started.stdout.trim().split('\n').pop()!.trim()
    assert.ok(name, `docker-compose run printed the container's name: ${started.stdout}`)
    await waitFor(async () => (await run('podman', ['logs', name])).stdout.includes('database_unavailable'), {
      timeoutMs: 30_000,
      intervalMs: 100,
      what: `${name} to be waiting for its database`,
    })
    const signalledAt = Date.now()
    await stack!.podman(['kill', '--signal', 'SIGTERM', name])
    const exited = await waitFor(
      async () => {
        const state = (await run('podman', ['inspect', '--format', '{{.State.Running}} {{.State.ExitCode}}', name])).stdout.trim().split(' ')
        return state[0] === 'false' && state[1]
      },
      { timeoutMs: 5000, intervalMs: 50, what: `${name} to exit after SIGTERM (as PID 1, a signal without a handler is ignored)` },
    )
    log(`SIGTERM during start-up: ${name} exited ${exited} after ${Date.now() - signalledAt} ms`)
    assert.equal(exited, '143', 'exit code 128 + SIGTERM')
  }),
)

// ---------------------------------------------------------------------------------------------
// The etcd variant: docker-compose.yml with deploy/docker-compose.etcd.yml, as a project of its own
// brought up after the tests above (their containers are stopped by then): three etcd members, the
// registry as two replicas over them, and the services failing over between the replicas.

const ETCD_COMPOSE_FILES = ['docker-compose.yml', 'deploy/docker-compose.etcd.yml', 'test/compose/docker-compose.test.yml', 'test/compose/docker-compose.etcd.test.yml']
/** As set in test/compose/docker-compose.etcd.test.yml (heartbeats every second, as above). */
const ETCD_TTL_MS = 10_000
const ETCD_MEMBERS = ['etcd1', 'etcd2', 'etcd3'] as const
const REPLICAS = ['registry', 'registry2'] as const
type Replica = (typeof REPLICAS)[number]
const ETCD_SCALE = { product: 2, order: 1 } as const
const ETCD_INSTANCES = { ...ETCD_SCALE, gateway: 1 } as const
const etcdProject = `${project}-etcd`
let etcdStack: Stack | undefined
/** Requests from inside the etcd project's network, sent from its gateway container (never stopped). */
let etcdClient: InNetworkClient | undefined
/** `registry`, published on 127.0.0.1 (registry2 publishes nothing), and the gateway. */
let etcdRegistryUrl = ''
let etcdGatewayUrl = ''
let etcdProductId = ''

interface Discovered {
  status: number
  /** `id@registered_at` of each instance, sorted: a re-registration shows as a change. */
  registrations: string[]
  hosts: string[]
  epoch: string
  index: number
}

function discovered(answer: HttpAnswer): Discovered {
  const instances = answer.status === 200 ? (answer.body as { instances: Array<Instance & { registered_at: string }> }).instances : []
  return {
    status: answer.status,
    registrations: instances.map((i) => `${i.id}@${i.registered_at}`).sort(),
    hosts: instances.map((i) => hostOf(i.url)).sort(),
    epoch: answer.headers?.['x-registry-epoch'] ?? '',
    index: Number(answer.headers?.['x-registry-index'] ?? 0),
  }
}

/** Every service's discovery answer on each of `replicas`, asked from inside the network. */
async function views(replicas: readonly Replica[] = REPLICAS): Promise<Record<string, Record<string, Discovered>>> {
  const services = Object.keys(ETCD_INSTANCES)
  const calls = replicas.flatMap((replica) => services.map((service) => ({ url: `http://${replica}:8080/discover/${service}`, timeoutMs: 5000 })))
  const answers = await etcdClient!.send(calls)
  const result: Record<string, Record<string, Discovered>> = {}
  for (const [i, replica] of replicas.entries()) {
    result[replica] = Object.fromEntries(services.map((service, j) => [service, discovered(answers[i * services.length + j]!)]))
  }
  return result
}

/** Whether both replicas answer every service alike: the same instances at the same epoch (and index). */
function sameView(view: Record<string, Record<string, Discovered>>, withIndex = false): boolean {
  return Object.keys(ETCD_INSTANCES).every((service) => {
    const [a, b] = [view.registry![service]!, view.registry2![service]!]
    return a.status === 200 && b.status === 200 && JSON.stringify(a.registrations) === JSON.stringify(b.registrations) && a.epoch === b.epoch && (!withIndex || a.index === b.index)
  })
}

/** Only what says whether the instances are the same ones: their registrations. */
function registrationsOf(view: Record<string, Discovered>): Record<string, string[]> {
  return Object.fromEntries(Object.entries(view).map(([service, d]) => [service, d.registrations]))
}

async function readiness(replicas: readonly Replica[] = REPLICAS): Promise<HttpAnswer[]> {
  return etcdClient!.send(replicas.map((replica) => ({ url: `http://${replica}:8080/health/ready`, timeoutMs: 5000 })))
}

interface MemberStatus {
  name: string
  id: string
  clusterId: string
  /** The id of the member it takes for the leader ('0': none). */
  leader: string
}

/** Each member's own view (etcd's JSON gateway), asked from inside the network. */
async function etcdStatus(members: readonly string[] = ETCD_MEMBERS): Promise<Array<MemberStatus | undefined>> {
  const answers = await etcdClient!.send(members.map((member) => ({ method: 'POST' as const, url: `http://${member}:2379/v3/maintenance/status`, body: {}, timeoutMs: 3000 })))
  return answers.map((answer, i) => {
    if (answer.status !== 200) return undefined
    const body = answer.body as { header: { cluster_id: string; member_id: string }; leader: string }
    return { name: members[i]!, id: body.header.member_id, clusterId: body.header.cluster_id, leader: body.leader }
  })
}

/** The name of the member every one of `members` takes for the leader, once they agree. */
async function agreedLeader(members: readonly string[] = ETCD_MEMBERS): Promise<string | undefined> {
  const statuses = await etcdStatus(members)
  if (statuses.some((s) => s === undefined)) return undefined
  const leaders = new Set(statuses.map((s) => s!.leader))
  const leader = statuses.find((s) => s!.id === [...leaders][0])
  return leaders.size === 1 && leader ? leader.name : undefined
}

const adminHeaders = () => ({ authorization: `Bearer ${secretOf('registry_admin_token')}` })

/**
 * A write sent from inside the network, again while the registry answers 503 (its store could not
 * reach etcd in time) and for at most 15 s, after the Retry-After it names; `attempts` records
 * how many tries it took.
 */
async function retried(what: string, attempts: string[], call: HttpCall): Promise<HttpAnswer> {
  const deadline = Date.now() + 15_000
  for (let attempt = 1; ; attempt++) {
    const [answer] = await etcdClient!.send([{ timeoutMs: 10_000, ...call }])
    if (answer!.status !== 503 || Date.now() > deadline) {
      attempts.push(`${what}: ${answer!.status} after ${attempt} ${attempt === 1 ? 'try' : 'tries'}`)
      return answer!
    }
    await new Promise((resolve) => setTimeout(resolve, 1000 * Number(answer!.headers?.['retry-after'] ?? 1)))
  }
}

describe('the etcd variant (deploy/docker-compose.etcd.yml): 3 etcd members, 2 registry replicas', () => {
  before(async () => {
    try {
      if (!socket || !etcdImage || !workDir) throw new Error('the Compose test setup did not finish')
      saveState({ project: etcdProject, runnerPid: process.pid, workDir })
      const registryHostPort = await hostPort(8080)
      const gatewayHostPort = await hostPort(8000, [registryHostPort])
      etcdRegistryUrl = `http://127.0.0.1:${registryHostPort}`
      etcdGatewayUrl = `http://127.0.0.1:${gatewayHostPort}`
      etcdStack = new Stack({
        project: etcdProject,
        files: ETCD_COMPOSE_FILES,
        logFile: join(workDir, 'run.log'),
        env: {
          ...composeVariables(ETCD_COMPOSE_FILES),
          ...composeEnv,
          ETCD_IMAGE: etcdImage,
          // Elections and errors, not every member's start-up: the logs printed on a failure stay readable.
          ETCD_LOG_LEVEL: 'warn',
          REGISTRY_HOST_PORT: String(registryHostPort),
          GATEWAY_HOST_PORT: String(gatewayHostPort),
        },
      })
      log(`etcd variant: docker-compose -f ${ETCD_COMPOSE_FILES.join(' -f ')} up -d --scale product=${ETCD_SCALE.product}`)
      // The images are the ones the first project built (registry2's is the same image).
      await phase('etcd variant: docker-compose up', () =>
        etcdStack!.compose(['up', '-d', '--no-build', '--scale', `product=${ETCD_SCALE.product}`, '--scale', `order=${ETCD_SCALE.order}`], { timeoutMs: 300_000 }),
      )
      etcdClient = new InNetworkClient((await etcdStack.container('gateway')).id)
      await phase('etcd variant: every instance registered, both replicas ready', () =>
        waitFor(
          async () => {
            if (!(await readiness()).every((r) => r.status === 200)) return false
            const seen = await views()
            for (const replica of REPLICAS) {
              for (const [service, count] of Object.entries(ETCD_INSTANCES)) if (seen[replica]![service]!.registrations.length !== count) return false
            }
            return (await http('GET', `${etcdGatewayUrl}/health/ready`, undefined, 5000)).status === 200
          },
          { timeoutMs: 180_000, intervalMs: 500, what: `${JSON.stringify(ETCD_INSTANCES)} instances on both registry replicas, both ready, and a ready gateway` },
        ),
      )
    } catch (error) {
      failed = true
      throw error
    }
  })

  test(
    'three etcd members form one cluster and publish nothing; both registry replicas are ready on it (store etcd, not stale)',
    step(async () => {
      // The replicas are ready once two members have quorum; the third may still be joining (on a
      // busy machine, Podman's DNS can keep the members from resolving each other for a while).
      let listed: Array<{ name: string; clientURLs?: string[] }> = []
      await waitFor(
        async () => {
          const members = await etcdClient!.send([{ method: 'POST', url: 'http://etcd1:2379/v3/cluster/member/list', body: {} }])
          listed = (members[0]!.body as { members?: typeof listed }).members ?? []
          return listed.length === ETCD_MEMBERS.length && listed.every((m) => (m.clientURLs ?? []).length > 0)
        },
        { timeoutMs: 60_000, intervalMs: 500, what: 'all three etcd members started and listing their client URLs' },
      ).catch(() => undefined)
      assert.deepEqual(
        listed.map((m) => [m.name, m.clientURLs]).sort(),
        ETCD_MEMBERS.map((name) => [name, [`http://${name}:2379`]]),
        'the static cluster',
      )
      const health = await etcdClient!.send(ETCD_MEMBERS.map((name) => ({ url: `http://${name}:2379/health` })))
      assert.deepEqual(
        health.map((h) => (h.body as { health?: string }).health),
        ETCD_MEMBERS.map(() => 'true'),
        'every member healthy',
      )
      const statuses = await etcdStatus()
      assert.equal(new Set(statuses.map((s) => s?.clusterId)).size, 1, `one cluster: ${JSON.stringify(statuses)}`)
      assert.ok(await agreedLeader(), `the members agree on a leader: ${JSON.stringify(statuses)}`)

      // A replica reads stale for a second after a lease renewal that a member still joining did
      // not answer in time (its next quorum probe clears it): wait, with a deadline, for both.
      const current = (answer: { body: unknown }) =>
        JSON.stringify((answer.body as { details?: { store?: unknown } }).details?.store) === JSON.stringify({ kind: 'etcd', stale: false })
      await waitFor(async () => (await readiness()).every((answer) => answer.status === 200 && current(answer)), {
        timeoutMs: 15_000,
        intervalMs: 250,
        what: 'both replicas ready and not stale',
      }).catch(() => undefined)
      for (const [i, answer] of (await readiness()).entries()) {
        assert.equal(answer.status, 200, `${REPLICAS[i]} ready: ${JSON.stringify(answer)}`)
        assert.deepEqual((answer.body as { details?: { store?: unknown } }).details?.store, { kind: 'etcd', stale: false }, `${REPLICAS[i]}'s store`)
      }

      const containers = (await etcdStack!.containers()).filter((c) => c.running)
      for (const container of containers) {
        const published = Object.values(container.published)
          .flat()
          .map((b) => `${b.hostIp || '0.0.0.0'}:${b.hostPort}`)
        const expected =
          container.service === 'registry' ? [`127.0.0.1:${new URL(etcdRegistryUrl).port}`] : container.service === 'gateway' ? [`0.0.0.0:${new URL(etcdGatewayUrl).port}`] : []
        assert.deepEqual(published, expected, `${container.name} publishes`)
        const { limits } = container
        assert.ok(limits.memoryBytes > 0 && limits.cpus > 0 && limits.pids > 0, `${container.name} has memory, CPU and PID limits: ${JSON.stringify(limits)}`)
        assert.equal(limits.memorySwapBytes, limits.memoryBytes, `${container.name}: no swap beyond its memory limit`)
      }
      assert.deepEqual(
        containers
          .filter((c) => c.service.startsWith('etcd') || c.service.startsWith('registry'))
          .map((c) => c.service)
          .sort(),
        [...ETCD_MEMBERS, ...REPLICAS],
      )
    }),
  )

  test(
    'both replicas answer the same instances, at the same x-registry-epoch (the one stored in etcd)',
    step(async () => {
      // Each replica follows etcd with its own watch: a change may reach one a moment before the
      // other. They must agree once it has reached both (bounded; past it, the assertions say what differs).
      let seen = await views()
      await waitFor(
        async () => {
          seen = await views()
          return sameView(seen)
        },
        { timeoutMs: 5000, intervalMs: 100 },
      ).catch(() => {})
      for (const service of Object.keys(ETCD_INSTANCES)) {
        const [first, second] = REPLICAS.map((replica) => seen[replica]![service]!)
        assert.deepEqual([first!.status, second!.status], [200, 200], `GET /discover/${service} on both`)
        assert.deepEqual(second!.registrations, first!.registrations, `${service}: the same instances on both replicas`)
        assert.match(first!.epoch, /^etcd-[0-9a-f]{16}$/, `${service}: the epoch the replicas keep in etcd`)
        assert.equal(second!.epoch, first!.epoch, `${service}: the same epoch on both replicas`)
        assert.ok(first!.index > 0 && second!.index > 0, `${service}: an index on both (${first!.index}, ${second!.index})`)
      }
      assert.deepEqual(
        seen.registry!.product!.hosts,
        (await etcdStack!.containers('product'))
          .filter((c) => c.running)
          .map((c) => c.ip)
          .sort(),
        'each product replica at its own address',
      )
    }),
  )

  test(
    'through the published gateway: a product is created and ordered',
    step(async () => {
      const created = await http('POST', `${etcdGatewayUrl}/products`, { name: 'etcd pencil', price: '2.50' })
      assert.equal(created.status, 201, JSON.stringify(created))
      etcdProductId = (created.body as { id: string }).id
      const order = await http('POST', `${etcdGatewayUrl}/orders`, { product_id: etcdProductId, quantity: 2 })
      assert.equal(order.status, 201, JSON.stringify(order))
      assert.equal((order.body as { total_price: unknown }).total_price, 5)
    }),
  )

  test(
    'the etcd leader killed: both replicas stay ready and take writes, heartbeats keep every instance, orders succeed; started again, it rejoins',
    step(async () => {
      // Podman's DNS can stall for tens of seconds on a busy machine: the members only agree once
      // they can resolve each other again.
      const leader = await waitFor(() => agreedLeader(), { timeoutMs: 60_000, intervalMs: 200, what: 'a leader the members agree on' })
      const victim = await etcdStack!.container(leader)
      const others = ETCD_MEMBERS.filter((m) => m !== leader)
      const before = await views()
      let killedAt = 0
      let electedMs = 0
      const writes: string[] = []
      try {
        const { answers } = await ordersDuring(
          async () => {
            killedAt = Date.now()
            // SIGKILL at once; unlike `podman kill`, `stop` keeps the restart policy from starting it again.
            await etcdStack!.podman(['stop', '--time', '0', victim.id])
            const next = await waitFor(async () => ((await agreedLeader(others)) ?? leader) !== leader && Date.now(), {
              timeoutMs: 15_000,
              intervalMs: 100,
              what: `the other members to elect a leader after ${leader}`,
            })
            electedMs = next - killedAt
            // A write through each replica (the admin token), seen by the other, then undone. A 503
            // (etcd did not answer in time) is retried after its Retry-After, as the services do.
            for (const [i, replica] of REPLICAS.entries()) {
              const other = REPLICAS[1 - i]!
              const registered = await retried(`register through ${replica}`, writes, {
                method: 'POST',
                url: `http://${replica}:8080/register`,
                headers: adminHeaders(),
                body: { service_name: 'etcd-probe', url: `http://probe-${replica}.invalid:9` },
              })
              assert.equal(registered.status, 201, `register through ${replica} with ${leader} down: ${JSON.stringify(registered)}`)
              const id = (registered.body as { id: string }).id
              await waitFor(async () => discovered(await etcdClient!.one({ url: `http://${other}:8080/discover/etcd-probe` })).registrations.some((r) => r.startsWith(`${id}@`)), {
                timeoutMs: 5000,
                intervalMs: 100,
                what: `${other} to list the instance registered through ${replica}`,
              })
              const gone = await retried(`deregister through ${other}`, writes, {
                method: 'POST',
                url: `http://${other}:8080/deregister`,
                headers: adminHeaders(),
                body: { instance_id: id },
              })
              assert.equal(gone.status, 200, `deregister through ${other}: ${JSON.stringify(gone)}`)
            }
            // Heartbeats renew the leases: for longer than the TTL, every instance stays, as the same registration.
            const until = Date.now() + ETCD_TTL_MS + 1000
            while (Date.now() < until) {
              const ready = await readiness()
              assert.deepEqual(
                ready.map((r) => r.status),
                [200, 200],
                `both replicas ready with ${leader} down: ${JSON.stringify(ready.map((r) => r.body))}`,
              )
              const now = await views()
              for (const replica of REPLICAS)
                assert.deepEqual(registrationsOf(now[replica]!), registrationsOf(before.registry!), `${replica}: no instance expired or registered again`)
            }
            return Date.now()
          },
          { gateway: etcdGatewayUrl, productId: etcdProductId },
        )
        log(
          `etcd: ${leader} (the leader) killed; a new leader after ${electedMs} ms; writes: ${writes.join(', ')}; ${answers.length} orders, slowest ${Math.max(...answers.map((a) => a.ms))} ms`,
        )
        assert.equal(answers.filter((a) => a.status !== 201).length, 0, `every order succeeded; failures: ${describeFailures(answers)}`)
      } finally {
        // With its data in its volume, the member rejoins its cluster (also when a check above failed,
        // so that the next test starts from a whole cluster).
        await etcdStack!.podman(['start', victim.id])
      }
      await waitFor(
        async () => {
          if (!(await agreedLeader())) return false
          const ready = await readiness()
          return ready.every((r) => r.status === 200 && (r.body as { details: { store: { stale: boolean } } }).details.store.stale === false)
        },
        { timeoutMs: 30_000, intervalMs: 250, what: `${leader} back in the cluster, and both replicas not stale` },
      )
    }),
  )

  test(
    'a registry replica killed: the services go on through the other (orders succeed, every instance stays); started again, it is ready with the full view at once',
    step(async () => {
      const victim = await etcdStack!.container('registry')
      const before = await views(['registry2'])
      let restarted = false
      try {
        const { answers } = await ordersDuring(
          async () => {
            await etcdStack!.podman(['stop', '--time', '0', victim.id])
            // Heartbeats go to registry2 now: for longer than the TTL, every instance stays.
            const until = Date.now() + ETCD_TTL_MS + 1000
            while (Date.now() < until) {
              assert.deepEqual(registrationsOf((await views(['registry2'])).registry2!), registrationsOf(before.registry2!), 'registry2: no instance expired or registered again')
            }
            return Date.now()
          },
          { gateway: etcdGatewayUrl, productId: etcdProductId },
        )
        log(`registry killed: ${answers.length} orders through the gateway, slowest ${Math.max(...answers.map((a) => a.ms))} ms`)
        assert.equal(answers.filter((a) => a.status !== 201).length, 0, `every order succeeded; failures: ${describeFailures(answers)}`)

        // Started again, it loads the state from etcd before it answers discovery: every answer is a
        // refusal (not loaded yet) or the whole view, never a partial or empty one.
        const full = (await views(['registry2'])).registry2!
        const startedAt = Date.now()
        await etcdStack!.podman(['start', victim.id])
        restarted = true
        const seen: Discovered[] = []
        await waitFor(
          async () => {
            const ready = await http('GET', `${etcdRegistryUrl}/health/ready`, undefined, 2000)
            const product = await http('GET', `${etcdRegistryUrl}/discover/product`, undefined, 2000)
            if (product.status !== 0) seen.push(discovered(product))
            return ready.status === 200 && product.status === 200
          },
          { timeoutMs: 30_000, intervalMs: 50, what: 'the restarted registry to be ready' },
        )
        log(`registry started again: ready after ${Date.now() - startedAt} ms; its discovery answers until then: ${seen.map((d) => d.status).join(' ')}`)
        for (const answer of seen) {
          assert.ok([200, 503].includes(answer.status), `a discovery answer while starting: ${JSON.stringify(answer)}`)
          if (answer.status === 200) assert.deepEqual([answer.registrations, answer.epoch], [full.product!.registrations, full.product!.epoch], 'the whole view, or none')
        }
        const after = await views()
        for (const service of Object.keys(ETCD_INSTANCES)) {
          assert.deepEqual(after.registry![service]!.registrations, full[service]!.registrations, `${service}: the full view on the restarted replica`)
          assert.equal(after.registry![service]!.epoch, after.registry2![service]!.epoch, `${service}: the same epoch on both replicas`)
        }
      } finally {
        if (!restarted) await etcdStack!.podman(['start', victim.id])
      }
    }),
  )

  // A replica that loaded its state (the restarted one) takes each service's index from its keys'
  // latest revision; one that followed the changes has the revision of the latest change. For
  // these services every change was a write (nothing here deregistered or expired), so the two
  // agree. (A deletion's revision cannot be read back: after one, a replica that loaded later may
  // answer another index until the service's next change, so a client moving between them gets
  // one extra answer, never older data; the README says so.)
  test('every service has the same x-registry-index on both replicas, the restarted one included', {}, async () => {
    let seen = await views()
    await waitFor(
      async () => {
        seen = await views()
        return sameView(seen, true)
      },
      { timeoutMs: 5000, intervalMs: 100 },
    ).catch(() => {})
    for (const service of Object.keys(ETCD_INSTANCES)) {
      assert.equal(
        seen.registry![service]!.index,
        seen.registry2![service]!.index,
        `${service}: registry ${seen.registry![service]!.index}, registry2 ${seen.registry2![service]!.index}`,
      )
    }
  })

  test(
    'docker-compose stop: the services, then the registry replicas, then etcd; every container exits 0 within the grace period',
    step(async () => {
      const before = (await etcdStack!.containers()).filter((c) => c.running)
      const stop = await etcdStack!.compose(['stop', '--timeout', '15'], { timeoutMs: 120_000 })
      log(`etcd variant, docker-compose stop: ${before.length} containers in ${stop.ms} ms`)
      const after = await etcdStack!.containers()
      for (const container of before) {
        const now = after.find((c) => c.id === container.id)
        assert.ok(now && !now.running, `${container.name} stopped`)
        assert.equal(now.exitCode, 0, `${container.name} exit code (1: its shutdown timed out; 137: killed after the grace period)`)
      }
    }),
  )
})

let tornDown: Promise<void> | undefined
function tearDown(): Promise<void> {
  tornDown ??= (async () => {
    const started = performance.now()
    if (stack && failed) {
      log("a step failed; the services' last log lines:")
      process.stderr.write(await stack.logs(VERBOSE ? 400 : 60))
    }
    if (etcdStack && failed) {
      log("the etcd variant's last log lines:")
      process.stderr.write(await etcdStack.logs(VERBOSE ? 400 : 60))
    }
    if (stack) await stack.tearDown(log)
    if (etcdStack) await etcdStack.tearDown(log)
    clearState(etcdProject)
    // The refused `up` without secrets makes nothing; this only matters if that check failed.
    await removeProjectResources(`${project}-nosecrets`)
    await socket?.stop()
    const leftovers = [...(stack ? await stack.leftovers() : []), ...(etcdStack ? await etcdStack.leftovers() : [])]
    if (leftovers.length > 0) {
      log(`left behind: ${leftovers.join(', ')}`)
      process.exitCode = 1
    }
    // Untagged images of earlier app builds, and build-stage images (they carry the test base
    // image's label) older than a day; today's stay as the build cache of the next run.
    await run('podman', ['image', 'prune', '--force', '--filter', 'label=org.opencontainers.image.title=microservices-advanced'], { allowFailure: true })
    await run('podman', ['image', 'prune', '--force', '--filter', 'label=io.microservices-advanced.compose-test=base', '--filter', 'until=24h'], { allowFailure: true })
    clearState(project)
    if (workDir && !failed) rmSync(workDir, { recursive: true, force: true })
    else if (workDir) log(`logs kept in ${workDir}`)
    timings.push(['teardown (down --volumes, socket)', performance.now() - started])
    const total = (performance.now() - runStarted) / 1000
    log('timings:')
    for (const [name, ms] of timings) log(`  ${(ms / 1000).toFixed(1).padStart(6)} s  ${name}`)
    log(`  ${total.toFixed(1).padStart(6)} s  total`)
  })()
  return tornDown
}

after(tearDown)

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: tearing down`)
    failed = true
    void tearDown().finally(() => process.exit(130))
  })
}
