// Runs on the load core for bench/footprint.ts: registers `services × perService` instances with
// the registry, then heartbeats every one of them once per interval (a paced, bounded loop over
// keep-alive connections), as that many instances would. Prints `FOOTPRINT {...}` lines:
// `registered` when every instance is in, `measuring` when the warm-up round is over, `done` with
// the counts of the measured window. Instance URLs are loopback addresses (127.x.y.z): nothing
// ever connects to them (no health URL is given).
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { FOOTPRINT_PREFIX } from './footprint.ts'
import { LatencyHistogram } from './histogram.ts'

export interface HeartbeatJob {
  baseUrl: string
  token: string
  services: number
  perService: number
  /** Each instance heartbeats once per this many seconds. */
  intervalSeconds: number
  warmupSeconds: number
  durationSeconds: number
  connections: number
  registerDeadlineSeconds: number
}

export interface HeartbeatResult {
  instances: number
  registerSeconds: number
  targetPerSecond: number
  /** Answered 200 within the measured window, per second of it. */
  achievedPerSecond: number
  ok: number
  /** 404: the registry had evicted the instance; it registered again, as the discovery client does. */
  unknown: number
  failed: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  /** The load generator's own CPU, as a share of one core: near 1 means it may have been the limit. */
  loadCpuFraction: number
}

const job = JSON.parse(process.argv[2] ?? '') as HeartbeatJob
const total = job.services * job.perService
const pool = new Pool(job.baseUrl, { connections: job.connections, pipelining: 1, headersTimeout: 30_000, bodyTimeout: 30_000 })
const headers = { 'content-type': 'application/json', authorization: `Bearer ${job.token}` }
const say = (event: Record<string, unknown>) => process.stdout.write(`${FOOTPRINT_PREFIX}${JSON.stringify(event)}\n`)

/** Instance `i`: service `svc-<i mod services>`, at a loopback address of its own. */
function instance(i: number): { service_name: string; url: string } {
  const n = i + 1
  return { service_name: `svc-${String(i % job.services).padStart(3, '0')}`, url: `http://127.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}:8080` }
}

async function post(path: string, body: unknown): Promise<number> {
  const response = await pool.request({ path, method: 'POST', headers, body: JSON.stringify(body) })
  await response.body.dump()
  return response.statusCode
}

async function register(i: number): Promise<void> {
  const status = await post('/register', instance(i))
  if (status !== 200 && status !== 201) throw new Error(`POST /register answered ${status} for instance ${i}`)
}

// 1. Register every instance, `connections` at a time, within the deadline.
const registerStart = performance.now()
const registerDeadline = registerStart + job.registerDeadlineSeconds * 1000
let next = 0
await Promise.all(
  Array.from({ length: job.connections }, async () => {
    for (let i = next++; i < total; i = next++) {
      if (performance.now() > registerDeadline) throw new Error(`registered only ${i} of ${total} instances within ${job.registerDeadlineSeconds} s`)
      await register(i)
    }
  }),
)
const registerSeconds = (performance.now() - registerStart) / 1000
say({ event: 'registered', instances: total, seconds: registerSeconds })

// 2. Heartbeats: heartbeat k is due at start + k / rate, for instance k mod total, so each instance
// beats once per interval. A round of warm-up, then the measured window; counted by completion.
const rate = total / job.intervalSeconds
const start = performance.now()
const measureFrom = start + job.warmupSeconds * 1000
const end = measureFrom + job.durationSeconds * 1000
const latencies = new LatencyHistogram()
let ok = 0
let unknown = 0
let failed = 0
let cpuAtMeasure: NodeJS.CpuUsage | undefined
const measuring = setTimeout(() => {
  cpuAtMeasure = process.cpuUsage()
  say({ event: 'measuring' })
}, measureFrom - start)

let beat = 0
await Promise.all(
  Array.from({ length: job.connections }, async () => {
    for (;;) {
      const k = beat++
      const due = start + (k * 1000) / rate
      if (due >= end) return
      const wait = due - performance.now()
      if (wait > 1) await sleep(wait)
      const sent = performance.now()
      let status: number
      try {
        status = await post('/heartbeat', { ...instance(k % total), status: 'up' })
      } catch {
        status = 0
      }
      const done = performance.now()
      const counted = done >= measureFrom && done <= end
      if (status === 404) {
        // Evicted (its heartbeat came later than the TTL): register again, as a real client does.
        if (counted) unknown += 1
        await register(k % total).catch(() => {
          if (counted) failed += 1
        })
      } else if (status !== 200) {
        if (counted) failed += 1
      } else if (counted) {
        ok += 1
        latencies.record(done - sent)
      }
    }
  }),
)
clearTimeout(measuring)
const cpu = process.cpuUsage(cpuAtMeasure)
const windowSeconds = (performance.now() - Math.max(measureFrom, start)) / 1000
const result: HeartbeatResult = {
  instances: total,
  registerSeconds,
  targetPerSecond: rate,
  achievedPerSecond: ok / job.durationSeconds,
  ok,
  unknown,
  failed,
  p50Ms: latencies.percentile(50),
  p99Ms: latencies.percentile(99),
  maxMs: latencies.max,
  loadCpuFraction: (cpu.user + cpu.system) / 1e6 / windowSeconds,
}
say({ event: 'done', result })
await pool.close()
