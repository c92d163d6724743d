// Nothing a client sends may produce a 5xx or stop a process (DESIGN.md): thousands of generated
// requests (fast-check) against every role running as a real process, products and orders on
// PostgreSQL, each service directly and through the gateway. Every answer is below 500, every
// 4xx is problem+json, and every process still runs and is live at the end.
//
// The seed is fixed, so a run is repeatable; FUZZ_SEED=<n> runs another one (or replays a failure
// with the seed and path fast-check prints), FUZZ_RUNS sets the number of batches of 16 requests
// and FUZZ_BUDGET_MS the time after which the remaining batches are skipped (the count sent is
// printed either way).
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { errors as undiciErrors, Pool } from 'undici'
import { fuzzRequest, ROLES, type FuzzContext, type FuzzRequest, type Role } from '../helpers/fuzz.ts'
import { http } from '../helpers/http.ts'
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.ts'
import type { LogLine, RunningProcess } from '../helpers/process.ts'
import { freePorts, startRoles, startTracked, stopAll, tempDir, type TempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

function envInteger(name: string, fallback: number): number {
  const text = process.env[name]
  if (text === undefined || text === '') return fallback
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(text)}`)
  return value
}

const SEED = envInteger('FUZZ_SEED', 20_261_130)
const RUNS = envInteger('FUZZ_RUNS', 200)
const BUDGET_MS = envInteger('FUZZ_BUDGET_MS', 30_000)
const BATCH = 16
const REQUEST_TIMEOUT_MS = 10_000

type Outcome = { kind: 'answer'; status: number; contentType: string; text: string } | { kind: 'unsendable'; reason: string } | { kind: 'failed'; error: Error }

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

describe('fuzz: generated requests against every role', () => {
  const started: RunningProcess[] = []
  const dirs: TempDir[] = []
  let database: TestDatabase | undefined
  const processes = {} as Record<Role, RunningProcess>
  const pools = {} as Record<Role, Pool>
  let context: FuzzContext

  before(async () => {
    database = await createTestDatabase('msa_fuzz')
    const dir = tempDir('fuzz')
    dirs.push(dir)
    const [deadPort] = await freePorts(1)
    // No write limit: the fuzzer writes from the same address as the services' heartbeats.
    processes.registry = await startTracked(started, 'registry', { env: { REGISTRY_WRITE_RATE_LIMIT: '0' } })
    const env = { REGISTRY_URL: processes.registry.url, DATABASE_URL: database.url, DATA_DIR: dir.path, HEARTBEAT_INTERVAL_SECONDS: '1' }
    ;[processes.product, processes.order, processes.gateway] = (await startRoles(started, ['product', { env }], ['order', { env }], ['gateway', { env }])) as [
      RunningProcess,
      RunningProcess,
      RunningProcess,
    ]
    const gateway = processes.gateway.url
    await waitFor(async () => (await http('GET', `${gateway}/products`)).status === 200 && (await http('GET', `${gateway}/orders`)).status === 200, {
      timeoutMs: 20_000,
      what: 'the gateway to route to product and order',
    })
    const created = await Promise.all(['Kettle', 'Teapot'].map((name) => http('POST', `${processes.product.url}/products`, { name, price: '24.90' })))
    for (const response of created) assert.equal(response.status, 201)
    const productId = created[0]!.body.id as string
    await waitFor(async () => (await http('POST', `${processes.order.url}/orders`, { product_id: productId, quantity: 1 })).status === 201, {
      what: 'the order service to price an order',
    })
    const page = await http('GET', `${processes.product.url}/products?limit=1`)
    assert.equal(typeof page.body.next_cursor, 'string')
    context = { productId, productCursor: page.body.next_cursor, deadPort: deadPort! }
    for (const role of ROLES) pools[role] = new Pool(processes[role].url, { connections: BATCH, pipelining: 1 })
  })

  after(async () => {
    await Promise.all(Object.values(pools).map((pool) => pool.close()))
    await stopAll(started)
    for (const dir of dirs) dir.remove()
    await database?.drop()
  })

  it('answers a NUL in a product name, description or cursor with 400, not 500 (PostgreSQL)', async () => {
    const { product, order } = processes
    const refused = async (method: string, url: string, body?: unknown) => {
      const response = await http(method, url, body)
      assert.equal(response.status, 400, `${method} ${url} ${JSON.stringify(body)}: ${response.text}`)
      assert.equal(response.body.code, 'VALIDATION_FAILED')
    }
    await refused('POST', `${product.url}/products`, { name: 'a\u0000b', price: 1 })
    await refused('POST', `${product.url}/products`, { name: 'ab', price: 1, description: 'x\u0000y' })
    await refused('POST', `${product.url}/products`, { name: 'a\u0007b', price: 1 })
    await refused('POST', `${product.url}/products`, { name: 'line\nbreak', price: 1 })
    await refused('POST', `${product.url}/products`, { name: 'lone \ud800 surrogate', price: 1 })
    for (const service of [product.url, order.url]) {
      const path = service === product.url ? 'products' : 'orders'
      for (const position of [
        ['\u0000', 'x'],
        ['2026-01-01T00:00:00.000Z', 'x\u0000'],
        ['2026-01-01T00:00:00.000Z', '\u0001'],
        ['not a time', 'x'],
        ['2026-01-01T00:00:00.000Z', 'x', 'extra'],
      ]) {
        await refused('GET', `${service}/${path}?cursor=${base64url(position)}`)
      }
    }
    await refused('POST', `${product.url}/products`, { name: 'Tea\ttowel', price: 1 })
    // Tabs and line breaks are text in a description.
    const created = await http('POST', `${product.url}/products`, { name: 'Tea towel', price: 1, description: 'Cotton.\r\nTwo sizes:\n\t- small' })
    assert.equal(created.status, 201, created.text)
  })

  it('answers thousands of generated requests below 500, 4xx as problem+json, and every process stays live', async (t) => {
    const sent = Object.fromEntries(ROLES.map((role) => [role, 0])) as Record<Role, number>
    const statuses = new Map<string, number>()
    let unsendable = 0
    let runs = 0
    const startedAt = Date.now()
    const deadline = startedAt + BUDGET_MS
    // Where each process's log stood before the first generated request.
    const logsBefore = new Map(started.map((p) => [p, p.logs.length]))

    /** The slowest answers, for the summary: where the time went. */
    const slowest: Array<{ ms: number; what: string }> = []
    const timed = (request: FuzzRequest, since: number) => {
      slowest.push({ ms: Date.now() - since, what: `${request.method} ${request.role}${request.path.slice(0, 80)}` })
      slowest.sort((a, b) => b.ms - a.ms)
      slowest.length = Math.min(slowest.length, 3)
    }

    const send = async (request: FuzzRequest): Promise<Outcome> => {
      const since = Date.now()
      try {
        const response = await pools[request.role].request({
          method: request.method,
          path: request.path,
          headers: request.headers,
          ...(request.body === undefined ? {} : { body: request.body }),
          headersTimeout: REQUEST_TIMEOUT_MS,
          bodyTimeout: REQUEST_TIMEOUT_MS,
        })
        const contentType = String(response.headers['content-type'] ?? '')
        let text = ''
        // A stream (the registry's /events) never ends: its headers are the answer.
        if (contentType.startsWith('text/event-stream')) response.body.destroy()
        else text = await response.body.text()
        sent[request.role]++
        timed(request, since)
        return { kind: 'answer', status: response.statusCode, contentType, text }
      } catch (error) {
        // undici refuses a few requests before sending them (a header it considers invalid).
        if (error instanceof undiciErrors.InvalidArgumentError) return { kind: 'unsendable', reason: error.message }
        sent[request.role]++
        return { kind: 'failed', error: error as Error }
      }
    }

    /** What is wrong with an answer, or undefined. */
    const judge = (request: FuzzRequest, outcome: Outcome): string | undefined => {
      if (outcome.kind === 'unsendable') return undefined
      if (outcome.kind === 'failed') return `no answer: ${outcome.error.name}: ${outcome.error.message}`
      const { status, contentType, text } = outcome
      const key = `${request.role} ${Math.floor(status / 100)}xx`
      statuses.set(key, (statuses.get(key) ?? 0) + 1)
      if (status >= 500) return `answered ${status}: ${text.slice(0, 400)}`
      if (status < 400) return undefined
      if (!contentType.startsWith('application/problem+json')) return `answered ${status} as ${contentType || 'no content type'}: ${text.slice(0, 200)}`
      if (request.method === 'HEAD') return undefined
      let problem: { code?: unknown; status?: unknown }
      try {
        problem = JSON.parse(text) as typeof problem
      } catch {
        return `answered ${status} with a body that is not JSON: ${text.slice(0, 200)}`
      }
      if (typeof problem.code !== 'string' || problem.status !== status) return `answered ${status} with a problem without its code or status: ${text.slice(0, 200)}`
      return undefined
    }

    /** The errors the processes logged (with their stacks when they have one), for a failure's report. */
    const errorsLogged = () => {
      const lines = started.flatMap((p) => p.logs.map((line) => ({ role: p.role, line })))
      const withStacks = lines.filter(({ line }) => line.err !== undefined && line.level === 'error')
      const with5xx = lines.filter(({ line }) => typeof line.status === 'number' && line.status >= 500)
      return [...withStacks.slice(-2), ...with5xx.slice(-2)].map(({ role, line }) => `[${role}] ${JSON.stringify(line).slice(0, 3000)}`)
    }

    const property = fc.asyncProperty(fc.array(fuzzRequest(context), { minLength: BATCH, maxLength: BATCH }), async (batch) => {
      // Out of time: the remaining runs (and shrinking) pass without sending anything.
      if (Date.now() > deadline) return
      runs++
      const outcomes = await Promise.all(batch.map(send))
      unsendable += outcomes.filter((o) => o.kind === 'unsendable').length
      const failures = batch.flatMap((request, i) => {
        const wrong = judge(request, outcomes[i]!)
        return wrong === undefined ? [] : [`${request.method} ${request.role}${request.path} ${JSON.stringify({ headers: request.headers, body: request.body })}\n  -> ${wrong}`]
      })
      const exited = started.filter((p) => p.child.exitCode !== null || p.child.signalCode !== null)
      if (exited.length > 0) failures.push(`exited: ${exited.map((p) => `${p.role} (${p.child.exitCode ?? p.child.signalCode})\n${p.output.slice(-20).join('\n')}`).join('; ')}`)
      if (failures.length > 0) throw new Error(`${failures.join('\n')}\nlogged errors:\n${errorsLogged().join('\n')}`)
    })

    t.diagnostic(`seed ${SEED} (FUZZ_SEED=${SEED} repeats this run), ${RUNS} batches of ${BATCH} requests, budget ${BUDGET_MS} ms`)
    try {
      await fc.assert(property, { seed: SEED, numRuns: RUNS })
    } finally {
      const total = ROLES.reduce((sum, role) => sum + sent[role], 0)
      t.diagnostic(`sent ${total} requests in ${runs} batches, ${Date.now() - startedAt} ms: ${ROLES.map((role) => `${role} ${sent[role]}`).join(', ')}`)
      t.diagnostic(`answers: ${[...statuses].map(([key, count]) => `${key} ${count}`).join(', ')}; unsendable (undici refused) ${unsendable}`)
      t.diagnostic(`slowest: ${slowest.map(({ ms, what }) => `${ms} ms ${JSON.stringify(what)}`).join(', ')}`)
    }

    for (const role of ROLES) {
      const proc = processes[role]
      assert.equal(proc.child.exitCode, null, `${role} still running`)
      assert.equal((await http('GET', `${proc.url}/health/live`)).status, 200, `${role} live`)
    }
    const logged5xx = started.flatMap((p) =>
      p.logs
        .slice(logsBefore.get(p))
        .filter((line: LogLine) => typeof line.status === 'number' && line.status >= 500)
        .map((line) => `[${p.role}] ${JSON.stringify(line)}`),
    )
    assert.deepEqual(logged5xx, [], 'no process logged a 5xx')
    // The junk registrations went to services of their own: the system's own are still discovered.
    for (const service of ['product', 'order']) {
      const found = await http('GET', `${processes.registry.url}/discover/${service}`)
      assert.equal(found.body.instances.length, 1, `${service} still discovered`)
    }
  })
})
