// One load run, in its own process (started by bench/load.ts, pinned to the load core): a
// discarded warm-up, then the measured run. Prints one `LOAD_RESULT {...}` line.
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import autocannon from 'autocannon'
import { LatencyHistogram } from './histogram.ts'
import { RESULT_PREFIX, type LoadJob, type LoadResult } from './load.ts'

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

/** User plus system CPU seconds of a process, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces, hence the last ')'): state is the 1st,
  // utime the 12th and stime the 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / job.clockTicksPerSecond
}

/** Busy and total time of one core so far, in ticks, from /proc/stat. */
function coreTicks(core: number): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${core} `))
  if (!line) return { busy: 0, total: 0 }
  // user nice system idle iowait irq softirq steal ...: idle and iowait are the idle ones.
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number)
  const total = ticks.reduce((sum, value) => sum + value, 0)
  return { busy: total - (ticks[3] ?? 0) - (ticks[4] ?? 0), total }
}

// The warm-up lets the JIT optimise both sides and opens the connections; its numbers are dropped.
if (job.warmupSeconds > 0) await autocannon(options(job.warmupSeconds))

// autocannon's own percentiles are whole milliseconds, too coarse to compare sub-millisecond
// latencies; each response's hrtime-based duration is recorded here at 10 µs resolution instead.
const latencies = new LatencyHistogram()
const serverCpuBefore = cpuSeconds(job.serverPid)
const coreBefore = coreTicks(job.serverCore)
const ownCpuBefore = process.cpuUsage()
const startedAt = performance.now()
const run = autocannon(options(job.durationSeconds))
run.on('response', (_client, _status, _bytes, responseTimeMs) => latencies.record(responseTimeMs))
const measured = await run
const wallSeconds = (performance.now() - startedAt) / 1000
const ownCpu = process.cpuUsage(ownCpuBefore)
const serverCpu = cpuSeconds(job.serverPid) - serverCpuBefore
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
