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
}

export interface Shutdown {
  /** Runs the shutdown now (once; later calls wait for the same run). The process then exits. */
  close(reason: string): Promise<void>
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
    },
  )
  const close = (why: string): Promise<void> => {
    if (!started) {
      started = true
      reason = why
      void handle.close()
    }
    return done
  }
  // Under `npm start` the supervisor is our parent, with an IPC channel: the channel closes when
  // the parent exits, however it exits (kill -9 included), and we go too.
  if (process.send) process.once('disconnect', () => void close('parent process exited'))
  options.stop?.addEventListener('abort', () => void close('stdout closed'), { once: true })
  return { close }
}
