import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyReply } from 'fastify'
import type { App } from '../../http/app.ts'

// The registry dashboard: a page at `/` and `/ui` and its files under `/ui/`. Plain HTML, CSS and
// JavaScript read from this folder at start-up (no build step, nothing from the network); the
// page follows the registry's change stream `GET /events` itself.

export interface DashboardOptions {
  /** The registry's TTL, shown on the page and used to count down each instance's expiry. */
  ttlMs: number
  /** Where the page's files are; default: this module's folder. */
  assetsDir?: string
}

// No inline script or style, nothing from elsewhere, and no HTML built from strings in the page
// (Trusted Types with no policy: assigning a string to innerHTML throws).
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ')

const SECURITY_HEADERS = {
  'content-security-policy': DASHBOARD_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
}

const ASSETS = {
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
} as const

interface Asset {
  body: Buffer
  type: string
  etag: string
}

function readAssets(dir: string): { page: string; assets: Map<string, Asset> } {
  const page = readFileSync(join(dir, 'index.html'), 'utf8')
  const assets = new Map<string, Asset>()
  for (const [name, type] of Object.entries(ASSETS)) {
    const body = readFileSync(join(dir, name))
    assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` })
  }
  return { page, assets }
}

export function registerDashboard(app: App, options: DashboardOptions): void {
  if (!(options.ttlMs > 0)) throw new RangeError(`ttlMs must be a positive number, got ${options.ttlMs}`)
  const dir = options.assetsDir ?? fileURLToPath(new URL('.', import.meta.url))
  let files: ReturnType<typeof readAssets>
  try {
    files = readAssets(dir)
  } catch (error) {
    // A build that left the files behind must not stop the registry itself: say so, serve no page.
    app.log.warn({ event: 'dashboard_unavailable', dir, err: error }, 'dashboard files not found; the dashboard is not served')
    return
  }
  const { page, assets } = files
  const ttl = String(Math.round(options.ttlMs))

  // The page carries the TTL and the registry's clock (so that ages do not depend on the
  // browser's clock); both are numbers, so the substitution cannot inject markup.
  const servePage = async (_request: unknown, reply: FastifyReply) =>
    reply
      .headers(SECURITY_HEADERS)
      .header('cache-control', 'no-store')
      .type('text/html; charset=utf-8')
      .send(page.replaceAll('{{TTL_MS}}', ttl).replaceAll('{{SERVER_TIME}}', String(Date.now())))

  app.get('/', servePage)
  app.get('/ui', servePage)

  for (const [name, asset] of assets) {
    app.get(`/ui/${name}`, async (request, reply) => {
      reply.headers(SECURITY_HEADERS).header('cache-control', 'no-cache').header('etag', asset.etag)
      if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send()
      return reply.type(asset.type).send(asset.body)
    })
  }
}
