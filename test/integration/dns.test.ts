// The registry's DNS interface with real clients: dig, and HAProxy balancing over an SRV name
// (`server-template` + `resolvers`), following registrations and deregistrations.
import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { accessSync, constants, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { Registration } from '../../src/discovery/registration.ts'
import { RegistryClient } from '../../src/discovery/registry-client.ts'
import { silentLogger } from '../helpers/logger.ts'
import type { RunningProcess } from '../helpers/process.ts'
import { freePorts, startTracked, stopAll, type TempDir, tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const run = promisify(execFile)

/** A program on PATH or in the sbin directories (Debian installs haproxy in /usr/sbin). */
function program(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin']
  for (const dir of dirs.filter(Boolean)) {
    try {
      accessSync(join(dir, name), constants.X_OK)
      return join(dir, name)
    } catch {
      // not here
    }
  }
  return undefined
}

const DIG = program('dig')
const HAPROXY = program('haproxy')

interface Backend {
  name: string
  url: string
  server: Server
  registration: Registration
  client: RegistryClient
}

/** An HTTP server answering its own name, registered (heartbeats every 500 ms) as `product`. */
async function backend(registryUrl: string, name: string): Promise<Backend> {
  const server = createServer((_request, response) => {
    response.setHeader('connection', 'close')
    response.end(name)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const client = new RegistryClient({ urls: [registryUrl] })
  const registration = new Registration({ client, serviceName: 'product', url, heartbeatIntervalMs: 500, logger: silentLogger() })
  registration.start()
  return { name, url, server, registration, client }
}

async function dig(port: number, ...args: string[]): Promise<string[]> {
  const { stdout } = await run(DIG!, ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args], { timeout: 10_000 })
  return stdout
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .sort()
}

/** `count` requests through the frontend, one at a time: how many each backend answered. */
async function spread(url: string, count: number): Promise<Map<string, number>> {
  const counts = new Map<string, number>()
  for (let i = 0; i < count; i++) {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) }).catch(() => undefined)
    const body = response?.ok ? await response.text() : `status ${response?.status ?? 'error'}`
    counts.set(body, (counts.get(body) ?? 0) + 1)
  }
  return counts
}

describe('registry DNS with dig and HAProxy', { skip: !DIG || !HAPROXY ? 'needs dig (dnsutils) and haproxy' : false }, () => {
  const started: RunningProcess[] = []
  const backends: Backend[] = []
  let dir: TempDir
  let dnsPort: number
  let frontendPort: number
  let registry: RunningProcess
  let haproxy: ChildProcess | undefined
  const haproxyOutput: string[] = []

  before(async () => {
    dir = tempDir('dns')
    ;[dnsPort, frontendPort] = (await freePorts(2)) as [number, number]
    registry = await startTracked(started, 'registry', { env: { REGISTRY_DNS_PORT: String(dnsPort) } })
    for (const name of ['p1', 'p2', 'p3']) backends.push(await backend(registry.url, name))
  })

  after(async () => {
    if (haproxy && haproxy.exitCode === null && haproxy.signalCode === null) {
      const exited = new Promise((resolve) => haproxy!.once('exit', resolve))
      haproxy.kill('SIGKILL')
      await exited
    }
    for (const b of backends) {
      await b.registration.stop().catch(() => {})
      await b.client.close()
      b.server.closeAllConnections()
      await new Promise((resolve) => b.server.close(resolve))
    }
    await stopAll(started)
    dir?.remove()
  })

  it('dig lists the instances: SRV for _product._tcp.service.consul, A for their targets', async () => {
    const expected = backends.map((b) => `1 1 ${new URL(b.url).port} 7f000001.addr.consul.`).sort()
    await waitFor(async () => JSON.stringify(await dig(dnsPort, '_product._tcp.service.consul', 'SRV', '+short')) === JSON.stringify(expected), {
      timeoutMs: 10_000,
      what: 'dig to list the three instances',
    })
    assert.deepEqual(await dig(dnsPort, '+tcp', 'product.service.consul', 'SRV', '+short'), expected)
    assert.deepEqual(await dig(dnsPort, '7f000001.addr.consul', 'A', '+short'), ['127.0.0.1'])
    assert.deepEqual(await dig(dnsPort, 'PRODUCT.service.consul', 'A', '+short'), ['127.0.0.1'])
    const full = (await dig(dnsPort, '_product._tcp.service.consul', 'SRV')).join('\n')
    assert.match(full, /status: NOERROR/)
    assert.match(full, /7f000001\.addr\.consul\.\s+0\s+IN\s+A\s+127\.0\.0\.1/, 'the target A record in the additional section')
    assert.match((await dig(dnsPort, 'ghost.service.consul', 'A')).join('\n'), /status: NXDOMAIN/)
    assert.match((await dig(dnsPort, 'example.com', 'A')).join('\n'), /status: REFUSED/)
  })

  it('HAProxy balances over the SRV name, then stops sending to a deregistered instance', { timeout: 60_000 }, async () => {
    const config = join(dir.path, 'haproxy.cfg')
    writeFileSync(
      config,
      [
        'global',
        'defaults',
        '  mode http',
        '  timeout connect 1s',
        '  timeout client 5s',
        '  timeout server 5s',
        'resolvers reg',
        `  nameserver reg 127.0.0.1:${dnsPort}`,
        '  accepted_payload_size 8192',
        '  resolve_retries 2',
        '  timeout resolve 200ms',
        '  timeout retry 200ms',
        '  hold valid 1s',
        '  hold obsolete 0s',
        '  hold nx 1s',
        'frontend fe',
        `  bind 127.0.0.1:${frontendPort}`,
        '  default_backend be',
        'backend be',
        '  balance roundrobin',
        '  server-template p 5 _product._tcp.service.consul resolvers reg resolve-prefer ipv4 init-addr none check inter 500ms',
        '',
      ].join('\n'),
    )
    const check = await run(HAPROXY!, ['-c', '-f', config], { timeout: 10_000 }).catch((error: { stdout?: string; stderr?: string }) => error)
    assert.ok(!('code' in check) || check.code === undefined, `haproxy -c: ${check.stdout ?? ''}${check.stderr ?? ''}`)
    haproxy = spawn(HAPROXY!, ['-f', config, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] })
    haproxy.stdout!.on('data', (chunk: Buffer) => haproxyOutput.push(chunk.toString()))
    haproxy.stderr!.on('data', (chunk: Buffer) => haproxyOutput.push(chunk.toString()))
    const frontend = `http://127.0.0.1:${frontendPort}/`
    const names = backends.map((b) => b.name)
    const diagnose = () => `\nhaproxy output:\n${haproxyOutput.join('').slice(-3000)}`

    // Every instance gets its share of round-robin traffic.
    let counts = new Map<string, number>()
    await waitFor(
      async () => {
        counts = await spread(frontend, 30)
        return names.every((name) => (counts.get(name) ?? 0) >= 8) && [...counts.keys()].every((key) => names.includes(key))
      },
      { timeoutMs: 30_000, intervalMs: 200, what: `HAProxy to balance over p1, p2, p3 (last: ${JSON.stringify(Object.fromEntries(counts))})` },
    ).catch((error: Error) => assert.fail(`${error.message}: ${JSON.stringify(Object.fromEntries(counts))}${diagnose()}`))

    // Deregistered (its server still answering): DNS alone takes it out of HAProxy.
    const gone = backends[1]!
    await gone.registration.stop()
    await waitFor(
      async () => {
        counts = await spread(frontend, 20)
        return !counts.has(gone.name) && names.filter((n) => n !== gone.name).every((name) => (counts.get(name) ?? 0) >= 8)
      },
      { timeoutMs: 30_000, intervalMs: 200, what: 'HAProxy to stop sending to p2' },
    ).catch((error: Error) => assert.fail(`${error.message}: ${JSON.stringify(Object.fromEntries(counts))}${diagnose()}`))
  })
})
