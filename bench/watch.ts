import { fileURLToPath } from 'node:url'
import { spawnPinned } from './processes.ts'

// Watch propagation: how long a registration or removal takes to reach 1,000 watching clients,
// measured with blocking queries and, as the baseline, with clients polling once a second.

const WORKER = fileURLToPath(new URL('./watch-worker.ts', import.meta.url))

export interface PropagationResult {
  /** `replicas`: blocking queries on one etcd registry replica, the writes on another. */
  mode: 'watch' | 'poll' | 'replicas'
  watchers: number
  changes: number
  samples: number
  p50Ms: number
  p99Ms: number
  maxMs: number
}

export async function measurePropagation(
  baseUrl: string,
  core: number,
  mode: PropagationResult['mode'],
  watchers: number,
  rounds: number,
  writeUrl = baseUrl,
): Promise<PropagationResult> {
  const worker = spawnPinned(`watchers (${mode})`, core, [WORKER, baseUrl, mode, String(watchers), String(rounds), writeUrl], process.env)
  const result = await worker.waitForLine((line) => (line.startsWith('WATCH_RESULT ') ? (JSON.parse(line.slice(13)) as PropagationResult) : undefined), (rounds * 35 + 30) * 1000)
  await worker.exited
  if (result.samples < watchers * rounds) {
    throw new Error(`${mode}: only ${result.samples} of ${watchers * rounds} watcher updates arrived within the deadline`)
  }
  return result
}
