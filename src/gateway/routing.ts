/** One entry of the gateway's routing table: a path prefix and the service behind it. */
export interface Route {
  prefix: string
  service: string
}

export const DEFAULT_ROUTES = '/products=product,/orders=order'

/**
 * Parses `GATEWAY_ROUTES` (`/products=product,/orders=order`); returns undefined when malformed.
 * A prefix matches itself and everything below it (`/products` and `/products/42`).
 */
export function parseRoutes(text: string): Route[] | undefined {
  const routes: Route[] = []
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const match = /^(\/[A-Za-z0-9._~-]+(?:\/[A-Za-z0-9._~-]+)*)=([a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?)$/.exec(part)
    if (!match) return undefined
    routes.push({ prefix: match[1]!, service: match[2]! })
  }
  const prefixes = routes.map((r) => r.prefix)
  return routes.length > 0 && new Set(prefixes).size === prefixes.length ? routes : undefined
}

/** The path and query of a request the gateway may forward (the query without its `?`). */
export interface UpstreamTarget {
  path: string
  query: string
}

// Percent-decodings looked through: `%252e` is `%2e` once decoded and `.` twice. A path still
// encoded after that many is refused: no client needs it, and some server might decode it again.
const MAX_DECODINGS = 3
/** Control characters, and `#`, which no request target may hold (a URL parser drops what follows it). */
function hasForbidden(path: string): boolean {
  for (let i = 0; i < path.length; i++) {
    const code = path.charCodeAt(i)
    if (code < 0x20 || code === 0x7f || code === 0x23) return true
  }
  return false
}

/** Why this form of the path is refused, or undefined. */
function refusalOf(path: string): string | undefined {
  if (path.includes('\\')) return 'The path must not contain a backslash'
  if (hasForbidden(path)) return 'The path must not contain control characters or #'
  // A `..` in or at either end of a segment, not only a whole one: a server that splits segments
  // on something else (`;`) may still resolve it.
  if (path.includes('/..') || path.includes('../')) return 'The path must not contain dot segments'
  if (path.endsWith('/.') || path.includes('/./')) return 'The path must not contain dot segments'
  return undefined
}

/**
 * Where a request for a route goes upstream, or why it must not go (the answer is then 400).
 * Only an origin-form target (`/products/42?q=1`; not `http://host/products`) under the route's
 * prefix is forwarded, and only when its path, as sent and after each of up to three
 * percent-decodings, holds no backslash, no `.` or `..` segment and no control character: the
 * forms that a URL parser (the proxy's own, or the upstream's) may resolve to a path outside the
 * route, such as the service's /metrics. Finally the path as the URL parser resolves it, which is
 * what the upstream receives, must still be under the prefix. The query passes as it is: it is
 * the upstream's to read.
 */
export function upstreamTarget(url: string, prefix: string): UpstreamTarget | { refused: string } {
  if (!url.startsWith('/')) return { refused: 'The request target must be a path (origin-form), not an absolute URL' }
  const mark = url.indexOf('?')
  const path = mark < 0 ? url : url.slice(0, mark)
  const query = mark < 0 ? '' : url.slice(mark + 1)
  let current = path
  for (let decodings = 0; ; decodings++) {
    const refusal = refusalOf(current)
    if (refusal) return { refused: refusal }
    if (!current.includes('%')) break
    let decoded: string
    try {
      decoded = decodeURIComponent(current)
    } catch {
      return { refused: 'The path holds a malformed percent-encoding' }
    }
    if (decoded === current) break
    if (decodings === MAX_DECODINGS) return { refused: 'The path is percent-encoded too many times' }
    current = decoded
  }
  // Without a `.` or a `%` there is nothing for the URL parser to resolve (backslashes and control
  // characters were refused above): the path is what the upstream receives, and the parse, a
  // visible part of a proxied request's cost, is skipped.
  const resolved = path.includes('.') || path.includes('%') ? new URL(path, 'http://upstream.invalid').pathname : path
  if (resolved !== prefix && !resolved.startsWith(`${prefix}/`)) return { refused: `The path is not under ${prefix}` }
  return { path, query }
}
