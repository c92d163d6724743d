import { type Env, type Role, loadAllConfig, loadGatewayConfig, loadRegistryConfig, loadServiceConfig } from './config/index.ts'
import { startGateway } from './gateway/main.ts'
import { createLogger } from './platform/logger.ts'
import { telemetryFromEnv } from './platform/telemetry.ts'
import { handleSignals } from './platform/shutdown.ts'
import { startRegistry } from './registry/server.ts'
import { startOrderService } from './services/order/main.ts'
import { startProductService } from './services/product/main.ts'
import { runAll } from './supervisor.ts'

/** LOG_FORMAT, or pretty on a terminal and JSON lines everywhere else. */
function formatFor(format: 'json' | 'pretty' | undefined): 'json' | 'pretty' {
  return format ?? (process.stdout.isTTY ? 'pretty' : 'json')
}

export async function runRole(role: Role, env: Env): Promise<void> {
  switch (role) {
    case 'registry': {
      const config = loadRegistryConfig(env)
      const logger = createLogger({ level: config.logLevel, format: formatFor(config.logFormat), base: { role } })
      const registry = await startRegistry(config, logger)
      handleSignals({
        logger,
        timeoutMs: config.shutdownTimeoutSeconds * 1000,
        steps: () => [{ name: 'close server', run: registry.close }],
      })
      if (process.send) process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'))
      return
    }
    case 'product':
    case 'order': {
      const config = loadServiceConfig(env, role)
      const logger = createLogger({ level: config.logLevel, format: formatFor(config.logFormat), base: { role } })
      const telemetry = telemetryFromEnv(env)
      await (role === 'product' ? startProductService(config, logger, telemetry) : startOrderService(config, logger, telemetry))
      return
    }
    case 'gateway': {
      const config = loadGatewayConfig(env)
      const logger = createLogger({ level: config.logLevel, format: formatFor(config.logFormat), base: { role } })
      await startGateway(config, logger, telemetryFromEnv(env))
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
