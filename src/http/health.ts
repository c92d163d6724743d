import type { App } from './app.ts'

// Documented shapes of the probes' answers (not problems: a readiness probe reads the status).
const Live = { type: 'object', required: ['status'], properties: { status: { type: 'string', const: 'ok' } } } as const
const Readiness = (status: 'ready' | 'not_ready', description: string) =>
  ({
    type: 'object',
    description,
    required: ['status', 'checks'],
    properties: {
      status: { type: 'string', const: status },
      checks: { type: 'object', description: 'Each check: `ok`, or why not', additionalProperties: { type: 'string' } },
      details: { type: 'object', additionalProperties: true },
    },
  }) as const

/** A readiness check answers `true` when healthy, or a short reason why not. */
export type ReadinessCheck = () => boolean | string | Promise<boolean | string>

export interface HealthOptions {
  checks: Record<string, ReadinessCheck>
  isDraining: () => boolean
  /** Facts that do not decide readiness but help an operator (e.g. the registry is unreachable). */
  details?: () => Record<string, unknown>
}

async function runCheck(check: ReadinessCheck): Promise<string> {
  try {
    const result = await check()
    if (result === true) return 'ok'
    return result === false ? 'failing' : result
  } catch (error) {
    return error instanceof Error ? error.message : 'failing'
  }
}

export function registerHealthRoutes(app: App, options: HealthOptions): void {
  app.get('/health/live', { schema: { tags: ['health'], summary: 'Liveness: 200 while the process runs', response: { 200: Live } } }, async () => ({ status: 'ok' as const }))

  const ready = {
    tags: ['health'],
    summary: 'Readiness: 200 when it should get traffic, 503 naming the failing checks',
    response: { 200: Readiness('ready', 'Ready'), 503: Readiness('not_ready', 'Not ready: a check failed, or the instance is draining') },
  }
  app.get('/health/ready', { schema: ready }, async (_request, reply) => {
    const names = Object.keys(options.checks)
    const results = await Promise.all(names.map((name) => runCheck(options.checks[name]!)))
    const checks: Record<string, string> = Object.fromEntries(names.map((name, i) => [name, results[i]!]))
    if (options.isDraining()) checks.draining = 'instance is shutting down'
    const ready = Object.values(checks).every((result) => result === 'ok')
    const details = options.details?.()
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks, ...(details ? { details } : {}) })
  })
}
