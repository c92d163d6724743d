// HTTP from inside the Compose network: only the registry publishes a port, and the host must
// not send traffic to container addresses, so requests to product and order replicas run in a
// container of the project (`podman exec ... node -e`), with the image's own Node.
import { run } from './engine.ts'

export interface HttpCall {
  method?: 'GET' | 'POST' | 'DELETE'
  url: string
  body?: unknown
  timeoutMs?: number
}

export interface HttpAnswer {
  /** 0 when no HTTP answer came (then `error` says why). */
  status: number
  body: unknown
  ms: number
  error?: string
}

const SEND = `
async function send(call) {
  const started = performance.now()
  try {
    const response = await fetch(call.url, {
      method: call.method ?? 'GET',
      headers: call.body === undefined ? undefined : { 'content-type': 'application/json' },
      body: call.body === undefined ? undefined : JSON.stringify(call.body),
      signal: AbortSignal.timeout(call.timeoutMs ?? 20000),
    })
    const text = await response.text()
    let body = text
    try { body = JSON.parse(text) } catch {}
    return { status: response.status, body, ms: Math.round(performance.now() - started) }
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
