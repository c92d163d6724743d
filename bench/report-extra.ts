import type { GatewayRow } from './gateway.ts'
import type { PropagationResult } from './watch.ts'

const ms = (value: number) => `${value.toFixed(1)} ms`
const pad = (cells: string[][]) => {
  const widths = cells[0]!.map((_, k) => Math.max(...cells.map((row) => row[k]!.length)))
  return cells.map((row) => row.map((cell, k) => (k === 0 ? cell.padEnd(widths[k]!) : cell.padStart(widths[k]!))).join('  ')).join('\n')
}

/** Watch propagation, with polling every second as the baseline. */
export function renderPropagation(results: readonly PropagationResult[]): string {
  const poll = results.find((r) => r.mode === 'poll')
  const rows = [['watchers', 'how', 'updates', 'p50', 'p99', 'max', 'p50 vs polling', 'p99 vs polling']]
  for (const r of results) {
    rows.push([
      String(r.watchers),
      r.mode === 'watch' ? 'blocking queries' : r.mode === 'poll' ? 'polling every 1 s' : 'etcd: written on replica A, watched on B',
      String(r.samples),
      ms(r.p50Ms),
      ms(r.p99Ms),
      ms(r.maxMs),
      poll ? `${(r.p50Ms / poll.p50Ms).toFixed(2)}x` : '-',
      poll ? `${(r.p99Ms / poll.p99Ms).toFixed(2)}x` : '-',
    ])
  }
  return `propagation of a registration or removal to every watcher (from the write's start to each watcher's answer):\n${pad(rows)}`
}

/** The gateway against nginx and the instance itself; aim: the gateway at 0.6x nginx or better. */
export function renderGateway(rows: readonly GatewayRow[]): string {
  const direct = rows.find((r) => r.target === 'product directly')
  const nginx = rows.find((r) => r.target === 'nginx')
  const table = [['GET /products/{id} via', 'req/s', 'p50', 'p99', 'vs direct', 'vs nginx', 'p99 vs nginx']]
  for (const r of rows) {
    table.push([
      r.target,
      r.requestsPerSecond.toFixed(0),
      ms(r.p50Ms),
      ms(r.p99Ms),
      direct ? `${(r.requestsPerSecond / direct.requestsPerSecond).toFixed(2)}x` : '-',
      nginx ? `${(r.requestsPerSecond / nginx.requestsPerSecond).toFixed(2)}x` : '-',
      nginx ? `${(r.p99Ms / nginx.p99Ms).toFixed(2)}x` : '-',
    ])
  }
  const gateway = rows.find((r) => r.target === 'gateway')
  const aim =
    gateway && nginx
      ? `aim: gateway >= 0.6x nginx req/s: ${(gateway.requestsPerSecond / nginx.requestsPerSecond).toFixed(3)}x, ${gateway.requestsPerSecond / nginx.requestsPerSecond >= 0.6 ? 'met' : 'NOT met'}`
      : 'aim: gateway >= 0.6x nginx req/s: not measured (nginx missing)'
  return `gateway (servers share core 0: the product instance, and nginx or the gateway in front of it):\n${pad(table)}\n${aim}`
}
