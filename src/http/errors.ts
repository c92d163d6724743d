// Errors a client can see. Every one has a stable `code` that clients branch on (never the
// human-readable text); bodies follow RFC 9457 (application/problem+json). This layer knows only
// the codes of HTTP itself; each service declares its own with `defineErrors`.

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8'

export interface ErrorKind {
  readonly status: number
  readonly title: string
}

/** One error of a catalogue, with its code: what a route documents that it may answer. */
export interface ProblemKind extends ErrorKind {
  readonly code: string
}

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  code: string
  instance?: string
  errors?: Array<{ path: string; message: string }>
  [extension: string]: unknown
}

/** An error that answers with its own problem: thrown by handlers, answered by the app. */
export class AppError extends Error {
  readonly code: string
  readonly status: number
  readonly title: string
  readonly extensions: Record<string, unknown>

  constructor(code: string, kind: ErrorKind, detail?: string, extensions: Record<string, unknown> = {}) {
    super(detail ?? kind.title)
    this.name = 'AppError'
    this.code = code
    this.status = kind.status
    this.title = kind.title
    this.extensions = extensions
  }

  toProblem(instance?: string): Problem {
    return problemOf(this.code, this, this.message, { ...this.extensions, ...(instance === undefined ? {} : { instance }) })
  }
}

function problemOf(code: string, kind: ErrorKind, detail: string | undefined, extensions: Record<string, unknown>): Problem {
  return {
    type: `https://microservices-advanced.dev/problems/${code.toLowerCase().replaceAll('_', '-')}`,
    title: kind.title,
    status: kind.status,
    detail: detail ?? kind.title,
    code,
    ...extensions,
  }
}

/**
 * A service's catalogue of errors: `const fail = defineErrors({ ORDER_NOT_FOUND: { status: 404,
 * title: 'Order not found' } })`, then `throw fail('ORDER_NOT_FOUND', 'No order with id 42')`.
 * `fail.kind('ORDER_NOT_FOUND')` names the error for a route's documentation (see openapi.ts).
 */
export function defineErrors<const C extends Record<string, ErrorKind>>(catalogue: C) {
  const fail = (code: keyof C & string, detail?: string, extensions?: Record<string, unknown>): AppError => new AppError(code, catalogue[code]!, detail, extensions)
  const kind = (code: keyof C & string): ProblemKind => ({ code, status: catalogue[code]!.status, title: catalogue[code]!.title })
  return Object.assign(fail, { kind })
}

/** The errors of HTTP itself, which any route can answer. */
export const HTTP_ERRORS = {
  VALIDATION_FAILED: { status: 400, title: 'Request validation failed' },
  INVALID_JSON: { status: 400, title: 'Request body is not valid JSON' },
  BODY_TOO_LARGE: { status: 413, title: 'Request body too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  ROUTE_NOT_FOUND: { status: 404, title: 'No such route' },
  METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  MALFORMED_REQUEST: { status: 400, title: 'Malformed HTTP request' },
  REQUEST_TIMEOUT: { status: 408, title: 'Request not received in time' },
  HEADERS_TOO_LARGE: { status: 431, title: 'Request headers too large' },
  INTERNAL: { status: 500, title: 'Internal error' },
} as const satisfies Record<string, ErrorKind>

export type HttpErrorCode = keyof typeof HTTP_ERRORS

export const httpError = defineErrors(HTTP_ERRORS)

/** A problem body for one of HTTP's own errors. */
export function problem(code: HttpErrorCode, detail?: string, extensions: Record<string, unknown> = {}): Problem {
  return problemOf(code, HTTP_ERRORS[code], detail, extensions)
}
