// One catalogue of errors. Every error a client can see has a stable `code`; clients branch on
// the code, never on the human-readable text. Bodies follow RFC 9457 (application/problem+json).

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8'

const catalogue = {
  VALIDATION_FAILED: { status: 400, title: 'Request validation failed' },
  INVALID_JSON: { status: 400, title: 'Request body is not valid JSON' },
  BODY_TOO_LARGE: { status: 413, title: 'Request body too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  ROUTE_NOT_FOUND: { status: 404, title: 'No such route' },
  INSTANCE_NOT_FOUND: { status: 404, title: 'Instance not registered' },
  INSTANCE_ID_CONFLICT: { status: 409, title: 'Instance id already in use' },
  REGISTRY_FULL: { status: 503, title: 'The registry holds as many instances as it may' },
  PRODUCT_NOT_FOUND: { status: 404, title: 'Product not found' },
  ORDER_NOT_FOUND: { status: 404, title: 'Order not found' },
  UNKNOWN_PRODUCT: { status: 422, title: 'Order refers to an unknown product' },
  IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'Idempotency-Key reused with a different request' },
  NO_HEALTHY_INSTANCE: { status: 503, title: 'No healthy instance of the upstream service' },
  UPSTREAM_UNAVAILABLE: { status: 503, title: 'Upstream service unavailable' },
  UPSTREAM_FAILED: { status: 502, title: 'Upstream service failed' },
  UPSTREAM_TIMEOUT: { status: 504, title: 'Upstream service timed out' },
  DATABASE_UNAVAILABLE: { status: 503, title: 'Database unavailable' },
  INTERNAL: { status: 500, title: 'Internal error' },
} as const satisfies Record<string, { status: number; title: string }>

export type ErrorCode = keyof typeof catalogue

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  code: ErrorCode
  instance?: string
  errors?: Array<{ path: string; message: string }>
  [extension: string]: unknown
}

export class AppError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly extensions: Record<string, unknown>

  constructor(code: ErrorCode, detail?: string, extensions: Record<string, unknown> = {}) {
    super(detail ?? catalogue[code].title)
    this.name = 'AppError'
    this.code = code
    this.status = catalogue[code].status
    this.extensions = extensions
  }
}

export function problem(code: ErrorCode, detail?: string, extensions: Record<string, unknown> = {}): Problem {
  const { status, title } = catalogue[code]
  return {
    type: `https://microservices-advanced.dev/problems/${code.toLowerCase().replaceAll('_', '-')}`,
    title,
    status,
    detail: detail ?? title,
    code,
    ...extensions,
  }
}
