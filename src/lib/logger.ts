import { createRequire } from 'node:module'
import { pino, type Logger, type LevelWithSilent } from 'pino'
import { errorCode } from './errors.ts'

export type { Logger }

export interface LoggerOptions {
  level: LevelWithSilent
  /** `pretty` for people (colour, one short line), `json` for machines. */
  format?: 'json' | 'pretty'
  /** Static fields on every line, e.g. the role and port. */
  base?: Record<string, unknown>
  /** Where lines go instead of stdout (tests). */
  destination?: NodeJS.WritableStream
  /**
   * Told once when stdout is closed under us (EPIPE: the reader, e.g. the supervisor or `| head`,
   * is gone). Later lines are dropped; a process that cannot report anything should stop.
   */
  onOutputClosed?: () => void
}

// JSON lines on stdout; one object per event, never multi-line text, so that log shippers and
// `jq` read them as they are.
export function createLogger(options: LoggerOptions): Logger {
  const settings = {
    level: options.level,
    base: { pid: process.pid, ...options.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  }
  if (options.destination) return pino(settings, options.destination)
  // pino's own stdout stream: asynchronous, flushed at exit, and on EPIPE it drops every later
  // write instead of retrying. We only listen for that moment, to stop.
  const stdout = pino.destination({ dest: 1, sync: false })
  stdout.on('error', (error: unknown) => {
    if (errorCode(error) === 'EPIPE') options.onOutputClosed?.()
  })
  if (options.format === 'pretty') {
    // In this thread, not as a pino transport: a transport's worker writes through the main
    // thread, which deadlocks when the main thread waits for it at exit with stdout gone. Loaded
    // only when asked for: production (JSON) never pays for it.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty')
    return pino(settings, pretty.build({ destination: stdout, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }))
  }
  return pino(settings, stdout)
}
