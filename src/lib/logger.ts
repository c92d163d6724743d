import { createRequire } from 'node:module'
import type { Logger, LevelWithSilent } from 'pino'
import type { SonicBoom } from 'sonic-boom'
import { errorCode } from './errors.ts'

export type { Logger }

// pino, sonic-boom and pino-pretty (all CommonJS) are required by the first logger made, not
// when this module loads: the supervisor of `npm start`, which only asks `wantsColor`, carries none.
const require = createRequire(import.meta.url)
const loadPino = () => (require('pino') as typeof import('pino')).pino
// The class is the module itself (the typings also name an export that does not exist).
const loadSonicBoom = () => require('sonic-boom') as typeof SonicBoom

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
  /** `pretty` only: colour the lines (default: none). */
  colors?: boolean
}

// JSON lines on stdout by default: one object per event, never multi-line text, so that log
// shippers and `jq` read them as they are. `pretty` is for a person at a terminal: one short line
// per event too (see prettyLine).
export function createLogger(options: LoggerOptions): Logger {
  const pino = loadPino()
  const settings = {
    level: options.level,
    base: { pid: process.pid, ...options.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
    ...(options.mixin ? { mixin: options.mixin } : {}),
  }
  const destination = options.destination ?? stdoutStream(options.onOutputClosed)
  if (options.format === 'pretty') {
    // In this thread, not as a pino transport: a transport's worker writes through the main
    // thread, which deadlocks when the main thread waits for it at exit with stdout gone. Loaded
    // only when asked for: production (JSON) never pays for it.
    const pretty = require('pino-pretty') as typeof import('pino-pretty')
    return pino(
      settings,
      pretty.build({
        destination,
        colorize: options.colors ?? false,
        translateTime: 'SYS:HH:MM:ss',
        ignore: 'pid,hostname',
        // Everything but the time and the level is in the message: prettyLine picks what a person
        // reads, on one line (pino-pretty's own object printing takes a line per field).
        hideObject: true,
        messageFormat: (log, _key, _label, { colors }) => prettyLine(log, colors),
      }),
    )
  }
  return pino(settings, destination)
}

/**
 * Whether lines for people are coloured, by the common conventions: NO_COLOR (any value) turns it
 * off, FORCE_COLOR (other than 0) on (the supervisor sets it for children whose output it shows
 * on a terminal), else a terminal has colour.
 */
export function wantsColor(env: Readonly<Record<string, string | undefined>>, isTTY: boolean | undefined = process.stdout.isTTY): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '') return env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false'
  return isTTY === true
}

/** Fields a person at a terminal does not need on every line (they stay in the JSON lines). */
const HIDDEN = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'role', 'event', 'service_instance_id', 'reqId', 'trace_id', 'span_id'])
const MAX_VALUE_CHARS = 160

interface Paint {
  gray: (text: string) => string
}

/**
 * One event as one line for a person: the message, then the event's fields as `key=value`
 * (values with spaces quoted, long ones cut). A request line reads `GET /products 200 3.1ms`. An
 * error shows its type, message and code, and where it was thrown, never its whole stack. Control
 * characters are escaped: a value a client sent cannot move the cursor or clear the screen.
 */
export function prettyLine(log: Record<string, unknown>, paint: Paint = { gray: (text) => text }): string {
  const fields = Object.entries(log).filter(([key, value]) => !HIDDEN.has(key) && value !== undefined)
  let head = safe(typeof log.msg === 'string' ? log.msg : '')
  let rest = fields
  if ((log.msg === 'request' || log.msg === 'request errored') && typeof log.method === 'string' && log.url !== undefined) {
    const duration = typeof log.duration_ms === 'number' ? ` ${log.duration_ms}ms` : ''
    head = `${safe(log.method)} ${safe(String(log.url))} ${String(log.status ?? '')}${duration}${log.msg === 'request errored' ? ' errored' : ''}`
    rest = fields.filter(([key]) => !['method', 'url', 'route', 'status', 'duration_ms'].includes(key))
  }
  // A value the message already says (`listening on http://127.0.0.1:8081` and its `port`) is not repeated.
  const said = (text: string) => text.length >= 3 && head.includes(text)
  const parts = rest
    .flatMap(([key, value]) => (isErrorLike(value) ? errorParts(key, value) : [[key, show(value)] as const]))
    .filter(([, text]) => !said(text.replace(/^"|"$/g, '')))
  return [head, ...parts.map(([key, value]) => `${paint.gray(`${key}=`)}${value}`)].filter((part) => part !== '').join(' ')
}

function isErrorLike(value: unknown): value is { type?: unknown; message?: unknown; code?: unknown; stack?: unknown } {
  return typeof value === 'object' && value !== null && 'message' in value && 'stack' in value
}

/** `err="TypeError: boom"`, its `code`, and `at=` the first frame outside node_modules and Node's own. */
function errorParts(key: string, error: { type?: unknown; message?: unknown; code?: unknown; stack?: unknown }): Array<readonly [string, string]> {
  const type = typeof error.type === 'string' ? error.type : 'Error'
  const parts: Array<readonly [string, string]> = [[key, show(`${type}: ${String(error.message)}`)]]
  if (typeof error.code === 'string' || typeof error.code === 'number') parts.push([`${key}_code`, show(error.code)])
  const frame =
    typeof error.stack === 'string'
      ? /^\s*at (?:.*?\()?(.+?)\)?$/m.exec(error.stack.split('\n').filter((l) => /^\s*at /.test(l) && !/node_modules|node:|\(native\)/.test(l))[0] ?? '')
      : null
  if (frame?.[1]) parts.push(['at', show(frame[1].replace(/^file:\/\//, '').replace(`${process.cwd()}/`, ''))])
  return parts
}

/** A value as it reads after `key=`: bare when it can be, else quoted; cut when long. */
function show(value: unknown): string {
  const cut = (text: string) => (text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS)}…` : text)
  // JSON is self-delimiting, and writes control characters escaped (but for the C1 ones).
  if (Array.isArray(value) && value.length === 0) return '[]'
  if (typeof value === 'object' && value !== null && !(Array.isArray(value) && value.every((item) => item === null || typeof item !== 'object'))) {
    return safe(cut(JSON.stringify(value)))
  }
  const text = cut(Array.isArray(value) ? value.map(String).join(',') : String(value))
  return text !== '' && /^[^\s"'=\\]+$/.test(text) && !CONTROL.test(text) ? text : safe(JSON.stringify(text))
}

// C0 and C1 control characters: what moves a terminal's cursor, clears it or changes its title.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL = /[\x00-\x1f\x7f-\x9f]/
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROLS = /[\x00-\x1f\x7f-\x9f]/g

/** Text a terminal shows as text: control characters (newlines, escapes) written as `\uXXXX`. */
function safe(text: string): string {
  return text.replace(CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
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
    const stream = new (loadSonicBoom())({ fd: 1, sync: false })
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
