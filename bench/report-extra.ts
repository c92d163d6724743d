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

/** The aims of issue 13: the gateway at >= 0.7x nginx's req/s, with a p99 <= 1.5x nginx's. */
const GATEWAY_AIMS = { throughput: 0.7, p99: 1.5 } as const

/** The gateway against nginx and the instance itself, with the aims. */
export function renderGateway(rows: readonly GatewayRow[]): string {
  const direct = rows.find((r) => r.target === 'product directly')
  const nginx = rows.find((r) => r.target === 'nginx')
  const table = [['GET /products/{id} via', 'req/s', 'p50', 'p99', 'vs direct', 'vs nginx', 'p99 vs nginx', 'server µs/req', 'others on core']]
  for (const r of rows) {
    table.push([
      r.target,
      r.requestsPerSecond.toFixed(0),
      ms(r.p50Ms),
      ms(r.p99Ms),
      direct ? `${(r.requestsPerSecond / direct.requestsPerSecond).toFixed(2)}x` : '-',
      nginx ? `${(r.requestsPerSecond / nginx.requestsPerSecond).toFixed(2)}x` : '-',
      nginx ? `${(r.p99Ms / nginx.p99Ms).toFixed(2)}x` : '-',
      r.serverCpuMicrosPerRequest.toFixed(1),
      `${Math.round(r.otherLoadOnServerCorePercent)}%`,
    ])
  }
  const gateway = rows.find((r) => r.target === 'gateway')
  const verdict = (met: boolean) => (met ? 'met' : 'NOT met')
  let aims: string
  if (gateway && nginx) {
    const throughput = gateway.requestsPerSecond / nginx.requestsPerSecond
    const p99 = gateway.p99Ms / nginx.p99Ms
    aims = [
      `aim: gateway >= ${GATEWAY_AIMS.throughput}x nginx req/s: ${throughput.toFixed(3)}x, ${verdict(throughput >= GATEWAY_AIMS.throughput)}`,
      `aim: gateway p99 <= ${GATEWAY_AIMS.p99}x nginx's: ${p99.toFixed(3)}x, ${verdict(p99 <= GATEWAY_AIMS.p99)}`,
    ].join('\n')
  } else {
    aims = 'aims: gateway against nginx not measured (nginx missing)'
  }
  // server µs/req: the proxy's own CPU per request (the instance behind it spends its own besides).
  return `gateway (servers share core 0: the product instance, and nginx or the gateway in front of it; server µs/req is the proxy's own CPU):\n${pad(table)}\n${aims}`
}
