export interface JsonResponse<T = unknown> {
  status: number
  headers: Headers
  body: T
  text: string
}

/** A small JSON HTTP helper for tests: never throws on a status, only on a network failure. */
// biome-ignore lint/suspicious/noExplicitAny: tests read answers loosely; their assertions check them
export async function http<T = any>(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<JsonResponse<T>> {
  const merged = new Headers(headers)
  const init: RequestInit = { method, headers: merged, signal: AbortSignal.timeout(15_000) }
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body)
    if (!merged.has('content-type')) merged.set('content-type', 'application/json')
  }
  const response = await fetch(url, init)
  const text = await response.text()
  let parsed: unknown = text
  if (/json/.test(response.headers.get('content-type') ?? '') && text !== '') parsed = JSON.parse(text)
  return { status: response.status, headers: response.headers, body: parsed as T, text }
}
