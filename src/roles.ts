import { type Env, type Role, loadAllConfig, loadGatewayConfig, loadRegistryConfig, loadServiceConfig } from './config/index.ts'
import type { Telemetry } from './http/telemetry.ts'
import { createLogger, type Logger, type LoggerOptions, wantsColor } from './lib/logger.ts'

// Each role's code is imported only by the role that runs it (below): a process loads one role's
// modules and packages, not all four (the registry needs no SQL driver, the supervisor of
// `npm start` no Fastify, no tracing API). See bench/footprint.ts.

/** LOG_FORMAT, or pretty on a terminal and JSON lines everywhere else. */
function formatFor(format: 'json' | 'pretty' | undefined): 'json' | 'pretty' {
  return format ?? (process.stdout.isTTY ? 'pretty' : 'json')
}

/**
 * The role's logger, and a signal that fires when its stdout is closed (the role then stops).
 * Traced, every line written while serving a request carries the request's trace and span ids.
 */
async function output(
  role: Role,
  config: { logLevel: LoggerOptions['level']; logFormat: 'json' | 'pretty' | undefined },
  env: Env,
): Promise<{ logger: Logger; stop: AbortSignal; telemetry: Telemetry }> {
  const { telemetryFromEnv, traceLogFields } = await import('./http/telemetry.ts')
  const telemetry = telemetryFromEnv(env)
  const closed = new AbortController()
  const logger = createLogger({
    level: config.logLevel,
    format: formatFor(config.logFormat),
    colors: wantsColor(env),
    base: { role },
    onOutputClosed: () => closed.abort(),
    ...(telemetry.enabled ? { mixin: traceLogFields } : {}),
  })
  return { logger, stop: closed.signal, telemetry }
}

/** Every role runs the same way: build it (nothing listens yet), then start it. */
export async function runRole(role: Role, env: Env): Promise<void> {
  switch (role) {
    case 'registry': {
      const config = loadRegistryConfig(env)
      const { buildRegistry } = await import('./registry/server.ts')
      await (await buildRegistry(config, await output(role, config, env))).start()
      return
    }
    case 'product': {
      const config = loadServiceConfig(env, role)
      const { buildProductService } = await import('./services/product/main.ts')
      const service = await buildProductService(config, await output(role, config, env))
      await service.start()
      return
    }
    case 'order': {
      const config = loadServiceConfig(env, role)
      const { buildOrderService } = await import('./services/order/main.ts')
      const service = await buildOrderService(config, await output(role, config, env))
      await service.start()
      return
    }
    case 'gateway': {
      const config = loadGatewayConfig(env)
      const { buildGateway } = await import('./gateway/main.ts')
      const service = await buildGateway(config, await output(role, config, env))
      await service.start()
      return
    }
    case 'all': {
      // Check every variable the children will read, so a mistake is reported once, up front.
      loadRegistryConfig(env)
      loadServiceConfig(env, 'product')
      loadGatewayConfig(env)
      const { runAll } = await import('./supervisor.ts')
      await runAll(loadAllConfig(env), env)
      return
    }
  }
}
