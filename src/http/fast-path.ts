import type { IncomingMessage, ServerResponse } from 'node:http'
import type { FastifyInstance } from 'fastify'
import type { Logger } from '../lib/logger.ts'

/**
 * Takes a request before Fastify's routing (returning true) or leaves it (false). One that took
 * it may still hand it to Fastify later through `next`.
 */
export type FastPathHandler = (request: IncomingMessage, response: ServerResponse, next: (request: IncomingMessage, response: ServerResponse) => void) => boolean

/** A way to answer some routes before Fastify, for requests where the framework costs more than the answer. */
export interface FastPath {
  handle: FastPathHandler
  /** The routes it answers, as declared in Fastify (`{ method: 'GET', url: '/discover/:service_name' }`). */
  routes: ReadonlyArray<{ method: string; url: string }>
  /**
   * The hooks whose effect it reproduces, by function name. Any other hook that would run for one
   * of its routes (an auth check, a rate limit, tracing) turns it off, and the route serves.
   */
  honours: ReadonlySet<string>
}

/** Hooks that run for a request; the others (onRoute, onReady, onClose, ...) concern the app. */
const REQUEST_HOOKS = new Set(['onRequest', 'preParsing', 'preValidation', 'preHandler', 'preSerialization', 'onSend', 'onResponse', 'onError', 'onTimeout', 'onRequestAbort'])

interface Recorded {
  /** The instance (plugin context) the hook was added to: it runs for routes of that context and below. */
  owner: object
  label: string
}

const labelOf = (hook: string, fn: unknown) => `${hook}:${(typeof fn === 'function' && fn.name) || 'anonymous'}`

/**
 * Decides, once the app is ready, whether a fast path may serve: only when every hook that would
 * run for its routes is one it honours. It records every hook added to the app (wrapping
 * `addHook`, which plugin contexts inherit) and each fast-path route's own hooks, so a hook added
 * later by anyone, in any plugin, is seen; until the app is ready, nothing is fast.
 */
export class FastPathGuard {
  readonly #fastPath: FastPath
  #enabled = false
  #unhonoured: string[] = []

  constructor(app: FastifyInstance, fastPath: FastPath, logger: Logger) {
    this.#fastPath = fastPath
    const hooks: Recorded[] = []
    const routes: Array<{ owner: object; labels: string[] }> = []
    const addHook = app.addHook
    app.addHook = function (this: FastifyInstance, name: string, fn: unknown) {
      if (REQUEST_HOOKS.has(name)) hooks.push({ owner: this, label: labelOf(name, fn) })
      return (addHook as (this: FastifyInstance, name: string, fn: unknown) => FastifyInstance).call(this, name, fn)
    } as typeof app.addHook
    app.addHook('onRoute', function (this: FastifyInstance, route) {
      const methods = ([] as string[]).concat(route.method)
      if (!fastPath.routes.some((r) => methods.includes(r.method) && r.url === route.url)) return
      const labels: string[] = []
      for (const name of REQUEST_HOOKS) {
        const own = (route as unknown as Record<string, unknown>)[name]
        for (const fn of ([] as unknown[]).concat(own ?? [])) labels.push(labelOf(name, fn))
      }
      routes.push({ owner: this, labels })
    })
    app.addHook('onReady', async () => {
      const applies = (hook: Recorded) => routes.some((route) => hook.owner === route.owner || Object.prototype.isPrototypeOf.call(hook.owner, route.owner))
      const found = [...hooks.filter(applies).map((hook) => hook.label), ...routes.flatMap((route) => route.labels)]
      this.#unhonoured = [...new Set(found.filter((label) => !fastPath.honours.has(label)))]
      this.#enabled = this.#unhonoured.length === 0 && routes.length >= fastPath.routes.length
      if (!this.#enabled) {
        logger.info({ event: 'fast_path_off', hooks: this.#unhonoured }, 'hooks the fast path does not honour run for its routes: the routes serve every request')
      }
    })
  }

  /** Whether requests may take the fast path: the app is ready and nothing it would skip applies. */
  get enabled(): boolean {
    return this.#enabled
  }

  /** The hooks that turned it off (`hook:functionName`). */
  get unhonoured(): readonly string[] {
    return this.#unhonoured
  }

  /**
   * Serves a request: through the fast path when it may and takes it, else through `next`. A fast
   * path that throws costs a slower answer, never a lost one: the route answers instead.
   */
  serve(request: IncomingMessage, response: ServerResponse, next: (request: IncomingMessage, response: ServerResponse) => void, logger: Logger): void {
    if (this.#enabled) {
      try {
        if (this.#fastPath.handle(request, response, next)) return
      } catch (error) {
        routeAnswers(error, request, response, next, logger)
        return
      }
    }
    next(request, response)
  }
}

/**
 * After a fast path failed on a request: the route answers it instead, unless the answer had
 * begun (then the connection is cut: half an answer must not be mistaken for one). For a fast
 * path that fails later than `serve` can see (once a body has arrived), too.
 */
export function routeAnswers(
  error: unknown,
  request: IncomingMessage,
  response: ServerResponse,
  next: (request: IncomingMessage, response: ServerResponse) => void,
  logger: Logger,
): void {
  // The path only, as in every request line: a query string may carry secrets.
  logger.error({ event: 'fast_path_failed', url: request.url?.split('?')[0], err: error }, 'fast path failed; the route answers')
  if (response.headersSent) response.destroy()
  else next(request, response)
}
