import type { App } from '../http/app.ts'
import type { Telemetry } from '../http/telemetry.ts'
import type { Logger } from '../lib/logger.ts'
import { installShutdown, type ShutdownStep } from './shutdown.ts'

/** What every role is built with, besides its options: where it logs, how it traces, when to stop. */
export interface RoleRuntime {
  logger: Logger
  telemetry: Telemetry
  /** Aborted when the process should stop by itself (its stdout was closed). */
  stop?: AbortSignal
}

/** What every role gives the runtime to run it: an app already built, and how it starts and stops. */
export interface RoleStart {
  app: App
  logger: Logger
  host: string
  port: number
  shutdownTimeoutMs: number
  /** Aborted when the process should stop by itself (its stdout was closed). */
  stop?: AbortSignal
  /** Once the server listens on `port`: start what needs the address (registration, timers). */
  listening?: (port: number) => Promise<void> | void
  /** The steps of a graceful stop, in order; the server's own close is one of them. */
  shutdownSteps: () => ShutdownStep[]
  /** SIGHUP calls this (a reload) instead of stopping the role. */
  onHangup?: () => void
}

export interface RunningRole {
  port: number
  /** Stops the role as a signal would, then exits the process (with `exitCode`, default 0). */
  shutdown: (reason: string, exitCode?: number) => Promise<void>
}

/**
 * The second half of every role's lifecycle (the first is building its app, which tests drive with
 * `inject()`): install the one shutdown path, listen, then start what needs the address.
 */
export async function startRole(role: RoleStart): Promise<RunningRole> {
  const shutdown = installShutdown({
    logger: role.logger,
    timeoutMs: role.shutdownTimeoutMs,
    steps: role.shutdownSteps,
    stop: role.stop,
    ...(role.onHangup ? { onHangup: role.onHangup } : {}),
  })
  await role.app.listen({ host: role.host, port: role.port })
  const address = role.app.server.address()
  const port = typeof address === 'object' && address ? address.port : role.port
  await role.listening?.(port)
  return { port, shutdown: shutdown.close }
}
