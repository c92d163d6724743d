import type { RegistryConfig } from '../config/index.ts'
import { buildApp, type App } from '../platform/app.ts'
import { registerHealthRoutes } from '../platform/health.ts'
import type { Logger } from '../platform/logger.ts'
import { MemoryStore, type Clock } from './memory-store.ts'
import { registerRegistryRoutes } from './routes.ts'
import type { RegistryStore } from './store.ts'

export interface RegistryAppOptions {
  logger: Logger
  ttlMs: number
  clock?: Clock
  store?: RegistryStore
}

export interface RegistryApp {
  app: App
  store: RegistryStore
  /** Evicts expired instances once and logs each; the sweeper calls this on an interval. */
  sweep: () => void
}

export function buildRegistryApp(options: RegistryAppOptions): RegistryApp {
  const store = options.store ?? new MemoryStore({ ttlMs: options.ttlMs, clock: options.clock })
  const app = buildApp({ logger: options.logger })
  let draining = false
  app.addHook('preClose', async () => {
    draining = true
  })

  registerRegistryRoutes(app, {
    store,
    onRegistered: (instance, created) =>
      options.logger.info(
        { event: created ? 'registered' : 're-registered', service_name: instance.serviceName, instance_id: instance.id, url: instance.url },
        created ? 'instance registered' : 'instance re-registered',
      ),
    onDeregistered: (instance) =>
      options.logger.info({ event: 'deregistered', service_name: instance.serviceName, instance_id: instance.id, url: instance.url }, 'instance deregistered'),
  })
  registerHealthRoutes(app, { checks: {}, isDraining: () => draining })

  const sweep = () => {
    for (const instance of store.evictExpired()) {
      options.logger.info(
        {
          event: 'evicted',
          service_name: instance.serviceName,
          instance_id: instance.id,
          url: instance.url,
          last_heartbeat: new Date(instance.lastHeartbeat).toISOString(),
        },
        'instance evicted: no heartbeat within the TTL',
      )
    }
  }
  return { app, store, sweep }
}

/** How often the sweeper runs: a quarter of the TTL, between 50 ms and 5 s. */
export function sweepIntervalMs(ttlMs: number): number {
  return Math.min(5000, Math.max(50, ttlMs / 4))
}

export async function startRegistry(config: RegistryConfig, logger: Logger): Promise<{ app: App; url: string; close: () => Promise<void> }> {
  const ttlMs = config.ttlSeconds * 1000
  const registry = buildRegistryApp({ logger, ttlMs })
  const timer = setInterval(registry.sweep, sweepIntervalMs(ttlMs))
  timer.unref()
  registry.app.addHook('onClose', async () => clearInterval(timer))
  await registry.app.listen({ host: config.host, port: config.port })
  const address = registry.app.server.address()
  const port = typeof address === 'object' && address ? address.port : config.port
  logger.info({ event: 'listening', port, ttl_seconds: config.ttlSeconds }, `registry listening on ${config.host}:${port}`)
  return { app: registry.app, url: `http://127.0.0.1:${port}`, close: () => registry.app.close() }
}
