import type { Logger } from './logger.ts'

export interface ShutdownStep {
  name: string
  run: () => Promise<unknown> | unknown
}

export interface ShutdownOptions {
  logger: Logger
  /** The whole sequence must finish within this; past it the process exits 1. */
  timeoutMs: number
  steps: () => ShutdownStep[]
  exit?: (code: number) => void
}

/**
 * Runs the shutdown steps in order on SIGTERM or SIGINT, each one even if an earlier one failed,
 * and exits 0 when all are done. A second signal, or the deadline, exits at once with 1.
 */
export function handleSignals(options: ShutdownOptions): { trigger: (reason: string) => Promise<void> } {
  const exit = options.exit ?? ((code: number) => process.exit(code))
  let started: Promise<void> | undefined

  const trigger = (reason: string): Promise<void> => {
    if (started) return started
    options.logger.info({ reason }, 'shutting down')
    const deadline = setTimeout(() => {
      options.logger.error({ timeout_ms: options.timeoutMs }, 'shutdown timed out; exiting')
      exit(1)
    }, options.timeoutMs)
    deadline.unref()
    started = (async () => {
      for (const step of options.steps()) {
        try {
          await step.run()
        } catch (error) {
          options.logger.warn({ err: error, step: step.name }, 'shutdown step failed')
        }
      }
      clearTimeout(deadline)
      options.logger.info('shutdown complete')
      exit(0)
    })()
    return started
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (started) {
        options.logger.warn({ signal }, 'second signal; exiting now')
        exit(1)
        return
      }
      void trigger(signal)
    })
  }
  return { trigger }
}
