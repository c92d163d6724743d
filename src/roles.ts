import { type Env, type Role, loadAllConfig, loadRegistryConfig, loadServiceConfig } from './config/index.ts'
import { createLogger } from './platform/logger.ts'
import { handleSignals } from './platform/shutdown.ts'
import { startRegistry } from './registry/server.ts'
import { startOrderService } from './services/order/main.ts'
import { startProductService } from './services/product/main.ts'
import { runAll } from './supervisor.ts'

export async function runRole(role: Role, env: Env): Promise<void> {
  switch (role) {
    case 'registry': {
      const config = loadRegistryConfig(env)
      const logger = createLogger({ level: config.logLevel, base: { role, port: config.port } })
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
      const logger = createLogger({ level: config.logLevel, base: { role, port: config.port } })
      await (role === 'product' ? startProductService(config, logger) : startOrderService(config, logger))
      return
    }
    case 'all': {
      // Check every variable the children will read, so a mistake is reported once, up front.
      loadRegistryConfig(env)
      loadServiceConfig(env, 'product')
      await runAll(loadAllConfig(env), env)
      return
    }
  }
}
