import { buildRegistryApp, type RegistryApp, type RegistryAppOptions } from '../../src/registry/server.ts'
import { silentLogger } from './logger.ts'
import type { StoreKind } from './stores.ts'

type Built = ReturnType<typeof buildRegistryApp>

let open: RegistryApp[] = []

/**
 * A registry app built in-process over a fresh store of `kind` (TTL 60 s, no warm-up, silent);
 * `options` override the defaults, and `ttlMs`, `maxInstances` and `maxInstancesPerService` go to
 * the store. A fake `clock` needs the memory store (etcd keeps its own time): the app then builds
 * its memory store on that clock. A file that uses it calls `afterEach(closeRegistries)`; the
 * stores close when the file ends (see stores.ts).
 */
export async function registry(kind: StoreKind, options: Partial<RegistryAppOptions> = {}): Promise<Built> {
  const settings: RegistryAppOptions = { logger: silentLogger(), ttlMs: 60_000, warmupMs: 0, ...options }
  if (settings.clock && kind.name !== 'memory') throw new Error(`a fake clock needs the memory store, not ${kind.name}`)
  if (!settings.store && !settings.clock) {
    settings.store = await kind.make({ ttlMs: settings.ttlMs, maxInstances: settings.maxInstances, maxInstancesPerService: settings.maxInstancesPerService })
  }
  const built = buildRegistryApp(settings)
  open.push(built)
  return built
}

/** Closes every registry app `registry()` built since the last call. */
export async function closeRegistries(): Promise<void> {
  const closing = open
  open = []
  await Promise.all(closing.map((r) => r.app.close()))
}
