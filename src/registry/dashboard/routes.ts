import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { basename, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyReply } from 'fastify'
import type { App } from '../../http/app.ts'

// The registry dashboard: a page at `/` and `/ui` and its files under `/ui/`. Plain HTML, CSS and
// JavaScript modules read from this folder at start-up (no build step, nothing from the network;
// the modules import each other by relative URL, so they resolve under `/ui/`); the page follows
// the registry's change stream `GET /events` itself.

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

// What the page may load from this folder, by extension: its modules, styles and icon. The rest
// (index.html, served at `/` and `/ui`; this module; tsconfig.json) is not served.
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
}

// A plain file name becomes a route: nothing the router would read as a parameter or wildcard,
// and no dot file.
const SERVABLE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/

// Compiled into dist/, this module is routes.js beside the page's modules: server code, which the
// page does not load.
const THIS_FILE = basename(fileURLToPath(import.meta.url))

interface Asset {
  body: Buffer
  type: string
  etag: string
}

// The files are read once, here: only what the folder held at start-up is ever served, each at a
// route of its own (so no name from a request reaches the file system).
function readAssets(dir: string): { page: string; assets: Map<string, Asset> } {
  const page = readFileSync(join(dir, 'index.html'), 'utf8')
  const assets = new Map<string, Asset>()
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const type = CONTENT_TYPES[extname(entry.name)]
    if (type === undefined || !entry.isFile() || !SERVABLE_NAME.test(entry.name) || entry.name === THIS_FILE) continue
    const body = readFileSync(join(dir, entry.name))
    assets.set(entry.name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` })
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
