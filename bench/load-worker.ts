// One load run, in its own process (started by bench/load.ts, pinned to the load core): a
// discarded warm-up, then the measured run. Prints one `LOAD_RESULT {...}` line.
import { performance } from 'node:perf_hooks'
import autocannon from 'autocannon'
import { LatencyHistogram } from './histogram.ts'
import { RESULT_PREFIX, type LoadJob, type LoadResult } from './load.ts'
import { coreTicks, cpuSeconds } from './proc.ts'

const job = JSON.parse(process.argv[2] ?? '') as LoadJob

const options = (durationSeconds: number): autocannon.Options => ({
  url: job.url,
  method: job.method,
  headers: job.headers,
  ...(job.body === undefined ? {} : { body: job.body }),
  connections: job.connections,
  duration: durationSeconds,
  timeout: 10,
})

// The warm-up lets the JIT optimise both sides and opens the connections; its numbers are dropped.
if (job.warmupSeconds > 0) await autocannon(options(job.warmupSeconds))

// autocannon's own percentiles are whole milliseconds, too coarse to compare sub-millisecond
// latencies; each response's hrtime-based duration is recorded here at 10 µs resolution instead.
const latencies = new LatencyHistogram()
const serverCpuBefore = cpuSeconds(job.serverPid, job.clockTicksPerSecond)
const coreBefore = coreTicks(job.serverCore)
const ownCpuBefore = process.cpuUsage()
const startedAt = performance.now()
const run = autocannon(options(job.durationSeconds))
run.on('response', (_client, _status, _bytes, responseTimeMs) => latencies.record(responseTimeMs))
const measured = await run
const wallSeconds = (performance.now() - startedAt) / 1000
const ownCpu = process.cpuUsage(ownCpuBefore)
const serverCpu = cpuSeconds(job.serverPid, job.clockTicksPerSecond) - serverCpuBefore
const coreAfter = coreTicks(job.serverCore)
const coreBusyPercent = ((coreAfter.busy - coreBefore.busy) / Math.max(1, coreAfter.total - coreBefore.total)) * 100
const serverCpuPercent = (serverCpu / wallSeconds) * 100

const result: LoadResult = {
  requestsPerSecond: measured.requests.average,
  requests: measured.requests.total,
  p50Ms: latencies.percentile(50),
  p99Ms: latencies.percentile(99),
  maxMs: latencies.max,
  errors: measured.errors,
  timeouts: measured.timeouts,
  non2xx: measured.non2xx,
  serverCpuPercent,
  serverCpuMicrosPerRequest: (serverCpu * 1e6) / Math.max(1, measured.requests.total),
  otherLoadOnServerCorePercent: Math.max(0, coreBusyPercent - serverCpuPercent),
  loadCpuPercent: ((ownCpu.user + ownCpu.system) / 1e6 / wallSeconds) * 100,
}
process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`)
