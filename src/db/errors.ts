import { causeChain, errorCode } from '../lib/errors.ts'

// Which database errors mean "the database cannot serve right now" (answer 503, the caller may
// retry) rather than a bug (500).

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE'])
// PostgreSQL SQLSTATEs: connection exceptions, shutdowns, too many connections.
const POSTGRES_STATES = /^(08...|57P0[1-3]|53300)$/
// SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6) after the busy timeout.
const SQLITE_BUSY = new Set([5, 6])
const MESSAGES = /timeout exceeded when trying to connect|Query read timeout|Connection terminated|Client has encountered a connection error|database is locked/i

export function isDatabaseUnavailable(error: unknown): boolean {
  return causeChain(error, 4).some((current) => {
    const code = errorCode(current)
    if (code !== undefined && (NETWORK_CODES.has(code) || POSTGRES_STATES.test(code))) return true
    const errcode = sqliteErrcode(current)
    if (errcode !== undefined && SQLITE_BUSY.has(errcode & 0xff)) return true
    return MESSAGES.test(current.message)
  })
}

/** node:sqlite's extended result code (`errcode`), when the error is SQLite's. */
export function sqliteErrcode(error: unknown): number | undefined {
  const errcode = typeof error === 'object' && error !== null ? (error as { errcode?: unknown }).errcode : undefined
  return typeof errcode === 'number' ? errcode : undefined
}

/** PostgreSQL's unique_violation, SQLite's UNIQUE/PRIMARY KEY constraint failures. */
export function isUniqueViolation(error: unknown): boolean {
  const errcode = sqliteErrcode(error)
  return errorCode(error) === '23505' || errcode === 2067 || errcode === 1555 || (error instanceof Error && /UNIQUE constraint failed/.test(error.message))
}
