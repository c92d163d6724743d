import { Type } from 'typebox'
import { httpError } from './errors.ts'

export const DEFAULT_PAGE_SIZE = 20
export const MAX_PAGE_SIZE = 100

export const PageQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, description: `Page size, default ${DEFAULT_PAGE_SIZE}` })),
    cursor: Type.Optional(Type.String({ maxLength: 256, description: 'next_cursor from the previous page' })),
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

export function decodeCursor(cursor: string): Position {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string') {
      return { createdAt: value[0], id: value[1] }
    }
  } catch {
    // fall through
  }
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
