import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { spawnPinned } from './processes.ts'

// The orchestrator's side of a load run: the worker (bench/load-worker.ts) runs autocannon in its
// own process, on its own core, so that generating load never competes with the server measured.

export interface LoadRequest {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
}

export interface LoadJob extends LoadRequest {
  connections: number
  warmupSeconds: number
  durationSeconds: number
  /** The server's process, whose CPU time the worker samples over the measured run. */
  serverPid: number
  /** The core the server is pinned to, to tell how much of it other processes took. */
  serverCore: number
  clockTicksPerSecond: number
}

export interface LoadResult {
  requestsPerSecond: number
  requests: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  errors: number
  timeouts: number
  non2xx: number
  /** Share of one core the server used while measured: near 100 means the server was the bottleneck. */
  serverCpuPercent: number
  /**
   * The server's CPU time per request. Unlike req/s it barely moves when other processes share
   * the machine, so it is the steadier measure of the server's own cost.
   */
  serverCpuMicrosPerRequest: number
  /** Share of the server's core used by anything else (other processes, interrupts): noise. */
  otherLoadOnServerCorePercent: number
  /** Same for the load generator: near 100 means it, not the server, may have been the limit. */
  loadCpuPercent: number
}

const WORKER = fileURLToPath(new URL('./load-worker.ts', import.meta.url))
export const RESULT_PREFIX = 'LOAD_RESULT '

/** Ticks per second of /proc/<pid>/stat times (almost always 100). */
export function clockTicksPerSecond(): number {
  const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
  return Number.isInteger(value) && value > 0 ? value : 100
}

/** Runs one warm-up plus one measured run with the worker pinned to `core`; throws on failed requests. */
export async function runLoad(label: string, core: number, job: LoadJob): Promise<LoadResult> {
  const worker = spawnPinned(`load generator (${label})`, core, [WORKER, JSON.stringify(job)], process.env)
  // The deadline is the run itself plus generous slack for start-up and the connections' timeout.
  const deadlineMs = (job.warmupSeconds + job.durationSeconds + 30) * 1000
  const result = await worker.waitForLine((line) => (line.startsWith(RESULT_PREFIX) ? (JSON.parse(line.slice(RESULT_PREFIX.length)) as LoadResult) : undefined), deadlineMs)
  await worker.exited
  if (result.errors > 0 || result.timeouts > 0 || result.non2xx > 0) {
    throw new Error(
      `${label}: ${result.non2xx} non-2xx answers, ${result.errors} errors, ${result.timeouts} timeouts out of ${result.requests} requests; ` +
        'the numbers would not describe successful requests, so the benchmark stops here',
    )
  }
  return result
}
