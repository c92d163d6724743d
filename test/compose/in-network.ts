// HTTP from inside the Compose network: only the gateway (and the registry, on 127.0.0.1) publish
// a port, and the host must not send traffic to container addresses, so requests to product and
// order replicas run in a container of the project (`podman exec ... node -e`), or in a new
// container on its network (`podman run`), with the image's own Node.
import { run } from './engine.ts'

export interface HttpCall {
  method?: 'GET' | 'POST' | 'DELETE'
  url: string
  body?: unknown
  headers?: Record<string, string>
  timeoutMs?: number
}

export interface HttpAnswer {
  /** 0 when no HTTP answer came (then `error` says why). */
  status: number
  body: unknown
  ms: number
  /** The answer's headers (names in lower case); absent when no answer came. */
  headers?: Record<string, string>
  error?: string
}

const SEND = `
async function send(call) {
  const started = performance.now()
  try {
    const response = await fetch(call.url, {
      method: call.method ?? 'GET',
      headers: { ...(call.body === undefined ? {} : { 'content-type': 'application/json' }), ...call.headers },
      body: call.body === undefined ? undefined : JSON.stringify(call.body),
      signal: AbortSignal.timeout(call.timeoutMs ?? 20000),
    })
    const text = await response.text()
    let body = text
    try { body = JSON.parse(text) } catch {}
    return { status: response.status, body, ms: Math.round(performance.now() - started), headers: Object.fromEntries(response.headers) }
  } catch (error) {
    const code = error?.cause?.code ?? error?.name ?? 'Error'
    return { status: 0, body: null, ms: Math.round(performance.now() - started), error: code + ': ' + (error?.cause?.message ?? error?.message) }
  }
}
`

const BATCH = `${SEND}
const answers = []
for (const call of JSON.parse(process.argv[1])) answers.push(await send(call))
process.stdout.write(JSON.stringify(answers))
`

/** Sends HTTP requests from inside one container of the project. */
export class InNetworkClient {
  readonly container: string

  constructor(container: string) {
    this.container = container
  }

  async send(calls: HttpCall[], timeoutMs = 120_000): Promise<HttpAnswer[]> {
    const result = await run('podman', ['exec', this.container, 'node', '--input-type=module', '-e', BATCH, JSON.stringify(calls)], { timeoutMs })
    return JSON.parse(result.stdout) as HttpAnswer[]
  }

  async one(call: HttpCall): Promise<HttpAnswer> {
    const [answer] = await this.send([call])
    if (!answer) throw new Error(`no answer for ${call.method ?? 'GET'} ${call.url}`)
    return answer
  }
}

/**
 * Sends HTTP requests from a new container on `network` (removed when done): one that has none of
 * the deployment's secrets, as any other workload on that network would be.
 */
export async function sendFromNewContainer(
  options: { image: string; network: string; labels: Record<string, string> },
  calls: HttpCall[],
  timeoutMs = 120_000,
): Promise<HttpAnswer[]> {
  const labels = Object.entries(options.labels).flatMap(([name, value]) => ['--label', `${name}=${value}`])
  const result = await run(
    'podman',
    ['run', '--rm', '--network', options.network, '--no-healthcheck', ...labels, '--entrypoint', 'node', options.image, '--input-type=module', '-e', BATCH, JSON.stringify(calls)],
    { timeoutMs },
  )
  return JSON.parse(result.stdout) as HttpAnswer[]
}
