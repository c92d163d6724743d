import { Type } from 'typebox'
import { httpError } from './errors.ts'

export const DEFAULT_PAGE_SIZE = 20
export const MAX_PAGE_SIZE = 100

export const PageQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, description: `Page size, default ${DEFAULT_PAGE_SIZE}` })),
    cursor: Type.Optional(Type.String({ maxLength: 256, pattern: '^[A-Za-z0-9_-]*$', description: 'next_cursor from the previous page' })),
  },
  { additionalProperties: false },
)

/** Keyset pagination position: the (created_at, id) of the last row of the previous page. */
export interface Position {
  createdAt: string
  id: string
}

export function encodeCursor(position: Position): string {
  return Buffer.from(JSON.stringify([position.createdAt, position.id])).toString('base64url')
}

// What a cursor may hold: the created_at we wrote (Date#toISOString) and an id of printable ASCII.
// A cursor is client input: anything else (a NUL, which PostgreSQL refuses in text, or control
// bytes) must be a 400 here, never a query.
const CREATED_AT = /^(\d{4}|[+-]\d{6})-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const ID = /^[\x21-\x7e]{1,128}$/

function parseCursor(cursor: string): Position | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (!Array.isArray(value) || value.length !== 2) return undefined
    const [createdAt, id] = value as unknown[]
    if (typeof createdAt !== 'string' || typeof id !== 'string' || !CREATED_AT.test(createdAt) || !ID.test(id)) return undefined
    const position = { createdAt, id }
    // Only the exact text we issue: base64url decoding skips stray characters, and JSON allows
    // escapes and spaces, so that many strings would decode to one position.
    return encodeCursor(position) === cursor ? position : undefined
  } catch {
    return undefined
  }
}

export function decodeCursor(cursor: string): Position {
  const position = parseCursor(cursor)
  if (position) return position
  throw httpError('VALIDATION_FAILED', 'querystring/cursor: is not a cursor this service issued', {
    errors: [{ path: 'querystring/cursor', message: 'is not a cursor this service issued' }],
  })
}

/** A page of rows fetched with `limit + 1`: the extra row only says whether there are more. */
export function toPage<R, T extends { createdAt: string; id: string }>(rows: readonly R[], limit: number, map: (row: R) => T): Page<T> {
  const items = rows.slice(0, limit).map(map)
  const last = items.at(-1)
  return { items, more: rows.length > limit, ...(last ? { last: { createdAt: last.createdAt, id: last.id } } : {}) }
}

export interface Page<T> {
  items: T[]
  last?: Position
  more: boolean
}

/** Serves one page of a list: reads `limit` and `cursor`, answers `{items, next_cursor}`. */
export async function listPage<R, V>(
  query: { limit?: number; cursor?: string },
  list: (limit: number, after?: Position) => Promise<Page<R>>,
  view: (record: R) => V,
): Promise<{ items: V[]; next_cursor: string | null }> {
  const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor)
  const page = await list(query.limit ?? DEFAULT_PAGE_SIZE, after)
  return { items: page.items.map(view), next_cursor: page.more && page.last ? encodeCursor(page.last) : null }
}
