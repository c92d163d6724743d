import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { V8_FLAGS } from '../src/runtime/node-flags.ts'
import { freePort, spawnPinned, type Pinned } from './processes.ts'
import { BARE_CONFIG_ENV, capture, type BareConfig } from './responses.ts'

// The two servers under test, and the checks that they answer correctly before anything is timed.

export interface Server {
  process: Pinned
  baseUrl: string
}

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const BARE = fileURLToPath(new URL('./bare-server.ts', import.meta.url))
const READY_TIMEOUT_MS = 15_000

export const SERVICE = 'product'
/** Three instances to discover; nothing ever connects to these addresses (no health_url is given). */
export const INSTANCE_URLS = ['http://127.0.0.1:59101', 'http://127.0.0.1:59102', 'http://127.0.0.1:59103'] as const
export const HEARTBEAT_BODY = JSON.stringify({ service_name: SERVICE, url: INSTANCE_URLS[0] })
/** Tokens on, as in production: writes carry the admin token, reads the read token. */
export const BENCH_TOKEN = 'bench-admin-token-0123456789abcdef'
export const BENCH_READ_TOKEN = 'bench-read-token-0123456789abcdefg'
export const JSON_HEADERS = { 'content-type': 'application/json', authorization: `Bearer ${BENCH_TOKEN}` }
export const READ_HEADERS = { authorization: `Bearer ${BENCH_READ_TOKEN}` }

/**
 * How the registry runs. LOG_LEVEL=warn: at info it writes a line per request, which would
 * dominate what is measured. A TTL of an hour so the registered instances cannot expire mid-run,
 * and no warm-up so discovery answers as in steady state.
 */
export const REGISTRY_ENV = {
  HOST: '127.0.0.1',
  LOG_LEVEL: 'warn',
  LOG_FORMAT: 'json',
  REGISTRY_TTL_SECONDS: '3600',
  REGISTRY_WARMUP_SECONDS: '0',
  REGISTRY_TOKEN: BENCH_TOKEN,
  REGISTRY_READ_TOKEN: BENCH_READ_TOKEN,
  REGISTRY_DNS_PORT: '0',
} as const

/** The caller's environment without OpenTelemetry settings: tracing would be a different benchmark. */
function baseEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('OTEL_')))
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Starts `node src/cli.ts registry` on `core` and waits, with a deadline, until it is ready.
 * `env` adds to REGISTRY_ENV (the etcd store: REGISTRY_STORE, ETCD_ENDPOINTS, ETCD_PREFIX).
 * `nodeFlags`: V8_FLAGS by default, as `npm start` and the image run it; [] for V8's defaults.
 */
export async function startRegistry(core: number, env: Record<string, string> = {}, name = 'registry', nodeFlags: readonly string[] = V8_FLAGS): Promise<Server> {
  const port = await freePort()
  const registry = spawnPinned(name, core, [...nodeFlags, CLI, 'registry'], { ...baseEnv(), ...REGISTRY_ENV, ...env, PORT: String(port) })
  const baseUrl = `http://127.0.0.1:${port}`
  const deadline = Date.now() + READY_TIMEOUT_MS
  let exited = false
  void registry.exited.then(() => (exited = true))
  for (;;) {
    if (exited) throw new Error(`the registry exited before it was ready; output:\n${registry.output()}`)
    const status = await fetch(`${baseUrl}/health/ready`, { signal: AbortSignal.timeout(1000) }).then(
      (response) => response.status,
      () => 0,
    )
    if (status === 200) return { process: registry, baseUrl }
    if (Date.now() > deadline) throw new Error(`the registry was not ready within ${READY_TIMEOUT_MS} ms (last status ${status}); output:\n${registry.output()}`)
    await sleep(50)
  }
}

export interface Etcd {
  process: Pinned
  endpoint: string
  /** Removes its data directory (after the process has stopped). */
  remove: () => void
}

/**
 * One etcd member (Debian's etcd-server) on `core`, data in a fresh temporary directory: the
 * store the etcd registries share. Its fsyncs go to the machine's disk, as in production.
 */
export async function startEtcd(core: number): Promise<Etcd> {
  const [client, peer] = [await freePort(), await freePort()]
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-etcd-'))
  const endpoint = `http://127.0.0.1:${client}`
  const peerUrl = `http://127.0.0.1:${peer}`
  const args = [
    ...['--name', 'bench', '--data-dir', dataDir, '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint],
    ...['--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl, '--initial-cluster', `bench=${peerUrl}`, '--logger', 'zap', '--log-level', 'error'],
  ]
  const etcd = spawnPinned('etcd', core, args, { PATH: process.env.PATH ?? '/usr/bin:/bin' }, 'etcd')
  const deadline = Date.now() + READY_TIMEOUT_MS
  let exited = false
  void etcd.exited.then(() => (exited = true))
  for (;;) {
    if (exited) throw new Error(`etcd exited before it was ready (is etcd-server installed?); output:\n${etcd.output()}`)
    const healthy = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) }).then(
      async (response) => response.ok && ((await response.json()) as { health?: string }).health === 'true',
      () => false,
    )
    if (healthy) return { process: etcd, endpoint, remove: () => rmSync(dataDir, { recursive: true, force: true }) }
    if (Date.now() > deadline) throw new Error(`etcd was not healthy within ${READY_TIMEOUT_MS} ms; output:\n${etcd.output()}`)
    await sleep(50)
  }
}

/** The registry's environment for the etcd store, under its own prefix. */
export const etcdEnv = (etcd: Etcd, prefix: string): Record<string, string> => ({ REGISTRY_STORE: 'etcd', ETCD_ENDPOINTS: etcd.endpoint, ETCD_PREFIX: prefix })

/** Starts the bare node:http server on `core`; it listens on a free port and prints it. */
export async function startBare(core: number, config: BareConfig): Promise<Server> {
  const bare = spawnPinned('bare node:http server', core, [BARE], { ...baseEnv(), [BARE_CONFIG_ENV]: JSON.stringify(config) })
  const port = await bare.waitForLine((line) => {
    if (!line.startsWith('{')) return undefined
    const parsed: unknown = JSON.parse(line)
    const { event, port } = (parsed ?? {}) as Record<string, unknown>
    return event === 'listening' && typeof port === 'number' ? port : undefined
  }, READY_TIMEOUT_MS)
  return { process: bare, baseUrl: `http://127.0.0.1:${port}` }
}

function fail(message: string): never {
  throw new Error(`correctness check failed: ${message}`)
}

async function post(url: string, body: unknown): Promise<Response> {
  return fetch(url, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(body), signal: AbortSignal.timeout(5000) })
}

/**
 * Registers the instances, then checks the two benchmarked requests answer as they should: three
 * instances discovered, heartbeat 200. Returns the answers, for the bare server to replay.
 */
export async function prepareRegistry(baseUrl: string): Promise<BareConfig> {
  for (const url of INSTANCE_URLS) {
    const response = await post(`${baseUrl}/register`, { service_name: SERVICE, url })
    if (response.status !== 201) fail(`POST /register of ${url} answered ${response.status}: ${await response.text()}`)
  }
  const discoverPath = `/discover/${SERVICE}`
  const discovered = await capture(await fetch(`${baseUrl}${discoverPath}`, { headers: READ_HEADERS, signal: AbortSignal.timeout(5000) }))
  if (discovered.status !== 200) fail(`GET ${discoverPath} answered ${discovered.status}: ${discovered.body}`)
  const { instances } = JSON.parse(discovered.body) as { instances?: unknown }
  const count = Array.isArray(instances) ? instances.length : 0
  if (count !== INSTANCE_URLS.length) fail(`GET ${discoverPath} returned ${count} instances, expected ${INSTANCE_URLS.length}: ${discovered.body}`)

  const heartbeat = await capture(await post(`${baseUrl}/heartbeat`, JSON.parse(HEARTBEAT_BODY)))
  if (heartbeat.status !== 200) fail(`POST /heartbeat answered ${heartbeat.status}, expected 200: ${heartbeat.body}`)
  // The heartbeat changed the instance's last_heartbeat: capture discovery as it now reads.
  const current = await capture(await fetch(`${baseUrl}${discoverPath}`, { headers: READ_HEADERS, signal: AbortSignal.timeout(5000) }))
  return { discoverPath, discover: current, heartbeat }
}

/** The bare server must send what the registry sent: same status, content-type and body. */
export async function verifyBare(baseUrl: string, config: BareConfig): Promise<void> {
  const answers = [
    ['GET discover', config.discover, await fetch(`${baseUrl}${config.discoverPath}`, { signal: AbortSignal.timeout(5000) })],
    ['POST /heartbeat', config.heartbeat, await post(`${baseUrl}/heartbeat`, JSON.parse(HEARTBEAT_BODY))],
  ] as const
  for (const [what, expected, response] of answers) {
    const actual = await capture(response)
    const type = (headers: [string, string][]) => headers.find(([name]) => name === 'content-type')?.[1]
    if (actual.status !== expected.status || actual.body !== expected.body || type(actual.headers) !== type(expected.headers)) {
      fail(`the bare server's ${what} answer differs from the registry's`)
    }
  }
}
