import { createRequire } from 'node:module'
import { pino, type Logger, type LevelWithSilent } from 'pino'
import SonicBoomModule, { type SonicBoom } from 'sonic-boom'
import { errorCode } from './errors.ts'

export type { Logger }

// CommonJS: the class is the module itself (the typings also name an export that does not exist).
const SonicBoomClass = SonicBoomModule as unknown as typeof SonicBoom

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
  /** Fields added to every line when it is written (e.g. the ids of the trace being served). */
  mixin?: () => Record<string, unknown>
}

// JSON lines on stdout; one object per event, never multi-line text, so that log shippers and
// `jq` read them as they are.
export function createLogger(options: LoggerOptions): Logger {
  const settings = {
    level: options.level,
    base: { pid: process.pid, ...options.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
    ...(options.mixin ? { mixin: options.mixin } : {}),
  }
  if (options.destination) return pino(settings, options.destination)
  const stdout = stdoutStream(options.onOutputClosed)
  if (options.format === 'pretty') {
    // In this thread, not as a pino transport: a transport's worker writes through the main
    // thread, which deadlocks when the main thread waits for it at exit with stdout gone. Loaded
    // only when asked for: production (JSON) never pays for it.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty')
    return pino(settings, pretty.build({ destination: stdout, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }))
  }
  return pino(settings, stdout)
}

/**
 * Standard output, written asynchronously. When its reader goes away (EPIPE), every later line is
 * dropped and each `onClosed` is told once. Flushed at exit, and a flush that cannot write gives
 * up: sonic-boom 4 (pino's own) retried a broken pipe forever in `flushSync`, so a process whose
 * supervisor was killed hung at exit, deaf to SIGTERM. Version 5 throws instead. There is one
 * fd 1 per process, so one stream for every logger made here.
 */
let stdout: { stream: SonicBoom; onClosed: Set<() => void> } | undefined

function stdoutStream(onClosed: (() => void) | undefined): SonicBoom {
  if (!stdout) {
    const stream = new SonicBoomClass({ fd: 1, sync: false })
    const listeners = new Set<() => void>()
    let closed = false
    stream.on('error', (error: unknown) => {
      if (closed) return
      if (errorCode(error) !== 'EPIPE') return // a log line is never worth a crash
      closed = true
      stream.write = () => true
      for (const listener of listeners) listener()
    })
    process.once('exit', () => {
      if (closed) return
      try {
        stream.flushSync()
      } catch {
        // nowhere left to write
      }
    })
    stdout = { stream, onClosed: listeners }
  }
  if (onClosed) stdout.onClosed.add(onClosed)
  return stdout.stream
}
