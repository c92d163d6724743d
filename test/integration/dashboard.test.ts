// The registry dashboard in real headless Chromium against a real registry process: it shows
// what is registered, follows changes live without a reload, filters, fits a phone, and
// reconnects by itself when the registry restarts; and against a registry whose reads need a
// token (REGISTRY_READ_TOKEN), it asks for one, keeps it for the tab's session only, sends it as a
// header (never in an address), and forgets it when asked.
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { launchChromium, screenshotDir } from '../helpers/browser.ts'
import { http } from '../helpers/http.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { waitFor } from '../helpers/wait.ts'

const TTL_SECONDS = 3
const HEARTBEAT_MS = 500
/** The heartbeat loop stops by itself after this, whatever happens to the test. */
const HEARTBEAT_LOOP_LIMIT_MS = 120_000
const UI_TIMEOUT_MS = 10_000

interface Registration {
  service_name: string
  url: string
  status?: 'up' | 'starting' | 'draining'
  metadata?: Record<string, string>
  health_url?: string
}

/** A port nothing listens on: health checks against it are refused at once. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (typeof address !== 'object' || !address) throw new Error('no port')
  return address.port
}

/**
 * Instances that heartbeat while they are in `alive`, re-registering when the registry forgot
 * them (after a restart), like the discovery client does. Bounded in time.
 */
class Heartbeats {
  readonly alive = new Map<string, Registration>()
  #timer: NodeJS.Timeout | undefined
  readonly #startedAt = Date.now()
  readonly registryUrl: () => string
  /** With a write token (a registry with REGISTRY_TOKEN), as `Authorization: Bearer`. */
  readonly #headers: Record<string, string>
  constructor(registryUrl: () => string, token?: string) {
    this.registryUrl = registryUrl
    this.#headers = token === undefined ? {} : { authorization: `Bearer ${token}` }
  }

  start(): void {
    this.#timer = setInterval(() => {
      if (Date.now() - this.#startedAt > HEARTBEAT_LOOP_LIMIT_MS) return this.stop()
      for (const registration of this.alive.values()) void this.#beat(registration)
    }, HEARTBEAT_MS)
  }

  stop(): void {
    clearInterval(this.#timer)
    this.alive.clear()
  }

  async register(registration: Registration, heartbeat = true): Promise<string> {
    const response = await http('POST', `${this.registryUrl()}/register`, registration, this.#headers)
    assert.ok(response.status === 201 || response.status === 200, `register ${registration.url}: ${response.status} ${response.text}`)
    if (heartbeat) this.alive.set(response.body.id, registration)
    return response.body.id as string
  }

  async #beat(registration: Registration): Promise<void> {
    try {
      const { service_name, url } = registration
      const response = await http('POST', `${this.registryUrl()}/heartbeat`, { service_name, url }, this.#headers)
      if (response.status === 404) await http('POST', `${this.registryUrl()}/register`, registration, this.#headers)
    } catch {
      // The registry is down (the restart test): the next beat tries again.
    }
  }
}

/** A string evaluated in the page (the test is type-checked without the DOM library). */
async function inPage<T>(page: Page, expression: string): Promise<T> {
  return (await page.evaluate(expression)) as T
}

const row = (page: Page, id: string) => page.locator(`tr[data-instance-id="${id}"]`)
/** The ids of the instance rows on the page, sorted. */
const shownIds = async (page: Page) => (await inPage<string[]>(page, '[...document.querySelectorAll("#services tr[data-instance-id]")].map((r) => r.dataset.instanceId)')).sort()

describe('registry dashboard in Chromium', () => {
  let registry: RunningProcess
  let registryPort = 0
  let browser: Browser
  let context: BrowserContext
  let page: Page
  const heartbeats = new Heartbeats(() => `http://127.0.0.1:${registryPort}`)
  const ids: Record<string, string> = {}
  const problems: string[] = []
  const shots = screenshotDir('dashboard')
  const registryEnv = {
    REGISTRY_TTL_SECONDS: String(TTL_SECONDS),
    REGISTRY_HEALTH_CHECK_INTERVAL_SECONDS: '0.25',
    REGISTRY_HEALTH_CHECK_TIMEOUT_SECONDS: '0.5',
    REGISTRY_HEALTH_CHECK_FAILURES: '1',
  }

  before(async () => {
    // First the browser: without it nothing here can pass, and the message says what to install.
    browser = await launchChromium()
    registry = await startRole('registry', { env: registryEnv })
    registryPort = registry.port
    heartbeats.start()
    const downPort = await closedPort()
    ids.product1 = await heartbeats.register({ service_name: 'product', url: 'http://127.0.0.1:18081', metadata: { version: '1.4.2', zone: 'eu-west-1a' } })
    ids.product2 = await heartbeats.register({
      service_name: 'product',
      url: 'http://127.0.0.1:18082',
      metadata: { version: '1.4.2', zone: 'eu-west-1b', commit: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b' },
    })
    ids.product3 = await heartbeats.register({ service_name: 'product', url: 'http://127.0.0.1:18084', status: 'draining', metadata: { version: '1.4.1', zone: 'eu-west-1a' } })
    ids.order1 = await heartbeats.register({ service_name: 'order', url: 'http://127.0.0.1:18083', status: 'starting', metadata: { version: '2.0.0' } })
    ids.payment1 = await heartbeats.register({
      service_name: 'payment',
      url: `http://127.0.0.1:${downPort}`,
      health_url: `http://127.0.0.1:${downPort}/health/ready`,
      metadata: { version: '0.9.0', region: 'eu-west-1' },
    })
    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' })
    page = await context.newPage()
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`)
    })
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
  })

  after(async () => {
    heartbeats.stop()
    await browser?.close()
    await registry?.stop()
  })

  it('serves the page and its files with a strict Content-Security-Policy', async () => {
    for (const path of ['/', '/ui', '/ui/dashboard.js', '/ui/dashboard.css', '/ui/favicon.svg']) {
      const response = await http('GET', `${registry.url}${path}`)
      assert.equal(response.status, 200, path)
      assert.match(response.headers.get('content-security-policy') ?? '', /default-src 'self'/, path)
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff', path)
    }
    const page = await http('GET', `${registry.url}/ui`)
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/)
    assert.match(page.text, /<meta name="registry-ttl-ms" content="3000">/)
    assert.doesNotMatch(page.text, /<script>|<style>| style=| on[a-z]+=/i, 'no inline script or style')
    assert.match((await http('GET', `${registry.url}/ui/dashboard.js`)).headers.get('content-type') ?? '', /^text\/javascript/)
    assert.match((await http('GET', `${registry.url}/ui/dashboard.css`)).headers.get('content-type') ?? '', /^text\/css/)
    // The files are revalidated, not downloaded again.
    const script = await http('GET', `${registry.url}/ui/dashboard.js`)
    const etag = script.headers.get('etag') ?? ''
    assert.notEqual(etag, '')
    assert.equal((await http('GET', `${registry.url}/ui/dashboard.js`, undefined, { 'if-none-match': etag })).status, 304)

    // The entry module's imports resolve under /ui/ and are served like it.
    const imports = [...script.text.matchAll(/^import .* from '\.\/([\w.-]+\.js)'$/gm)].map((m) => m[1]!)
    assert.ok(imports.includes('format.js'), `the entry module imports the others: ${imports.join(', ')}`)
    for (const name of imports) {
      const module = await http('GET', `${registry.url}/ui/${name}`)
      assert.equal(module.status, 200, name)
      assert.match(module.headers.get('content-type') ?? '', /^text\/javascript/, name)
      assert.match(module.headers.get('content-security-policy') ?? '', /trusted-types 'none'/, name)
      assert.notEqual(module.headers.get('etag') ?? '', '', name)
    }
    // Only the page's own files: not the server's code, its config, or anything outside the folder.
    for (const path of ['/ui/routes.ts', '/ui/routes.js', '/ui/tsconfig.json', '/ui/index.html', '/ui/..%2Froutes.ts', '/ui/%2E%2E/routes.ts']) {
      assert.equal((await http('GET', `${registry.url}${path}`)).status, 404, path)
    }
  })

  it('shows every running instance with its status, URL and metadata', async () => {
    await page.goto(registry.url)
    await page.locator('body[data-connection="live"]').waitFor({ timeout: UI_TIMEOUT_MS })
    for (const id of Object.values(ids)) await row(page, id).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.deepEqual(await shownIds(page), Object.values(ids).sort())

    assert.equal(await row(page, ids.product1!).getAttribute('data-status'), 'up')
    assert.equal(await row(page, ids.product3!).getAttribute('data-status'), 'draining')
    assert.equal(await row(page, ids.order1!).getAttribute('data-status'), 'starting')
    // The registry's health check of the payment instance is refused: it shows `down`.
    await page.locator(`tr[data-instance-id="${ids.payment1}"][data-status="down"]`).waitFor({ timeout: UI_TIMEOUT_MS })

    const first = row(page, ids.product1!)
    assert.equal(await first.locator('.col-instance a').textContent(), 'http://127.0.0.1:18081')
    assert.equal(await first.locator('.col-status .status').textContent(), 'Up')
    assert.deepEqual(await first.locator('.col-meta li').allTextContents(), ['version1.4.2', 'zoneeu-west-1a'])
    assert.match((await first.locator('.col-age').textContent()) ?? '', /^\d+s ago$/)
    assert.match((await first.locator('.expiry-text').textContent()) ?? '', /^[1-3]s$/)
    assert.deepEqual(await page.locator('#services h3').allTextContents(), ['order', 'payment', 'product'])
    assert.equal(await page.locator('#stat-instances').textContent(), '5')
    assert.equal(await page.locator('#stat-down').textContent(), '1')
    assert.equal(await page.locator('#ttl').textContent(), '3 s')
  })

  it('shows beside each status whether anything checks the instance', async () => {
    // Heartbeats, no health URL: alive, but nothing probes it.
    await page.locator(`tr[data-instance-id="${ids.product1}"][data-check="heartbeat"]`).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await row(page, ids.product1!).locator('.col-status .check').textContent(), 'Heartbeats only')
    // A health URL: the registry probes it (and shows it down, as it fails).
    await page.locator(`tr[data-instance-id="${ids.payment1}"][data-check="health"]`).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await row(page, ids.payment1!).locator('.col-status .check').textContent(), 'Health-checked')
    // Registered once by hand, no health URL, no heartbeat: "up" like the others, and not checked.
    const id = await heartbeats.register({ service_name: 'legacy', url: 'http://127.0.0.1:18095' }, false)
    const once = row(page, id)
    await once.waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await once.getAttribute('data-status'), 'up')
    assert.equal(await once.getAttribute('data-check'), 'none')
    assert.equal(await once.locator('.col-status .check').textContent(), 'Not checked')
    assert.match((await once.locator('.col-status .check').getAttribute('title')) ?? '', /no heartbeat since it registered/)
    // Once it heartbeats, it is no longer "not checked".
    assert.equal((await http('POST', `${registry.url}/heartbeat`, { instance_id: id })).status, 200)
    await page.locator(`tr[data-instance-id="${id}"][data-check="heartbeat"]`).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal((await http('POST', `${registry.url}/deregister`, { instance_id: id })).status, 200)
    await once.waitFor({ state: 'detached', timeout: UI_TIMEOUT_MS })
  })

  it('shows a newly registered instance without a reload', async () => {
    await inPage(page, 'window.__sameDocument = true')
    ids.order2 = await heartbeats.register({ service_name: 'order', url: 'http://127.0.0.1:18086', metadata: { version: '2.0.0' } })
    await row(page, ids.order2).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await inPage(page, 'window.__sameDocument'), true, 'the page was not reloaded')
    assert.equal(await page.locator('#stat-instances').textContent(), '6')
  })

  it('writes metadata from clients as text, never as markup', async () => {
    const hostile = '<img src=x onerror="window.__xss=1"><b>bold</b>'
    const id = await heartbeats.register({ service_name: 'inventory', url: 'http://127.0.0.1:18090', metadata: { note: hostile } })
    await row(page, id).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await row(page, id).locator('.tag-value').textContent(), hostile)
    assert.equal(await page.locator('#services img, #services b').count(), 0)
    assert.equal(await inPage(page, 'window.__xss'), undefined)

    // Deregistered: it goes at once (no need to wait for the TTL).
    heartbeats.alive.delete(id)
    const response = await http('POST', `${registry.url}/deregister`, { instance_id: id })
    assert.equal(response.status, 200)
    await row(page, id).waitFor({ state: 'detached', timeout: UI_TIMEOUT_MS })
    await page.locator('section[data-service="inventory"]').waitFor({ state: 'detached', timeout: UI_TIMEOUT_MS })
    assert.equal(await inPage(page, 'window.__sameDocument'), true)
  })

  it("counts an instance's silence up each second and drops it when it expires", async () => {
    // This instance stops heartbeating (as if killed): its age grows until the TTL evicts it.
    const id = await heartbeats.register({ service_name: 'order', url: 'http://127.0.0.1:18087' }, false)
    const age = row(page, id).locator('.age')
    await age.waitFor({ timeout: UI_TIMEOUT_MS })
    const seen: number[] = []
    await waitFor(
      async () => {
        const seconds = Number(/^(\d+)s ago$/.exec((await age.textContent()) ?? '')?.[1])
        if (Number.isInteger(seconds) && seconds !== seen.at(-1)) seen.push(seconds)
        return seen.length >= 2
      },
      { timeoutMs: UI_TIMEOUT_MS, intervalMs: 100, what: `the age to tick (saw ${seen.join(', ')})` },
    )
    assert.ok(
      seen.every((s, i) => i === 0 || s > seen[i - 1]!),
      `ages only grow: ${seen.join(', ')}`,
    )
    await row(page, id).waitFor({ state: 'detached', timeout: TTL_SECONDS * 1000 + UI_TIMEOUT_MS })
    // The heartbeating instances stay, with fresh ages (the page refreshes heartbeat times).
    await page.locator(`tr[data-instance-id="${ids.product1}"]:not([data-expiry="expired"])`).waitFor({ timeout: 1000 })
    await waitFor(async () => /^[01]s ago$/.test((await row(page, ids.product1!).locator('.age').textContent()) ?? ''), {
      timeoutMs: UI_TIMEOUT_MS,
      what: 'a fresh heartbeat age for a live instance',
    })
  })

  it('filters by service, by status and by text, and keeps the filters in the address', async () => {
    const all = Object.values(ids).sort()
    const shows = (expected: string[], what: string) =>
      waitFor(async () => JSON.stringify(await shownIds(page)) === JSON.stringify([...expected].sort()), { timeoutMs: UI_TIMEOUT_MS, what })

    await page.getByLabel('Service').selectOption('product')
    await shows([ids.product1!, ids.product2!, ids.product3!], 'only product instances')
    assert.match(page.url(), /\?service=product$/)
    await page.getByLabel('Status').selectOption('draining')
    await shows([ids.product3!], 'only the draining product instance')
    assert.match((await page.locator('#result-count').textContent()) ?? '', /^Showing 1 of 6 instances$/)
    await page.getByLabel('Service').selectOption('order')
    await shows([], 'no draining order instance')
    assert.equal(await page.locator('#empty').isVisible(), true)
    assert.equal(await page.locator('#empty-title').textContent(), 'No instances match these filters')

    await page.getByRole('button', { name: 'Clear filters' }).click()
    await shows(all, 'every instance again')
    await page.getByLabel('Status').selectOption('down')
    await shows([ids.payment1!], 'the down instance')
    await page.getByLabel('Status').selectOption('')
    await page.getByLabel('Search').fill('EU-WEST-1B')
    await shows([ids.product2!], 'the instance whose metadata matches')
    await page.getByLabel('Search').fill('')
    await shows(all, 'every instance again')

    // A filtered address opens filtered.
    await page.goto(`${registry.url}/ui?status=starting`)
    await shows([ids.order1!], 'the starting instance, from the address')
    assert.equal(await page.getByLabel('Status').inputValue(), 'starting')
    await page.goto(registry.url)
    await shows(all, 'every instance')
  })

  it('fits a phone and a desktop; saves screenshots', async (t) => {
    // Desktop, light and dark.
    await page.screenshot({ path: join(shots, 'desktop.png'), fullPage: true })
    const dark = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'dark' })
    try {
      const darkPage = await dark.newPage()
      await darkPage.goto(registry.url)
      await darkPage.locator(`tr[data-instance-id="${ids.payment1}"]`).waitFor({ timeout: UI_TIMEOUT_MS })
      await darkPage.screenshot({ path: join(shots, 'desktop-dark.png'), fullPage: true })
    } finally {
      await dark.close()
    }

    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: 'light' })
    try {
      const phonePage = await phone.newPage()
      await phonePage.goto(registry.url)
      for (const id of Object.values(ids)) await row(phonePage, id).waitFor({ timeout: UI_TIMEOUT_MS })
      const widths = await inPage<{ scroll: number; client: number }>(phonePage, '({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth })')
      assert.ok(widths.scroll <= widths.client, `no horizontal overflow on a phone: ${widths.scroll} > ${widths.client}`)
      // Every instance card is within the screen's width.
      const rightmost = await inPage<number>(
        phonePage,
        'Math.max(...[...document.querySelectorAll("#services tbody tr, #services tbody td")].map((e) => e.getBoundingClientRect().right))',
      )
      assert.ok(rightmost <= 390, `cards fit the screen (${rightmost})`)
      await phonePage.screenshot({ path: join(shots, 'phone.png'), fullPage: true })
    } finally {
      await phone.close()
    }
    t.diagnostic(`screenshots: ${shots}/{desktop,desktop-dark,phone}.png`)
    assert.deepEqual(problems, [], 'no console errors or CSP violations')
  })

  it('reconnects by itself when the registry restarts', async () => {
    const before = await page.locator('#epoch').textContent()
    await inPage(page, 'window.__sameDocument = true')
    await registry.stop()
    await page.locator('body:not([data-connection="live"])').waitFor({ timeout: UI_TIMEOUT_MS })
    // Same port: the page reconnects to the address it had.
    registry = await startRole('registry', { env: { ...registryEnv, PORT: String(registryPort) } })
    await page.locator('body[data-connection="live"]').waitFor({ timeout: UI_TIMEOUT_MS + 5000 })
    await waitFor(async () => (await page.locator('#epoch').textContent()) !== before, { timeoutMs: UI_TIMEOUT_MS, what: 'the new epoch' })
    // The heartbeating instances register again (404 on heartbeat) and come back on the page.
    for (const id of [ids.product1!, ids.product2!, ids.order1!]) await row(page, id).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await inPage(page, 'window.__sameDocument'), true, 'the page was not reloaded')
  })
})

describe('registry dashboard in Chromium, when reads need a token', () => {
  const ADMIN = 'dashboard-admin-token-0123456789abcdef'
  const READER = 'dashboard-read-token-0123456789abcdef'
  let registry: RunningProcess
  let browser: Browser
  let context: BrowserContext
  let page: Page
  const heartbeats = new Heartbeats(() => registry.url, ADMIN)
  const ids: Record<string, string> = {}
  const problems: string[] = []
  /** Every request the page made to the registry's reads: where, with which Authorization. */
  const reads: { url: string; authorization: string | undefined }[] = []
  const shots = screenshotDir('dashboard')
  const registryEnv = { REGISTRY_TTL_SECONDS: String(TTL_SECONDS), REGISTRY_TOKEN: ADMIN, REGISTRY_READ_TOKEN: READER }
  let restarting = false
  /** Registry processes stopped along the way (their logs are checked too). */
  const stopped: RunningProcess[] = []

  const form = () => page.getByRole('form', { name: 'This registry needs a read token' })
  const tokenField = () => page.getByLabel('Read token', { exact: true })
  const stored = () =>
    inPage<{ session: string | null; local: number; cookie: string }>(
      page,
      '({ session: sessionStorage.getItem("registry-read-token"), local: localStorage.length, cookie: document.cookie })',
    )
  /** The page asks for a token and holds nothing the registry said. */
  const showsTheForm = async () => {
    await form().waitFor({ timeout: UI_TIMEOUT_MS })
    await page.locator('body[data-auth="needed"][data-connection="locked"]').waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await tokenField().getAttribute('type'), 'password')
    assert.deepEqual(await shownIds(page), [], 'no instance is on the page')
    assert.equal(await page.locator('#services > *').count(), 0, 'no service is on the page')
    assert.equal(await page.locator('#instances').isVisible(), false)
    assert.equal(await page.locator('#filters').isVisible(), false)
    assert.equal(await page.getByRole('button', { name: 'Forget token' }).isVisible(), false)
  }

  before(async () => {
    browser = await launchChromium()
    registry = await startRole('registry', { env: registryEnv })
    heartbeats.start()
    ids.product1 = await heartbeats.register({ service_name: 'product', url: 'http://127.0.0.1:18181', metadata: { version: '1.4.2' } })
    ids.order1 = await heartbeats.register({ service_name: 'order', url: 'http://127.0.0.1:18183', status: 'starting' })
    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' })
    page = await context.newPage()
    page.on('console', (message) => {
      // The browser logs each refused request itself: those 401s are what this test expects, and
      // so are refused connections while the registry restarts.
      if (/status of 401/.test(message.text()) || (restarting && /ERR_CONNECTION_REFUSED/.test(message.text()))) return
      if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`)
    })
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
    page.on('request', (request) => {
      const { pathname } = new URL(request.url())
      if (pathname === '/events' || pathname === '/services') reads.push({ url: request.url(), authorization: request.headers().authorization })
    })
  })

  after(async () => {
    heartbeats.stop()
    await browser?.close()
    await registry?.stop()
    // The token never reached the registry's logs (as it would have in a query string).
    for (const line of [...stopped, registry].flatMap((proc) => proc?.output ?? [])) assert.ok(!line.includes(READER), `the registry logged the read token: ${line}`)
  })

  it('serves the page openly, and its data only with a token', async () => {
    for (const path of ['/', '/ui', '/ui/dashboard.js', '/ui/sign-in.js', '/ui/sse.js']) assert.equal((await http('GET', `${registry.url}${path}`)).status, 200, path)
    for (const path of ['/events', '/services']) {
      const refused = await http('GET', `${registry.url}${path}`)
      assert.equal(refused.status, 401, path)
      assert.equal(refused.headers.get('www-authenticate'), 'Bearer realm="registry"', path)
    }
    const page = await http('GET', `${registry.url}/ui`)
    assert.match(page.headers.get('content-security-policy') ?? '', /connect-src 'self'/)
    assert.match(page.headers.get('content-security-policy') ?? '', /form-action 'none'/)
  })

  it('parses server-sent events split anywhere, as the browser would', async () => {
    await page.goto(registry.url)
    const parsed = await inPage<Record<string, { events: { type: string; data: string }[]; retries: number[] }>>(
      page,
      `(async () => {
        const { SseParser } = await import('/ui/sse.js')
        const run = (chunks) => {
          const events = []
          const retries = []
          const parser = new SseParser({ onEvent: (e) => events.push(e), onRetry: (ms) => retries.push(ms) })
          for (const chunk of chunks) parser.push(chunk)
          return { events, retries }
        }
        return {
          crlfSplit: run(['retry: 1000\\r', '\\n\\r', '\\nevent: snap', 'shot\\r\\ndata: {"a":', '1}\\r\\n\\r', '', '\\n']),
          fields: run([': keep-alive\\n\\n', 'data:one\\ndata: two\\nid: 7\\nretry: soon\\n\\n', 'event: change\\ndata\\n\\n', 'data: never ended']),
          crOnly: run(['event: change\\rdata: x\\r\\r']),
        }
      })()`,
    )
    assert.deepEqual(parsed.crlfSplit, { events: [{ type: 'snapshot', data: '{"a":1}' }], retries: [1000] })
    assert.deepEqual(parsed.fields, {
      events: [
        { type: 'message', data: 'one\ntwo' },
        { type: 'change', data: '' },
      ],
      retries: [],
    })
    assert.deepEqual(parsed.crOnly, { events: [{ type: 'change', data: 'x' }], retries: [] })
  })

  it('asks for the token, and shows no data without one', async () => {
    await page.goto(registry.url)
    await showsTheForm()
    assert.equal(await page.getByRole('heading', { name: 'This registry needs a read token' }).isVisible(), true)
    assert.equal(await page.getByRole('button', { name: 'Show the registry' }).isVisible(), true)
    assert.equal(await inPage(page, 'document.activeElement?.id'), 'token', 'the field has the focus')
    assert.equal(await page.locator('#sign-in-message').isVisible(), false, 'no message before a token is tried')
    await page.screenshot({ path: join(shots, 'sign-in.png'), fullPage: true })
  })

  it('refuses a wrong token, with a message', async () => {
    await tokenField().fill('not-the-read-token')
    await page.getByRole('button', { name: 'Show the registry' }).click()
    const alert = page.getByRole('alert')
    await alert.getByText('The registry did not accept that token').waitFor({ timeout: UI_TIMEOUT_MS })
    await showsTheForm()
    assert.equal(await tokenField().getAttribute('aria-invalid'), 'true')
    assert.equal((await stored()).session, null, 'a refused token is not kept')
  })

  it('shows the instances with the right token, and follows changes live', async () => {
    await tokenField().fill(READER)
    await tokenField().press('Enter')
    await page.locator('body[data-connection="live"][data-auth="token"]').waitFor({ timeout: UI_TIMEOUT_MS })
    for (const id of Object.values(ids)) await row(page, id).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.deepEqual(await shownIds(page), Object.values(ids).sort())
    assert.equal(await form().isVisible(), false)
    assert.equal(await page.locator('#sign-in-message').isVisible(), false)
    assert.equal(await page.getByRole('button', { name: 'Forget token' }).isVisible(), true)

    // Live: a new instance appears without a reload.
    await inPage(page, 'window.__sameDocument = true')
    ids.product2 = await heartbeats.register({ service_name: 'product', url: 'http://127.0.0.1:18182', metadata: { version: '1.4.3' } })
    await row(page, ids.product2).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await inPage(page, 'window.__sameDocument'), true, 'the page was not reloaded')
    assert.equal(await page.locator('#stat-instances').textContent(), '3')

    // The heartbeat refresh reads with the token too, and is answered.
    await page.waitForResponse((response) => new URL(response.url()).pathname === '/services' && response.status() === 200, { timeout: UI_TIMEOUT_MS })
    // The token went only into the Authorization header: never into an address, nor anywhere but
    // this tab's session storage.
    assert.ok(reads.some((read) => read.authorization === `Bearer ${READER}`))
    for (const read of reads) assert.doesNotMatch(read.url, /\?|token/i, read.url)
    assert.doesNotMatch(page.url(), /token/i)
    assert.deepEqual(await stored(), { session: READER, local: 0, cookie: '' })
    assert.equal(await tokenField().inputValue(), '', 'the field does not hold the token')
  })

  it('keeps the token for the session across a reload', async () => {
    await page.reload()
    for (const id of Object.values(ids)) await row(page, id).waitFor({ timeout: UI_TIMEOUT_MS })
    await page.locator('body[data-connection="live"][data-auth="token"]').waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await form().isVisible(), false)
    await page.screenshot({ path: join(shots, 'with-token.png'), fullPage: true })

    // Another tab (here a new browser context) has a session of its own: no token.
    const other = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true })
    try {
      const otherPage = await other.newPage()
      await otherPage.goto(registry.url)
      await otherPage.getByRole('form', { name: 'This registry needs a read token' }).waitFor({ timeout: UI_TIMEOUT_MS })
      assert.equal(await otherPage.locator('#services tr[data-instance-id]').count(), 0)
      await otherPage.screenshot({ path: join(shots, 'phone-sign-in.png'), fullPage: true })
      // On a phone too, with the token: the form, then the data with the forget button, fit.
      await otherPage.getByLabel('Read token', { exact: true }).fill(READER)
      await otherPage.getByRole('button', { name: 'Show the registry' }).click()
      for (const id of Object.values(ids)) await row(otherPage, id).waitFor({ timeout: UI_TIMEOUT_MS })
      await otherPage.getByRole('button', { name: 'Forget token' }).waitFor({ timeout: UI_TIMEOUT_MS })
      const widths = await inPage<{ scroll: number; client: number }>(otherPage, '({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth })')
      assert.ok(widths.scroll <= widths.client, `no horizontal overflow on a phone: ${widths.scroll} > ${widths.client}`)
      await otherPage.screenshot({ path: join(shots, 'phone-with-token.png'), fullPage: true })
    } finally {
      await other.close()
    }
  })

  it('reconnects with the token when the registry restarts', async () => {
    const before = await page.locator('#epoch').textContent()
    await inPage(page, 'window.__sameDocument = true')
    const port = registry.port
    restarting = true
    stopped.push(registry)
    await registry.stop()
    await page.locator('body:not([data-connection="live"])').waitFor({ timeout: UI_TIMEOUT_MS })
    registry = await startRole('registry', { env: { ...registryEnv, PORT: String(port) } })
    await page.locator('body[data-connection="live"][data-auth="token"]').waitFor({ timeout: UI_TIMEOUT_MS + 5000 })
    restarting = false
    await waitFor(async () => (await page.locator('#epoch').textContent()) !== before, { timeoutMs: UI_TIMEOUT_MS, what: 'the new epoch' })
    for (const id of Object.values(ids)) await row(page, id).waitFor({ timeout: UI_TIMEOUT_MS })
    assert.equal(await form().isVisible(), false, 'the token was kept, and accepted again')
    assert.equal(await inPage(page, 'window.__sameDocument'), true, 'the page was not reloaded')
  })

  it('forgets the token when asked, and asks for it again', async () => {
    await inPage(page, 'window.__sameDocument = true')
    await page.getByRole('button', { name: 'Forget token' }).click()
    await showsTheForm()
    assert.equal(await inPage(page, 'window.__sameDocument'), true, 'forgotten in place, not by a reload')
    assert.equal(await page.locator('#epoch').textContent(), '–')
    assert.deepEqual(await stored(), { session: null, local: 0, cookie: '' })
    // Nor after a reload.
    await page.reload()
    await showsTheForm()
    assert.deepEqual(problems, [], 'no console errors or CSP violations')
  })
})
