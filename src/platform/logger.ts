import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

export interface LoggerOptions {
  level: LevelWithSilent
  /** `pretty` for people (colour, one short line), `json` for machines. */
  format?: 'json' | 'pretty'
  /** Static fields on every line, e.g. the role and port. */
  base?: Record<string, unknown>
  destination?: NodeJS.WritableStream
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
  if (options.format === 'pretty') {
    return pino({ ...settings, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } })
  }
  return pino(settings)
}
