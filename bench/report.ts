import { readFileSync } from 'node:fs'
import { availableParallelism, cpus, release } from 'node:os'
import type { LoadResult } from './load.ts'

export type CaseName = 'discover' | 'heartbeat'
export type ServerName = 'bare node:http' | 'registry' | 'registry (V8 defaults)' | 'registry (etcd)'

export interface Run extends LoadResult {
  case: CaseName
  server: ServerName
}

export interface Measurement extends Run {
  /** Against the bare server in the same case; 1 for the bare server itself. */
  requestsPerSecondRatio: number
  p99Ratio: number
}

export interface Aim {
  case: CaseName
  metric: 'req/s vs bare' | 'p99 vs bare'
  comparison: '>=' | '<='
  target: number
  actual: number
  met: boolean
}

export interface Machine {
  cpuModel: string
  cores: number
  node: string
  kernel: string
}

/** The targets from the issue: the registry's overhead over bare node:http, per case. */
const AIMS: readonly Omit<Aim, 'actual' | 'met'>[] = [
  { case: 'discover', metric: 'req/s vs bare', comparison: '>=', target: 0.9 },
  { case: 'heartbeat', metric: 'req/s vs bare', comparison: '>=', target: 0.8 },
  { case: 'discover', metric: 'p99 vs bare', comparison: '<=', target: 1.5 },
  { case: 'heartbeat', metric: 'p99 vs bare', comparison: '<=', target: 1.5 },
]

export function machine(): Machine {
  let cpuModel = cpus()[0]?.model ?? 'unknown'
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'))
    if (line) cpuModel = line.slice(line.indexOf(':') + 1).trim()
  } catch {
    // Not Linux: os.cpus() is the best there is.
  }
  return { cpuModel, cores: availableParallelism(), node: process.version, kernel: release() }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** One row per case and server: each figure the median of its rounds (just the run, for one round). */
export function medians(runs: readonly Run[]): Run[] {
  const groups = new Map<string, Run[]>()
  for (const run of runs) {
    const key = `${run.case}\n${run.server}`
    groups.set(key, [...(groups.get(key) ?? []), run])
  }
  return [...groups.values()].map((group) => {
    const first = group[0]!
    const figure = (pick: (run: Run) => number) => median(group.map(pick))
    return {
      case: first.case,
      server: first.server,
      requestsPerSecond: figure((r) => r.requestsPerSecond),
      requests: figure((r) => r.requests),
      p50Ms: figure((r) => r.p50Ms),
      p99Ms: figure((r) => r.p99Ms),
      maxMs: figure((r) => r.maxMs),
      // Failed requests abort the benchmark, but sum them rather than hide any.
      errors: group.reduce((sum, r) => sum + r.errors, 0),
      timeouts: group.reduce((sum, r) => sum + r.timeouts, 0),
      non2xx: group.reduce((sum, r) => sum + r.non2xx, 0),
      serverCpuPercent: figure((r) => r.serverCpuPercent),
      serverCpuMicrosPerRequest: figure((r) => r.serverCpuMicrosPerRequest),
      otherLoadOnServerCorePercent: figure((r) => r.otherLoadOnServerCorePercent),
      loadCpuPercent: figure((r) => r.loadCpuPercent),
    }
  })
}

export function withRatios(results: readonly Run[]): Measurement[] {
  return results.map((result) => {
    const bare = results.find((other) => other.case === result.case && other.server === 'bare node:http')
    return {
      ...result,
      requestsPerSecondRatio: bare ? result.requestsPerSecond / bare.requestsPerSecond : Number.NaN,
      p99Ratio: bare ? result.p99Ms / bare.p99Ms : Number.NaN,
    }
  })
}

export function aims(measurements: readonly Measurement[]): Aim[] {
  return AIMS.flatMap((aim) => {
    const registry = measurements.find((m) => m.case === aim.case && m.server === 'registry')
    if (!registry) return []
    const actual = aim.metric === 'req/s vs bare' ? registry.requestsPerSecondRatio : registry.p99Ratio
    return [{ ...aim, actual, met: aim.comparison === '>=' ? actual >= aim.target : actual <= aim.target }]
  })
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  // Text columns left-aligned, numbers right-aligned.
  const format = (row: readonly string[]) => row.map((cell, column) => (column < 2 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ')
  const [header, ...body] = rows
  return [format(header!), widths.map((width) => '-'.repeat(width)).join('  '), ...body.map(format)].join('\n')
}

export function renderTable(measurements: readonly Measurement[]): string {
  const rows = measurements.map((m) => [
    m.case,
    m.server,
    Math.round(m.requestsPerSecond).toString(),
    m.p50Ms.toFixed(2),
    m.p99Ms.toFixed(2),
    `${m.requestsPerSecondRatio.toFixed(2)}x`,
    `${m.p99Ratio.toFixed(2)}x`,
    `${Math.round(m.serverCpuPercent)}%`,
    m.serverCpuMicrosPerRequest.toFixed(1),
    `${Math.round(m.otherLoadOnServerCorePercent)}%`,
    `${Math.round(m.loadCpuPercent)}%`,
  ])
  const header = ['case', 'server', 'req/s', 'p50 ms', 'p99 ms', 'req/s vs bare', 'p99 vs bare', 'server CPU', 'server µs/req', 'others on core', 'loadgen CPU']
  return table([header, ...rows])
}

/**
 * One server against another in the same run, per case: `subject` over `baseline` for req/s, p99
 * and the server's CPU per request (the etcd store against the memory store; the registry as run
 * against V8's default flags).
 */
export function renderComparison(title: string, measurements: readonly Measurement[], subject: ServerName, baseline: ServerName): string {
  const lines = [title]
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`
  for (const name of ['discover', 'heartbeat'] as const) {
    const over = measurements.find((m) => m.case === name && m.server === subject)
    const under = measurements.find((m) => m.case === name && m.server === baseline)
    if (!over || !under) continue
    lines.push(
      `  ${name.padEnd(9)}  req/s ${ratio(over.requestsPerSecond, under.requestsPerSecond)}, p99 ${ratio(over.p99Ms, under.p99Ms)}, server µs/req ${ratio(over.serverCpuMicrosPerRequest, under.serverCpuMicrosPerRequest)}`,
    )
  }
  return lines.join('\n')
}

export function renderAims(results: readonly Aim[]): string {
  return results.map((aim) => `  ${aim.met ? 'met    ' : 'NOT met'}  ${aim.case} ${aim.metric} ${aim.comparison} ${aim.target}x: ${aim.actual.toFixed(2)}x`).join('\n')
}
