// Which database errors mean "the database cannot serve right now" (answer 503, the caller may
// retry) rather than a bug (500).

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE'])
// PostgreSQL SQLSTATEs: connection exceptions, shutdowns, too many connections.
const POSTGRES_STATES = /^(08...|57P0[1-3]|53300)$/
// SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6) after the busy timeout.
const SQLITE_BUSY = new Set([5, 6])
const MESSAGES = /timeout exceeded when trying to connect|Connection terminated|Client has encountered a connection error|database is locked/i

export function isDatabaseUnavailable(error: unknown): boolean {
  let current: unknown = error
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    const { code, errcode } = current as { code?: unknown; errcode?: unknown }
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || POSTGRES_STATES.test(code))) return true
    if (typeof errcode === 'number' && SQLITE_BUSY.has(errcode & 0xff)) return true
    if (MESSAGES.test(current.message)) return true
    current = current.cause
  }
  return false
}
