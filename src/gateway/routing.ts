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
