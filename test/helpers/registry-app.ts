import { buildRegistryApp, type RegistryApp, type RegistryAppOptions } from '../../src/registry/server.ts'
import { silentLogger } from './logger.ts'

let open: RegistryApp[] = []

/**
 * A registry app built in-process (TTL 60 s, no warm-up, silent); `options` override the
 * defaults. A file that uses it calls `afterEach(closeRegistries)`.
 */
export function registry(options: Partial<RegistryAppOptions> = {}): RegistryApp {
  const built = buildRegistryApp({ logger: silentLogger(), ttlMs: 60_000, warmupMs: 0, ...options })
  open.push(built)
  return built
}

/** Closes every registry app `registry()` built since the last call. */
export async function closeRegistries(): Promise<void> {
  const closing = open
  open = []
  await Promise.all(closing.map((r) => r.app.close()))
}
