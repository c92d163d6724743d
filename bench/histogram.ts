/**
 * Latencies in fixed 10 µs buckets up to 2 s, so memory stays bounded (800 KB) whatever the run's
 * length; the rare slower ones are kept exactly. Percentiles are nearest-rank, reported as the
 * bucket's upper edge: never lower than the true value, at most 10 µs higher.
 */
export class LatencyHistogram {
  static readonly BUCKET_MS = 0.01
  static readonly BUCKETS = 200_000

  readonly #counts = new Uint32Array(LatencyHistogram.BUCKETS)
  readonly #slow: number[] = []
  #count = 0
  max = 0

  record(ms: number): void {
    const bucket = Math.floor(ms / LatencyHistogram.BUCKET_MS)
    if (bucket < LatencyHistogram.BUCKETS) this.#counts[bucket]! += 1
    else this.#slow.push(ms)
    this.#count += 1
    if (ms > this.max) this.max = ms
  }

  percentile(p: number): number {
    if (this.#count === 0) return Number.NaN
    const rank = Math.max(1, Math.ceil((p / 100) * this.#count))
    let seen = 0
    for (let bucket = 0; bucket < LatencyHistogram.BUCKETS; bucket += 1) {
      seen += this.#counts[bucket]!
      if (seen >= rank) return (bucket + 1) * LatencyHistogram.BUCKET_MS
    }
    const slow = [...this.#slow].sort((a, b) => a - b)
    return slow[rank - seen - 1] ?? this.max
  }
}
