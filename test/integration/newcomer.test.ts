// What a newcomer sees: `--help`; a port already in use (one line naming the port and the variable
// that moves it, then a non-zero exit, not a restart loop); `npm start` on a terminal (one short
// line per event, one `listening` line per process with an address a person can open); and JSON
// log lines that `jq` reads right (no key twice in a line).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createServer, type Server } from 'node:net'
import { createInterface } from 'node:readline'
import { after, describe, it } from 'node:test'
import { ROLES } from '../../src/config/index.ts'
import { EXIT_PORT_IN_USE } from '../../src/runtime/role.ts'
import { http } from '../helpers/http.ts'
import { CLI, type RunningProcess } from '../helpers/process.ts'
import { freePorts, pidAlive, startTracked, stopAll, tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

interface Run {
  lines: string[]
  stdout: string[]
  stderr: string[]
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  kill: (signal: NodeJS.Signals) => void
  pid: number | undefined
}

/** `microservices-advanced ...args` with this environment added; stdout and stderr are pipes. */
function run(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, HOST: '127.0.0.1', REGISTRY_DNS_PORT: '0', NO_COLOR: '1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines: string[] = []
  const stdout: string[] = []
  const stderr: string[] = []
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line)
    stdout.push(line)
  })
  createInterface({ input: child.stderr! }).on('line', (line) => {
    lines.push(line)
    stderr.push(line)
  })
  // Output is read to its end before the exit is reported.
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })))
  const killTimer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  killTimer.unref()
  return { lines, stdout, stderr, exited: closed.finally(() => clearTimeout(killTimer)), kill: (signal) => child.kill(signal), pid: child.pid }
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: an escape sequence is what is looked for
const ANSI = /\x1b\[/

/** Something else listening on a port of 127.0.0.1 (what a newcomer's machine may have on 8080). */
async function occupy(port = 0): Promise<{ port: number; server: Server }> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve())
  })
  const address = server.address()
  if (typeof address !== 'object' || address === null) throw new Error('no port')
  return { port: address.port, server }
}

/** The keys that appear more than once in one object of a JSON text (JSON.parse keeps the last). */
export function duplicateKeys(text: string): string[] {
  const duplicates: string[] = []
  const stack: Array<Set<string> | undefined> = []
  let expectKey = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '{') {
      stack.push(new Set())
      expectKey = true
    } else if (c === '[') {
      stack.push(undefined)
      expectKey = false
    } else if (c === '}' || c === ']') {
      stack.pop()
    } else if (c === ',') {
      expectKey = stack.at(-1) !== undefined
    } else if (c === '"') {
      let end = i + 1
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1
      if (expectKey) {
        const key = JSON.parse(text.slice(i, end + 1)) as string
        const keys = stack.at(-1)!
        if (keys.has(key)) duplicates.push(key)
        keys.add(key)
        expectKey = false
      }
      i = end
    }
  }
  return duplicates
}

describe('what a newcomer sees', () => {
  const servers: Server[] = []
  const started: RunningProcess[] = []
  const pids: number[] = []
  const dir = tempDir('newcomer')

  after(async () => {
    await stopAll(started)
    for (const pid of pids) if (pidAlive(pid)) process.kill(pid, 'SIGKILL')
    for (const server of servers) server.close()
    dir.remove()
  })

  it('--help, -h and help list every role, the main variables and where to read more', async () => {
    assert.deepEqual(duplicateKeys('{"a":1,"b":{"a":2},"c":[{"a":1,"a":2}],"d":"x\\"y","d":3}'), ['a', 'd'], 'the checker finds duplicates at any depth')
    for (const flag of ['--help', '-h', 'help']) {
      const help = run([flag])
      const { code } = await help.exited
      assert.equal(code, 0, flag)
      const text = help.stdout.join('\n')
      for (const role of ROLES) assert.match(text, new RegExp(`^  ${role} `, 'm'), `${flag} names the role ${role}`)
      for (const variable of [
        'PORT',
        'HOST',
        'REGISTRY_URL',
        'REGISTRY_PORT',
        'PRODUCT_PORTS',
        'ORDER_PORTS',
        'GATEWAY_PORT',
        'DATA_DIR',
        'DATABASE_URL',
        'LOG_LEVEL',
        'LOG_FORMAT',
      ]) {
        assert.match(text, new RegExp(`\\b${variable}\\b`), `${flag} names ${variable}`)
      }
      assert.match(text, /README\.md/)
      assert.deepEqual(help.stderr, [])
    }
  })

  it('an unknown role prints the short usage and exits 2', async () => {
    const wrong = run(['registy'])
    assert.equal((await wrong.exited).code, 2)
    assert.deepEqual(wrong.stdout, [])
    assert.match(wrong.stderr[0]!, /unknown role "registy"/)
    assert.match(wrong.stderr.join('\n'), /usage: microservices-advanced \[registry\|product\|order\|gateway\|all\]/)
    assert.ok(wrong.stderr.length <= 3, wrong.stderr.join('\n'))
  })

  for (const format of ['json', 'pretty'] as const) {
    it(`a role whose port is taken says so in one line naming PORT, and exits ${EXIT_PORT_IN_USE} (${format})`, async () => {
      const taken = await occupy()
      servers.push(taken.server)
      const registry = run(['registry'], { PORT: String(taken.port), LOG_FORMAT: format })
      const { code } = await registry.exited
      assert.equal(code, EXIT_PORT_IN_USE)
      assert.equal(registry.lines.length, 1, registry.lines.join('\n'))
      const [line] = registry.lines
      assert.match(line!, new RegExp(`port ${taken.port} is already in use on 127\\.0\\.0\\.1: .*set PORT to a free port`))
      assert.doesNotMatch(line!, /\n| {4}at /)
      if (format === 'json') {
        const entry = JSON.parse(line!) as Record<string, unknown>
        assert.equal(entry.level, 'fatal')
        assert.equal(entry.event, 'port_in_use')
        assert.equal(entry.variable, 'PORT')
        assert.equal(entry.port, taken.port)
      }
    })
  }

  it(`the registry with its DNS port taken says so in one line naming REGISTRY_DNS_PORT, and exits ${EXIT_PORT_IN_USE}`, async () => {
    const taken = await occupy()
    servers.push(taken.server)
    const registry = run(['registry'], { PORT: '0', REGISTRY_DNS_PORT: String(taken.port), LOG_FORMAT: 'pretty' })
    assert.equal((await registry.exited).code, EXIT_PORT_IN_USE)
    assert.equal(registry.lines.filter((line) => /ERROR|FATAL/.test(line)).length, 1, registry.lines.join('\n'))
    assert.match(registry.lines.join('\n'), new RegExp(`REGISTRY_DNS_PORT ${taken.port} is in use`))
    assert.doesNotMatch(registry.lines.join('\n'), / {4}at |failed to start/, 'no stack trace')
  })

  it('npm start with a port taken: one line naming the port and its variable, nothing started, a non-zero exit', async () => {
    const [registryPort, productPort, gatewayPort] = await freePorts(3)
    const taken = await occupy()
    servers.push(taken.server)
    const all = run(['all'], {
      REGISTRY_PORT: String(registryPort),
      PRODUCT_PORTS: String(productPort),
      ORDER_PORTS: String(taken.port),
      GATEWAY_PORT: String(gatewayPort),
      DATA_DIR: dir.path,
    })
    if (all.pid !== undefined) pids.push(all.pid)
    const { code } = await all.exited
    assert.equal(code, EXIT_PORT_IN_USE)
    assert.equal(all.lines.length, 1, all.lines.join('\n'))
    assert.match(all.lines[0]!, new RegExp(`^\\[all\\] port ${taken.port} \\(an order instance's\\) is already in use on 127\\.0\\.0\\.1: .*set ORDER_PORTS`))
  })

  it('npm start on a terminal: one line per event, one listening line per process, a short start-up', async () => {
    const [registryPort, productA, productB, orderPort, gatewayPort] = await freePorts(5)
    const all = run(['all'], {
      LOG_FORMAT: 'pretty',
      REGISTRY_PORT: String(registryPort),
      PRODUCT_PORTS: `${productA},${productB}`,
      ORDER_PORTS: String(orderPort),
      GATEWAY_PORT: String(gatewayPort),
      DATA_DIR: dir.path,
    })
    if (all.pid !== undefined) pids.push(all.pid)
    const upAt = await waitFor(() => all.lines.findIndex((line) => line.startsWith('[all] all up')) + 1, { timeoutMs: 30_000, what: `all up; so far:\n${all.lines.join('\n')}` })
    const startup = all.lines.slice(0, upAt)
    const text = startup.join('\n')

    // Each line is one whole event: the process, the time, the level, the message. A field printed
    // on lines of its own (pino-pretty's default) would not match.
    for (const line of startup) {
      assert.match(line, /^(\[all\] \S|\[(registry|product|order|gateway):\d+\] \[\d\d:\d\d:\d\d\] (DEBUG|INFO|WARN|ERROR|FATAL): \S)/, `one event per line:\n${text}`)
      assert.doesNotMatch(line, ANSI, 'NO_COLOR: no colour')
    }
    assert.doesNotMatch(text, /Server listening at/, "Fastify's line per network interface is not shown")
    for (const [role, port] of [
      ['product', productA],
      ['product', productB],
      ['order', orderPort],
      ['gateway', gatewayPort],
    ] as const) {
      // Each child's lines come through a pipe of its own: one may be read just after "all up".
      await waitFor(() => all.lines.some((line) => line.startsWith(`[${role}:${port}] `) && /listening/.test(line)), { what: `${role}:${port}'s listening line` }).catch(
        () => undefined,
      )
      const listening = all.lines.filter((line) => line.startsWith(`[${role}:${port}] `) && /listening/.test(line))
      assert.equal(listening.length, 1, `one listening line for ${role}:${port}:\n${all.lines.join('\n')}`)
      assert.match(listening[0]!, new RegExp(`${role} listening on http://127\\.0\\.0\\.1:${port}( |$)`))
    }
    assert.equal(startup.filter((line) => line.startsWith(`[registry:${registryPort}] `) && /listening/.test(line)).length, 1, text)
    assert.match(startup.at(-1)!, new RegExp(`the API at http://127\\.0\\.0\\.1:${gatewayPort}/docs, the registry's dashboard at http://127\\.0\\.0\\.1:${registryPort}/`))
    // About 30 lines for five processes (it was about 240): a bound, not an exact count.
    assert.ok(startup.length <= 45, `a short start-up (${startup.length} lines):\n${text}`)

    all.kill('SIGINT')
    assert.equal((await all.exited).code, 0)
  })

  it('JSON lines never hold a key twice: the instance writing is service_instance_id, the one a line is about instance_id', async () => {
    const registry = await startTracked(started, 'registry')
    const env = { REGISTRY_URL: registry.url, DATA_DIR: dir.path, HEARTBEAT_INTERVAL_SECONDS: '0.5' }
    const product = await startTracked(started, 'product', { env })
    const order = await startTracked(started, 'order', { env })
    const registered = await product.waitForLog((line) => line.event === 'registered')
    const created = await http('POST', `${product.url}/products`, { name: 'Lamp', price: 12.5 })
    assert.equal(created.status, 201)
    await waitFor(async () => (await http('POST', `${order.url}/orders`, { product_id: created.body.id, quantity: 2 })).status === 201, {
      what: 'an order priced through discovery',
    })
    await order.waitForLog((line) => line.msg === 'request' && line.route === '/orders' && line.status === 201)

    const lines = [registry, product, order].flatMap((p) => p.output.filter((line) => line.startsWith('{')))
    assert.ok(lines.length >= 10, `lines to check: ${lines.length}`)
    for (const line of lines) assert.deepEqual(duplicateKeys(line), [], line)
    assert.equal(registered.instance_id, registered.service_instance_id, 'its own registration: the same instance')
    assert.match(String(registered.service_instance_id), /^product-[0-9a-f]{12}$/)
  })
})

describe('an idle registry is quiet', () => {
  it('watchers waiting (native and Consul blocking queries) log nothing at info, and a watcher that leaves is no error', async () => {
    const { startRole } = await import('../helpers/process.ts')
    const registry = await startRole('registry')
    try {
      const registered = await http('POST', `${registry.url}/register`, { service_name: 'product', url: 'http://127.0.0.1:9' })
      assert.equal(registered.status, 201)
      const index = (await http('GET', `${registry.url}/discover/product`)).headers.get('x-registry-index')
      const consulIndex = (await http('GET', `${registry.url}/v1/health/service/product`)).headers.get('x-consul-index')
      // Those two reads are logged (they did not wait): start counting after their lines.
      await registry.waitForLog((line) => line.msg === 'request' && line.route === '/v1/health/service/:service')
      const before = registry.logs.length
      // Three watchers' waits end with nothing changed, as every service's resolver's do all day.
      for (let i = 0; i < 3; i++) {
        assert.equal((await http('GET', `${registry.url}/discover/product?index=${index}&wait=200ms`)).status, 200)
        assert.equal((await http('GET', `${registry.url}/v1/health/service/product?index=${consulIndex}&wait=200ms`)).status, 200)
      }
      // One leaves in the middle of its wait.
      const leaving = new AbortController()
      const waiting = fetch(`${registry.url}/discover/product?index=${index}&wait=30s`, { signal: leaving.signal }).catch(() => undefined)
      const watchers = async () =>
        [...(await http('GET', `${registry.url}/metrics`)).text.matchAll(/^registry_watchers\{[^}]*\} (\d+)$/gm)].reduce((sum, match) => sum + Number(match[1]), 0)
      await waitFor(async () => (await watchers()) > 0, { what: 'the watcher to be waiting' })
      leaving.abort()
      await waiting
      // A request that is logged, after them: once it is there, theirs would be too.
      await http('GET', `${registry.url}/services`)
      await registry.waitForLog((line) => line.msg === 'request' && line.route === '/services')
      const lines = registry.logs.slice(before).filter((line) => line.route !== '/services' && line.route !== '/metrics')
      assert.deepEqual(
        lines.map((line) => `${line.level} ${line.msg} ${line.route}`),
        [],
        'nothing at info or above for watchers',
      )
    } finally {
      await registry.stop()
    }
  })
})
