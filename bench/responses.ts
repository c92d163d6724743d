// What the bare server replays: the registry's own answers, captured at run time, so that both
// servers send the same bytes even as the registry's wire format changes.

export interface CapturedResponse {
  status: number
  /** Header name and value pairs, without those node:http writes itself (date, connection, ...). */
  headers: [string, string][]
  body: string
  /** The Keep-Alive timeout the server announced, in seconds; node:http writes that header itself. */
  keepAliveSeconds: number | undefined
}

export interface BareConfig {
  discoverPath: string
  discover: CapturedResponse
  heartbeat: CapturedResponse
}

export const BARE_CONFIG_ENV = 'BENCH_BARE_CONFIG'

// node:http adds these itself (content-length from the body we pass): replaying them would double them.
const MANAGED_BY_NODE = new Set(['date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding'])

export async function capture(response: Response): Promise<CapturedResponse> {
  const headers: [string, string][] = []
  response.headers.forEach((value, name) => {
    if (!MANAGED_BY_NODE.has(name)) headers.push([name, value])
  })
  const keepAlive = /timeout=(\d+)/.exec(response.headers.get('keep-alive') ?? '')
  return { status: response.status, headers, body: await response.text(), keepAliveSeconds: keepAlive ? Number(keepAlive[1]) : undefined }
}

function isCaptured(value: unknown): value is CapturedResponse {
  if (typeof value !== 'object' || value === null) return false
  const { status, headers, body, keepAliveSeconds } = value as Record<string, unknown>
  return (
    typeof status === 'number' &&
    typeof body === 'string' &&
    (keepAliveSeconds === undefined || typeof keepAliveSeconds === 'number') &&
    Array.isArray(headers) &&
    headers.every((pair) => Array.isArray(pair) && pair.length === 2 && pair.every((part) => typeof part === 'string'))
  )
}

export function parseBareConfig(text: string | undefined): BareConfig {
  const value: unknown = JSON.parse(text ?? 'null')
  if (typeof value === 'object' && value !== null) {
    const { discoverPath, discover, heartbeat } = value as Record<string, unknown>
    if (typeof discoverPath === 'string' && isCaptured(discover) && isCaptured(heartbeat)) return { discoverPath, discover, heartbeat }
  }
  throw new Error(`${BARE_CONFIG_ENV} must hold {discoverPath, discover, heartbeat}`)
}
