import type { App } from './app.ts'

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
  app.get('/health/live', async () => ({ status: 'ok' }))

  app.get('/health/ready', async (_request, reply) => {
    const names = Object.keys(options.checks)
    const results = await Promise.all(names.map((name) => runCheck(options.checks[name]!)))
    const checks: Record<string, string> = Object.fromEntries(names.map((name, i) => [name, results[i]!]))
    if (options.isDraining()) checks.draining = 'instance is shutting down'
    const ready = Object.values(checks).every((result) => result === 'ok')
    const details = options.details?.()
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks, ...(details ? { details } : {}) })
  })
}
