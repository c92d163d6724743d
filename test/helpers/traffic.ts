import { http } from './http.ts'

export interface TrafficReport {
  sent: number
  failed: number
  /** Status (or error name) of each failure, for the assertion message. */
  failures: string[]
  latenciesMs: number[]
  p50: number
  p99: number
  max: number
}

const percentile = (sorted: number[], p: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!)

/**
 * Steady order traffic: `workers` loops each placing one order at a time, until `stop()` or the
 * bounds (count and time) are reached. Every load loop here is bounded.
 */
export function orderTraffic(orderUrl: string, productId: string, options: { workers?: number; maxOrders?: number; maxMs?: number; pauseMs?: number } = {}) {
  const workers = options.workers ?? 2
  const maxOrders = options.maxOrders ?? 20_000
  const deadline = Date.now() + (options.maxMs ?? 120_000)
  const pauseMs = options.pauseMs ?? 5
  let stopped = false
  let sent = 0
  const failures: string[] = []
  const latencies: number[] = []

  const worker = async () => {
    while (!stopped && sent < maxOrders && Date.now() < deadline) {
      sent++
      const started = performance.now()
      try {
        const response = await http('POST', `${orderUrl}/orders`, { product_id: productId, quantity: 3 })
        if (response.status !== 201) failures.push(`${response.status} ${(response.body as { code?: string })?.code ?? ''}`)
      } catch (error) {
        failures.push(error instanceof Error ? error.message : String(error))
      }
      latencies.push(performance.now() - started)
      await new Promise((resolve) => setTimeout(resolve, pauseMs))
    }
  }
  const running = Promise.all(Array.from({ length: workers }, worker))

  return {
    get sent() {
      return sent
    },
    /** Waits until at least `count` more orders have been answered. */
    async ordersFromNow(count: number): Promise<void> {
      const target = latencies.length + count
      while (latencies.length < target && !stopped && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    },
    async stop(): Promise<TrafficReport> {
      stopped = true
      await running
      const sorted = [...latencies].sort((a, b) => a - b)
      return {
        sent: latencies.length,
        failed: failures.length,
        failures,
        latenciesMs: latencies,
        p50: percentile(sorted, 50),
        p99: percentile(sorted, 99),
        max: sorted.at(-1) ?? 0,
      }
    },
  }
}

export function describeReport(name: string, report: TrafficReport): string {
  return `${name}: sent ${report.sent}, failed ${report.failed}, p50 ${report.p50.toFixed(1)} ms, p99 ${report.p99.toFixed(1)} ms, max ${report.max.toFixed(1)} ms`
}
