import { type Env, type Role, loadAllConfig, loadGatewayConfig, loadRegistryConfig, loadServiceConfig } from './config/index.ts'
import { buildGateway } from './gateway/main.ts'
import { telemetryFromEnv, traceLogFields, type Telemetry } from './http/telemetry.ts'
import { createLogger, type Logger, type LoggerOptions, wantsColor } from './lib/logger.ts'
import { buildRegistry } from './registry/server.ts'
import { buildOrderService } from './services/order/main.ts'
import { buildProductService } from './services/product/main.ts'
import { runAll } from './supervisor.ts'

/** LOG_FORMAT, or pretty on a terminal and JSON lines everywhere else. */
function formatFor(format: 'json' | 'pretty' | undefined): 'json' | 'pretty' {
  return format ?? (process.stdout.isTTY ? 'pretty' : 'json')
}

/**
 * The role's logger, and a signal that fires when its stdout is closed (the role then stops).
 * Traced, every line written while serving a request carries the request's trace and span ids.
 */
function output(
  role: Role,
  config: { logLevel: LoggerOptions['level']; logFormat: 'json' | 'pretty' | undefined },
  telemetry: Telemetry,
  env: Env,
): { logger: Logger; stop: AbortSignal; telemetry: Telemetry } {
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
      await (await buildRegistry(config, output(role, config, telemetryFromEnv(env), env))).start()
      return
    }
    case 'product': {
      const config = loadServiceConfig(env, role)
      const service = await buildProductService(config, output(role, config, telemetryFromEnv(env), env))
      await service.start()
      return
    }
    case 'order': {
      const config = loadServiceConfig(env, role)
      const service = await buildOrderService(config, output(role, config, telemetryFromEnv(env), env))
      await service.start()
      return
    }
    case 'gateway': {
      const config = loadGatewayConfig(env)
      const service = await buildGateway(config, output(role, config, telemetryFromEnv(env), env))
      await service.start()
      return
    }
    case 'all': {
      // Check every variable the children will read, so a mistake is reported once, up front.
      loadRegistryConfig(env)
      loadServiceConfig(env, 'product')
      loadGatewayConfig(env)
      await runAll(loadAllConfig(env), env)
      return
    }
  }
}
