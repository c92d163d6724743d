// `npm start` (the `all` role): the supervisor runs the registry, two product instances and one
// order instance as child processes on the configured ports, restarts a child that dies, and on
// Ctrl-C stops everything within 10 s.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { http } from '../helpers/http.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { discover, freePorts, pidAlive, tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const TTL_SECONDS = 2
const HEARTBEAT_SECONDS = 0.3
const STOP_WITHIN_MS = 10_000

describe('the all-in-one supervisor (npm start)', () => {
  const dataDir = tempDir('all')
  let supervisor: RunningProcess | undefined
  let registryPort = 0
  let productPorts: number[] = []
  let orderPort = 0
  let registryUrl = ''

  /** Every pid each child (by label, e.g. `product:8081`) has logged, in order of appearance. */
  function childPids(): Map<string, number[]> {
    const pids = new Map<string, number[]>()
    for (const line of supervisor?.output ?? []) {
      const match = /^\[((?:registry|product|order):\d+)\] (\{.*\})$/.exec(line)
      if (!match) continue
      let pid: unknown
      try {
        pid = (JSON.parse(match[2]!) as { pid?: unknown }).pid
      } catch {
        continue
      }
      if (typeof pid !== 'number') continue
      const list = pids.get(match[1]!) ?? []
      if (!list.includes(pid)) list.push(pid)
      pids.set(match[1]!, list)
    }
    return pids
  }

  before(async () => {
    const ports = await freePorts(5)
    registryPort = ports[0]!
    productPorts = [ports[1]!, ports[2]!]
    orderPort = ports[3]!
    // `npm start` also runs the API gateway (on 8000 by default): give it a free port too.
    const gatewayPort = ports[4]!
    registryUrl = `http://127.0.0.1:${registryPort}`
    supervisor = await startRole('all', {
      waitForListening: false,
      env: {
        REGISTRY_PORT: String(registryPort),
        PRODUCT_PORTS: productPorts.join(','),
        ORDER_PORTS: String(orderPort),
        GATEWAY_PORT: String(gatewayPort),
        DATA_DIR: dataDir.path,
        REGISTRY_TTL_SECONDS: String(TTL_SECONDS),
        HEARTBEAT_INTERVAL_SECONDS: String(HEARTBEAT_SECONDS),
      },
    })
  })

  after(async () => {
    if (supervisor && supervisor.child.exitCode === null && supervisor.child.signalCode === null) {
      // Graceful first: the supervisor stops its children; then make sure none is left behind.
      await supervisor.stop('SIGTERM', STOP_WITHIN_MS + 2000)
    }
    for (const pids of childPids().values()) {
      for (const pid of pids) if (pidAlive(pid)) process.kill(pid, 'SIGKILL')
    }
    dataDir.remove()
  })

  it('brings up the registry, two product instances and one order instance on the configured ports', async () => {
    const found = await waitFor(
      async () => {
        if (supervisor?.child.exitCode !== null) throw new Error(`the supervisor exited:\n${supervisor?.output.join('\n')}`)
        const [products, orders] = await Promise.all([discover(registryUrl, 'product'), discover(registryUrl, 'order')])
        return products.length === 2 && orders.length === 1 ? { products, orders } : undefined
      },
      { timeoutMs: 30_000, intervalMs: 100, what: '2 product and 1 order instances in discovery' },
    )
    assert.deepEqual(found.products.map((i) => i.url).sort(), productPorts.map((p) => `http://127.0.0.1:${p}`).sort())
    assert.deepEqual(
      found.orders.map((i) => i.url),
      [`http://127.0.0.1:${orderPort}`],
    )

    const created = await http('POST', `http://127.0.0.1:${productPorts[0]}/products`, { name: 'Notebook', price: 3.3 })
    assert.equal(created.status, 201)
    // The other replica shares the data.
    assert.deepEqual((await http('GET', `http://127.0.0.1:${productPorts[1]}/products/${created.body.id}`)).body, created.body)
    const placed = await http('POST', `http://127.0.0.1:${orderPort}/orders`, { product_id: created.body.id, quantity: 3 })
    assert.equal(placed.status, 201)
    assert.equal(placed.body.total_price, 9.9)
  })

  it('restarts a product instance that is killed with SIGKILL', async () => {
    const port = productPorts[1]!
    const label = `product:${port}`
    const [oldPid] = await waitFor(() => childPids().get(label), { what: `a pid logged by ${label}` })
    assert.ok(oldPid !== undefined && pidAlive(oldPid))
    process.kill(oldPid, 'SIGKILL')
    const killedAt = Date.now()

    const newPid = await waitFor(
      () =>
        childPids()
          .get(label)
          ?.find((pid) => pid !== oldPid),
      {
        timeoutMs: 15_000,
        what: `a new pid for ${label}`,
      },
    )
    assert.ok(!pidAlive(oldPid), 'the killed child is gone')
    assert.ok(pidAlive(newPid), 'the replacement runs')

    // Back in discovery: registered by a process that heartbeats after the kill.
    const url = `http://127.0.0.1:${port}`
    await waitFor(async () => (await discover(registryUrl, 'product')).some((i) => i.url === url && Date.parse(i.last_heartbeat) > killedAt), {
      timeoutMs: 15_000,
      what: 'the restarted instance heartbeating in discovery',
    })
    assert.equal((await http('GET', `${url}/health/ready`)).status, 200)
    const listed = await http('GET', `${url}/products`)
    assert.equal(listed.status, 200)
    assert.equal(listed.body.items.length, 1, 'the restarted instance serves the same data')
  })

  it('stops itself and every child within 10 s of SIGINT, exiting 0', async () => {
    assert.ok(supervisor)
    const pids = [...childPids().values()].flat()
    assert.ok(pids.length >= 5, `pids of every child generation seen: ${pids.join(', ')}`)
    const sentAt = Date.now()
    supervisor.child.kill('SIGINT')
    const exit = await Promise.race([supervisor.exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), STOP_WITHIN_MS).unref())])
    const tookMs = Date.now() - sentAt
    assert.deepEqual(exit, { code: 0, signal: null }, `the supervisor exits 0 within ${STOP_WITHIN_MS} ms (took ${tookMs} ms)`)
    assert.deepEqual(
      pids.filter((pid) => pidAlive(pid)),
      [],
      'no child process is left',
    )
    // The services left discovery themselves before the registry stopped.
    const output = supervisor.output
    const deregistered = () => {
      const urls = new Set<string>()
      for (const line of output) {
        if (!line.startsWith(`[registry:${registryPort}] {`)) continue
        try {
          const entry = JSON.parse(line.slice(line.indexOf('{'))) as { event?: string; url?: string }
          if (entry.event === 'deregistered' && entry.url) urls.add(entry.url)
        } catch {
          // not a JSON log line
        }
      }
      return urls
    }
    const services = [...productPorts, orderPort].map((port) => `http://127.0.0.1:${port}`)
    // (Output may be read a moment after the exit.)
    await waitFor(() => services.every((url) => deregistered().has(url)), { timeoutMs: 2000, what: 'the registry to log every service deregistering' })
  })
})
