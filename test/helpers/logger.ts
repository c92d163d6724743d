import { Writable } from 'node:stream'
import { createLogger, type Logger } from '../../src/lib/logger.ts'

/** A logger that prints nothing (TEST_VERBOSE=1 shows it). */
export const silentLogger = () => createLogger({ level: process.env.TEST_VERBOSE ? 'debug' : 'silent' })

/** A logger whose lines (parsed JSON) the test can read, at `level` and above (default debug). */
export function capturingLogger(level: 'debug' | 'info' = 'debug'): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>)
      done()
    },
  })
  return { logger: createLogger({ level, destination }), lines }
}
