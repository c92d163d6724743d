import { http } from './http.ts'

export interface TrafficReport {
  sent: number
  failed: number
  /** Status (or error name) of each failure, for the assertion message. */
  failures: string[]
  /** Ids of the orders answered 201 (as a new order: a replay of a unique key counts as a failure). */
  created: string[]
  latenciesMs: number[]
  p50: number
  p99: number
  max: number
}

const percentile = (sorted: number[], p: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!)

export interface OrderTrafficOptions {
  workers?: number
  maxOrders?: number
  maxMs?: number
  pauseMs?: number
  /**
   * Gives every order its own Idempotency-Key, `<prefix>-<n>`: a new key per order, so each 201 must
   * be a new order (one answered `idempotent-replayed: true` is counted as a failure).
   */
  idempotencyKeyPrefix?: string
}

/**
 * Steady order traffic: `workers` loops each placing one order at a time, until `stop()` or the
 * bounds (count and time) are reached. Every load loop here is bounded. No request is retried:
 * every answer other than a 201 is a failure.
 */
export function orderTraffic(orderUrl: string, productId: string, options: OrderTrafficOptions = {}) {
  const workers = options.workers ?? 2
  const maxOrders = options.maxOrders ?? 20_000
  const deadline = Date.now() + (options.maxMs ?? 120_000)
  const pauseMs = options.pauseMs ?? 5
  let stopped = false
  let sent = 0
  const failures: string[] = []
  const created: string[] = []
  const latencies: number[] = []
  const keyPrefix = options.idempotencyKeyPrefix

  const worker = async () => {
    while (!stopped && sent < maxOrders && Date.now() < deadline) {
      const n = sent++
      const headers: Record<string, string> = keyPrefix === undefined ? {} : { 'idempotency-key': `${keyPrefix}-${n}` }
      const started = performance.now()
      try {
        const response = await http<{ id?: string; code?: string }>('POST', `${orderUrl}/orders`, { product_id: productId, quantity: 3 }, headers)
        if (response.status !== 201) failures.push(`${response.status} ${response.body?.code ?? ''}`)
        else if (keyPrefix !== undefined && response.headers.get('idempotent-replayed') !== 'false') failures.push(`201 replayed for the new key ${headers['idempotency-key']}`)
        else if (typeof response.body.id === 'string') created.push(response.body.id)
        else failures.push('201 without an order id')
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
        created,
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
