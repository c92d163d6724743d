// Runs on the load core: N watchers of one service on the registry, either long-polling
// (blocking queries) or polling once a second (the baseline), and a writer that registers and
// deregisters an instance; prints how long each change took to reach each watcher.
// Usage: watch-worker.ts <registry base URL> <watch|poll|replicas> <watchers> <rounds> [write URL]
// `replicas`: blocking queries on the first registry, writes to another (etcd replicas).
import { Pool } from 'undici'
import { JSON_HEADERS, READ_HEADERS } from './servers.ts'

const [baseUrl = '', mode = 'watch', watchersArg = '1000', roundsArg = '10', writeUrl = baseUrl] = process.argv.slice(2)
const WATCHERS = Number(watchersArg)
const ROUNDS = Number(roundsArg)
const SERVICE = 'watched'
const POLL_MS = 1000
const pool = new Pool(baseUrl, { connections: WATCHERS + 4, pipelining: 1, headersTimeout: 120_000, bodyTimeout: 120_000 })
const writer = writeUrl === baseUrl ? pool : new Pool(writeUrl, { connections: 2 })

interface View {
  index: number
  epoch: string
  count: number
}

async function discover(query: string): Promise<View> {
  const response = await pool.request({ path: `/discover/${SERVICE}${query}`, method: 'GET', headers: READ_HEADERS })
  const body = (await response.body.json()) as { instances: unknown[] }
  return { index: Number(response.headers['x-registry-index']), epoch: String(response.headers['x-registry-epoch']), count: body.instances.length }
}

async function write(path: string, body: unknown): Promise<void> {
  const response = await writer.request({ path, method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(body) })
  await response.body.dump()
  if (response.statusCode >= 300) throw new Error(`POST ${path} answered ${response.statusCode}`)
}

async function parkedWatchers(): Promise<number> {
  const response = await pool.request({ path: '/metrics', method: 'GET', headers: READ_HEADERS })
  const text = await response.body.text()
  return Number(/registry_watchers\{kind="blocking_query"[^}]*\} (\d+)/.exec(text)?.[1] ?? 0)
}

let stopped = false
// What each watcher currently sees (instance count), and when it first saw each count.
const seenAt: Array<Map<number, number>> = Array.from({ length: WATCHERS }, () => new Map())

async function watcher(k: number, start: View): Promise<void> {
  let view = start
  while (!stopped) {
    const next =
      mode !== 'poll'
        ? await discover(`?index=${view.index}&epoch=${view.epoch}&wait=60s`)
        : await new Promise<View>((resolve, reject) => setTimeout(() => void discover('').then(resolve, reject), POLL_MS))
    if (next.count !== view.count && !seenAt[k]!.has(next.count)) seenAt[k]!.set(next.count, performance.now())
    view = next
  }
}

const percentile = (sorted: readonly number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0

async function main(): Promise<void> {
  const first = await discover('')
  // Pollers start spread over one period, as independent clients would be.
  for (let k = 0; k < WATCHERS; k++) {
    const delay = mode === 'poll' ? (k / WATCHERS) * POLL_MS : 0
    setTimeout(
      () =>
        void watcher(k, first).catch((error: unknown) => {
          if (!stopped) throw error
        }),
      delay,
    )
  }
  const samples: number[] = []
  for (let round = 0; round < ROUNDS; round++) {
    if (mode !== 'poll') {
      const deadline = Date.now() + 30_000
      while ((await parkedWatchers()) < WATCHERS && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    } else {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS))
    }
    const count = round % 2 === 0 ? 1 : 0 // register, then deregister, alternately
    for (const map of seenAt) map.delete(count)
    const started = performance.now()
    if (count === 1) await write('/register', { service_name: SERVICE, url: 'http://127.0.0.1:59999' })
    else await write('/deregister', { service_name: SERVICE, url: 'http://127.0.0.1:59999' })
    const deadline = Date.now() + 30_000
    while (seenAt.some((map) => !map.has(count)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    for (const map of seenAt) {
      const at = map.get(count)
      if (at !== undefined) samples.push(at - started)
    }
  }
  stopped = true
  const sorted = samples.sort((a, b) => a - b)
  const summary = { mode, watchers: WATCHERS, changes: ROUNDS, samples: sorted.length, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted.at(-1) ?? 0 }
  // Exit without waiting for the parked long polls: the registry sees the connections close.
  process.stdout.write(`WATCH_RESULT ${JSON.stringify(summary)}\n`, () => process.exit(0))
}

void main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
  process.exit(1)
})
