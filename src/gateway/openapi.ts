import type { ServiceClient } from '../discovery/service-client.ts'
import type { ProblemKind } from '../http/errors.ts'
import { problemResponses } from '../http/openapi.ts'
import { AUTH_PROBLEMS, isPublicRead, PUBLIC_READ_PREFIXES } from './auth.ts'
import { ROUTED_PROBLEMS } from './routes.ts'
import type { Route } from './routing.ts'

type Document = Record<string, unknown>

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * The gateway's OpenAPI document: its own (health) plus, for each route, the paths under the
 * route's prefix from the service's own /openapi.json, fetched through discovery. A service that
 * cannot be reached is left out (and named in the description) rather than failing the document.
 */
export function combineOpenApi(routes: readonly Route[], client: ServiceClient, gatewayProblems: (method: string, path: string) => readonly ProblemKind[] = () => []) {
  return async (own: Document): Promise<Document> => {
    const paths: Record<string, unknown> = isObject(own.paths) ? { ...own.paths } : {}
    const schemas: Record<string, unknown> = {}
    const missing: string[] = []
    await Promise.all(
      routes.map(async (route) => {
        try {
          const response = await client.request(route.service, { method: 'GET', path: '/openapi.json' })
          const document = response.body
          if (response.status !== 200 || !isObject(document) || !isObject(document.paths)) throw new Error(`answered ${response.status}`)
          for (const [path, item] of Object.entries(document.paths)) {
            if (path === route.prefix || path.startsWith(`${route.prefix}/`)) paths[path] = withProblems(item, (method) => gatewayProblems(method, path))
          }
          const components = document.components
          if (isObject(components) && isObject(components.schemas)) Object.assign(schemas, components.schemas)
        } catch {
          missing.push(route.service)
        }
      }),
    )
    const services = [...new Set(routes.map((r) => r.service))].join(', ')
    return {
      ...own,
      info: {
        title: 'API gateway',
        version: isObject(own.info) ? own.info.version : '0.1.0',
        description: `One entry point for: ${services}.${missing.length ? ` Not reachable just now, so not included: ${missing.sort().join(', ')}.` : ''}`,
      },
      paths,
      components: { ...(isObject(own.components) ? own.components : {}), schemas },
    }
  }
}

/**
 * What the gateway itself may answer on a routed operation: its refusals and the upstream's
 * failures, and with authentication on, the token's (not on the reads that stay public).
 */
export function routedProblems(authOn: boolean): (method: string, path: string) => readonly ProblemKind[] {
  return (method, path) => [...ROUTED_PROBLEMS, ...(authOn && !isPublicRead(method, path.replace(/\{[^}]*\}/g, 'x'), PUBLIC_READ_PREFIXES) ? AUTH_PROBLEMS : [])]
}

const OPERATIONS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'])
const PROBLEM = 'application/problem+json'

/** The `code` enum of a documented problem answer, if it is one. */
function codesOf(response: unknown): string[] | undefined {
  if (!isObject(response) || !isObject(response.content)) return undefined
  const media = response.content[PROBLEM]
  if (!isObject(media) || !isObject(media.schema) || !isObject(media.schema.properties)) return undefined
  const code = media.schema.properties.code
  return isObject(code) && Array.isArray(code.enum) ? code.enum.filter((c): c is string => typeof c === 'string') : undefined
}

/**
 * A service's path item, with the errors the gateway itself may answer on the way (a refused path
 * or token, no instance, an instance that failed) added to each operation's: a status the service
 * documents as a problem gets the gateway's codes added to its own; one it does not, the gateway's.
 */
function withProblems(item: unknown, kindsFor: (method: string) => readonly ProblemKind[]): unknown {
  if (!isObject(item)) return item
  const out: Record<string, unknown> = { ...item }
  for (const [method, operation] of Object.entries(item)) {
    if (!OPERATIONS.has(method) || !isObject(operation)) continue
    const kinds = kindsFor(method.toUpperCase())
    if (kinds.length === 0) continue
    const added = problemResponses(kinds)
    const responses: Record<string, unknown> = isObject(operation.responses) ? { ...operation.responses } : {}
    for (const [status, response] of Object.entries(added)) {
      if (status === 'default') {
        responses.default ??= response
        continue
      }
      const theirs = responses[status]
      if (theirs === undefined) {
        responses[status] = response
        continue
      }
      const codes = codesOf(theirs)
      const ours = codesOf(response) ?? []
      // Theirs is not a problem (a documented success or other body): theirs stands.
      if (codes === undefined || !isObject(theirs) || !isObject(theirs.content)) continue
      const media = theirs.content[PROBLEM] as Record<string, Record<string, Record<string, Record<string, unknown>>>>
      const merged = [...new Set([...codes, ...ours])]
      responses[status] = {
        ...theirs,
        description: `${String(theirs.description ?? '')}; ${String((response as { description?: string }).description ?? '')}`.replace(/^; /, ''),
        content: {
          ...theirs.content,
          [PROBLEM]: { ...media, schema: { ...media.schema, properties: { ...media.schema!.properties, code: { type: 'string', enum: merged } } } },
        },
      }
    }
    out[method] = { ...operation, responses }
  }
  return out
}
