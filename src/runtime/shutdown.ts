import closeWithGrace from 'close-with-grace'
import type { Logger } from '../lib/logger.ts'

export interface ShutdownStep {
  name: string
  run: () => Promise<unknown> | unknown
}

export interface ShutdownOptions {
  logger: Logger
  /** The whole sequence must finish within this; past it the process exits 1. */
  timeoutMs: number
  steps: () => ShutdownStep[]
  /** Aborted when the process should stop for a reason of its own (its stdout was closed). */
  stop?: AbortSignal
  /** When given, SIGHUP calls this (a reload, as daemons do) instead of stopping the process. */
  onHangup?: () => void
}

export interface Shutdown {
  /**
   * Runs the shutdown now (once; later calls wait for the same run). The process then exits, with
   * `exitCode` (default 0: a requested stop; 1 for a role that cannot run, e.g. refused by the registry).
   */
  close(reason: string, exitCode?: number): Promise<void>
}

/**
 * The one way a role stops. Whatever starts it (SIGTERM, SIGINT or SIGHUP, an uncaught exception or
 * an unhandled rejection, the parent process going away, stdout closing), the same steps run in
 * order, each even if an earlier one failed, and the process exits: 0 after a signal or a
 * requested stop, 1 after a crash, a second signal, or when the steps outlast `timeoutMs`.
 */
export function installShutdown(options: ShutdownOptions): Shutdown {
  const { logger } = options
  let reason = 'requested'
  let code = 0
  let started = false
  let finished: () => void = () => {}
  const done = new Promise<void>((resolve) => (finished = resolve))
  const handle = closeWithGrace(
    {
      delay: options.timeoutMs,
      logger: false,
      onTimeout: (delay: number) => logger.error({ event: 'shutdown_timeout', timeout_ms: delay }, 'shutdown timed out; exiting'),
      onSecondSignal: (signal: string) => logger.warn({ event: 'shutdown_forced', signal }, 'second signal; exiting now'),
      onSecondError: (error: unknown) => logger.fatal({ event: 'crashed', err: error }, 'another uncaught error while shutting down; exiting now'),
      ...(options.onHangup ? { skip: ['SIGHUP'] } : {}),
    },
    async ({ signal, err }) => {
      started = true
      if (err !== undefined) {
        logger.fatal({ event: 'crashed', err }, 'uncaught error; deregistering and exiting')
      } else {
        logger.info({ event: 'shutting_down', reason: signal ?? reason }, 'shutting down')
      }
      for (const step of options.steps()) {
        try {
          await step.run()
        } catch (error) {
          logger.warn({ event: 'shutdown_step_failed', err: error, step: step.name }, 'shutdown step failed')
        }
      }
      logger.info({ event: 'shutdown_complete' }, 'shutdown complete')
      finished()
      // close-with-grace exits 0 after a requested close: a role that could not run exits 1.
      if (code !== 0) process.exit(code)
    },
  )
  const close = (why: string, exitCode = 0): Promise<void> => {
    if (!started) {
      started = true
      reason = why
      code = exitCode
      void handle.close()
    }
    return done
  }
  // Under `npm start` the supervisor is our parent, with an IPC channel: the channel closes when
  // the parent exits, however it exits (kill -9 included), and we go too.
  if (process.send) process.once('disconnect', () => void close('parent process exited'))
  options.stop?.addEventListener('abort', () => void close('stdout closed'), { once: true })
  if (options.onHangup) process.on('SIGHUP', options.onHangup)
  return { close }
}
