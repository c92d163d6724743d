import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

// Prometheus metrics of one process. Labels are route templates, service names and instance
// ids: bounded sets, never raw URLs.

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/**
 * A request count for a hot path: one integer increment per request instead of prom-client's
 * label hashing, folded into `http_requests_total` when /metrics is scraped.
 */
export class HotCount<L extends string = 'method' | 'route' | 'status'> {
  readonly labels: Readonly<Record<L, string | number>>
  #pending = 0

  constructor(labels: Readonly<Record<L, string | number>>) {
    this.labels = labels
  }

  inc(): void {
    this.#pending++
  }

  take(): number {
    const n = this.#pending
    this.#pending = 0
    return n
  }
}

/**
 * A prom-client counter that, at scrape time, adds what hot paths counted in plain numbers (a
 * label set shows once it has been counted, as with prom-client's own increments).
 */
function foldingCounter<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[], counts: readonly HotCount<L>[]): Counter<L> {
  return new Counter<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect(this: Counter<L>) {
      for (const count of counts) {
        const n = count.take()
        if (n > 0) this.inc(count.labels as Partial<Record<L, string | number>>, n)
      }
    },
  })
}

export class Metrics {
  readonly registry = new Registry()
  readonly #hot: HotCount[] = []
  readonly httpRequests: Counter<'method' | 'route' | 'status'>
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>
  readonly upstreamRequests: Counter<'service' | 'instance' | 'outcome'>
  readonly upstreamDuration: Histogram<'service' | 'outcome'>

  constructor(role: string) {
    this.registry.setDefaultLabels({ role })
    collectDefaultMetrics({ register: this.registry })
    this.httpRequests = foldingCounter(this.registry, 'http_requests_total', 'HTTP requests served, by method, route template and status', ['method', 'route', 'status'], this.#hot)
    this.httpDuration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'Time to serve an HTTP request, by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      buckets: DURATION_BUCKETS,
      registers: [this.registry],
    })
    this.upstreamRequests = new Counter({
      name: 'upstream_requests_total',
      help: 'Calls to other services, by target service, instance id and outcome',
      labelNames: ['service', 'instance', 'outcome'],
      registers: [this.registry],
    })
    this.upstreamDuration = new Histogram({
      name: 'upstream_request_duration_seconds',
      help: 'Duration of calls to other services, by target service and outcome',
      labelNames: ['service', 'outcome'],
      buckets: DURATION_BUCKETS,
      registers: [this.registry],
    })
  }

  /** A count of http_requests_total for one label set, kept in a plain number (hot paths). */
  hotRequestCount(labels: Readonly<Record<'method' | 'route' | 'status', string | number>>): HotCount {
    const count = new HotCount(labels)
    this.#hot.push(count)
    return count
  }

  /**
   * A counter for hot paths: each label set is counted in a plain number and added to the
   * prom-client counter at scrape time (its per-increment label hashing costs microseconds).
   */
  hotCounter<L extends string>(name: string, help: string, labelNames: readonly L[]): (labels: Readonly<Record<L, string | number>>) => HotCount<L> {
    const counts: HotCount<L>[] = []
    foldingCounter(this.registry, name, help, labelNames, counts)
    return (labels) => {
      const count = new HotCount<L>(labels)
      counts.push(count)
      return count
    }
  }

  counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] })
  }

  gauge<L extends string>(name: string, help: string, labelNames: readonly L[], collect?: (gauge: Gauge<L>) => void): Gauge<L> {
    return new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      ...(collect
        ? {
            collect(this: Gauge<L>) {
              collect(this)
            },
          }
        : {}),
    })
  }
}
