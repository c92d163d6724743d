import type { App } from '../http/app.ts'
import type { Telemetry } from '../http/telemetry.ts'
import { causeChain, errorCode } from '../lib/errors.ts'
import type { Logger } from '../lib/logger.ts'
import { flushCompileCache } from './node-flags.ts'
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

/** Exit code of a role that could not listen because its port is taken: a supervisor does not restart it. */
export const EXIT_PORT_IN_USE = 3

/** The role could not listen: its port (or another it needs) is in use. Already logged, once. */
export class PortInUseError extends Error {
  readonly port: number
  readonly host: string
  constructor(message: string, port: number, host: string, cause: unknown) {
    super(message, { cause })
    this.name = 'PortInUseError'
    this.port = port
    this.host = host
  }
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
  // Fastify logs a line per network interface ("Server listening at ..."; three on a host with
  // two networks). The role's own `listening` line says it once, with an address a person can open.
  const level = role.app.log.level
  if (role.app.log.levelVal < role.app.log.levels.values.warn!) role.app.log.level = 'warn'
  try {
    await role.app.listen({ host: role.host, port: role.port })
  } catch (error) {
    if (errorCode(error) !== 'EADDRINUSE') throw error
    const message = `port ${role.port} is already in use on ${role.host}: stop what uses it, or set PORT to a free port`
    role.logger.fatal({ event: 'port_in_use', port: role.port, host: role.host, variable: 'PORT' }, message)
    throw new PortInUseError(message, role.port, role.host, error)
  } finally {
    role.app.log.level = level
  }
  const address = role.app.server.address()
  const port = typeof address === 'object' && address ? address.port : role.port
  try {
    await role.listening?.(port)
  } catch (error) {
    // Another port the role needs (the registry's DNS port) is taken: what failed has said which
    // port and which variable moves it.
    const inUse = causeChain(error).find((e) => errorCode(e) === 'EADDRINUSE') as (Error & { port?: number }) | undefined
    if (inUse) throw new PortInUseError(error instanceof Error ? error.message : String(error), inUse.port ?? port, role.host, error)
    throw error
  }
  // Every module the role needs is loaded by now: the next process to start finds them compiled.
  flushCompileCache()
  return { port, shutdown: shutdown.close }
}
