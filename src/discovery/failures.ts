import { errorCode, errorCodes } from '../lib/errors.ts'

/**
 * A failed attempt, told apart by whether any byte of the request was written: the transport
 * knows (undici calls its handler's onRequestStart just before it writes the request line), the
 * error's code alone does not (a reset may come before or after the request went out).
 */
export class AttemptFailure extends Error {
  /** False: the request never left this process, so no instance can have acted on it. */
  readonly requestSent: boolean
  /** The cause's code, so that a log line's `describe()` still shows it. */
  readonly code: string | undefined

  constructor(cause: unknown, requestSent: boolean) {
    super(cause instanceof Error ? cause.message : String(cause), { cause })
    this.name = 'AttemptFailure'
    this.requestSent = requestSent
    this.code = errorCode(cause)
  }
}

/**
 * Failures of connecting, which happen before a byte of the request can be written: nothing
 * listens there (refused), no route to it, its name does not resolve, or the connection was not
 * made in time.
 */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT'])

/** The connection failed or was closed: before the request went out, or after (then the code does not say which). */
const CONNECTION_CODES = new Set([...CONNECT_CODES, 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])

/** The instance did not answer in time: the request reached it, and it may be acting on it. */
const ANSWER_TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])
/** What is answered as a timeout (504): the answer's, or the connection's. */
const TIMEOUT_CODES = new Set([...ANSWER_TIMEOUT_CODES, 'UND_ERR_CONNECT_TIMEOUT'])

/**
 * Whether another instance may be asked after this failure:
 * - `any_method`: the request never reached an instance (a connect failure, or a connection lost
 *   before any byte was written), so even a POST cannot have been acted on twice;
 * - `idempotent_only`: the request may have reached the instance (a reset after it was written, a
 *   timeout): only a request that may safely run twice goes to another;
 * - `never`: not a failure of the connection (a bad answer, a bug, the caller's own abort).
 */
export type RetrySafety = 'any_method' | 'idempotent_only' | 'never'

export function retrySafety(error: unknown): RetrySafety {
  const codes = errorCodes(error)
  const sent = error instanceof AttemptFailure ? error.requestSent : undefined
  if (sent === false && codes.some((code) => CONNECTION_CODES.has(code))) return 'any_method'
  // Unknown whether it was written: only the codes that a connect alone produces are safe.
  if (sent === undefined && codes.some((code) => CONNECT_CODES.has(code))) return 'any_method'
  if (codes.some((code) => CONNECTION_CODES.has(code) || ANSWER_TIMEOUT_CODES.has(code))) return 'idempotent_only'
  return 'never'
}

/** Whether the failure is a timeout, connecting or answering (the caller's answer is then a 504). */
export function isTimeout(error: unknown): boolean {
  return errorCodes(error).some((code) => TIMEOUT_CODES.has(code))
}
