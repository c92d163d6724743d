// Validation errors as a client can read them. TypeBox (bodies) and Ajv (path, query, headers)
// report what their compiled checks saw: `schema is false` for an unknown field, one `must be
// equal to constant` per member of an enum, a raw regular expression for a pattern. This turns
// those reports into one line per mistake: `unknown field \`colour\``, `must be one of: up,
// starting, draining`, `does not match the expected format: <the schema's description>`.

/** What both validators report for one failed check (Fastify's `FastifySchemaValidationError`). */
export interface ValidationIssue {
  keyword: string
  instancePath: string
  schemaPath: string
  params: Record<string, unknown>
  message?: string
}

export interface ValidationDetail {
  path: string
  message: string
}

/** At most this many details in an answer: a body with 10,000 unknown fields is one mistake repeated. */
export const MAX_DETAILS = 20
/** Names and values from the request are quoted at most this long. */
const MAX_QUOTED = 64

type Schema = Record<string, unknown>

const isSchema = (value: unknown): value is Schema => typeof value === 'object' && value !== null && !Array.isArray(value)

interface Located {
  issue: ValidationIssue
  /** The schema path of the node that failed, as segments (the keyword, which Ajv appends, removed). */
  node: string[]
}

function locate(issue: ValidationIssue): Located {
  const node = issue.schemaPath
    .replace(/^#\/?/, '')
    .split('/')
    .filter((segment) => segment !== '')
    .map((segment) => segment.replaceAll('~1', '/').replaceAll('~0', '~'))
  // Ajv names the keyword last (`#/properties/limit/type`); TypeBox names the node. A property that
  // happens to be called like a keyword (`properties/pattern`) is a node.
  const parent = node.at(-2)
  if (node.at(-1) === issue.keyword && parent !== 'properties' && parent !== 'patternProperties') node.pop()
  return { issue, node }
}

function resolve(root: unknown, node: readonly string[]): Schema | undefined {
  let current: unknown = root
  for (const segment of node) {
    if (Array.isArray(current)) current = current[Number(segment)]
    else if (isSchema(current)) current = current[segment]
    else return undefined
  }
  return isSchema(current) ? current : undefined
}

function quote(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value)
  return text.length > MAX_QUOTED ? `${text.slice(0, MAX_QUOTED)}…` : text
}

const ARTICLES: Record<string, string> = {
  object: 'an object',
  array: 'an array',
  string: 'a string',
  number: 'a number',
  integer: 'an integer',
  boolean: 'a boolean',
  null: 'null',
}

const typeName = (type: unknown): string => (Array.isArray(type) ? type.map(typeName).join(' or ') : (ARTICLES[String(type)] ?? String(type)))

// `A short name` reads on after a colon as `a short name`; `URL of ...` keeps its capitals.
const lowerFirst = (text: string) => (/^[A-Z](?![A-Z])/.test(text) ? text[0]!.toLowerCase() + text.slice(1) : text)

/** The values a schema allows when it is a literal or an enum of them; undefined otherwise. */
function literals(schema: Schema | undefined): unknown[] | undefined {
  if (!schema) return undefined
  if ('const' in schema) return [schema.const]
  if (Array.isArray(schema.enum)) return schema.enum
  if (Array.isArray(schema.anyOf)) {
    const values: unknown[] = []
    for (const branch of schema.anyOf) {
      const inner = literals(isSchema(branch) ? branch : undefined)
      if (!inner) return undefined
      values.push(...inner)
    }
    return values
  }
  return undefined
}

const oneOf = (values: readonly unknown[]) => (values.length === 1 ? `must be ${quote(values[0])}` : `must be one of: ${values.map(quote).join(', ')}`)

/** One alternative of a union, for a message that lists them. */
function describeBranch(branch: Schema | undefined): string {
  if (!branch) return 'another value'
  const values = literals(branch)
  if (values) return values.map(quote).join(' or ')
  if (branch.type === 'object' && Array.isArray(branch.required) && branch.required.length > 0) {
    return `an object with ${branch.required.map((name) => `\`${String(name)}\``).join(' and ')}`
  }
  return branch.type === undefined ? 'another value' : typeName(branch.type)
}

/** The message for one failed check outside any union (or in the branch a union was meant to match). */
function describeIssue(located: Located, context: string, root: unknown): ValidationDetail[] {
  const { issue, node } = located
  const path = `${context}${issue.instancePath}`
  const params = issue.params ?? {}
  // A query's or a path's names are parameters; a body's, fields.
  const field = context === 'body' ? 'field' : 'parameter'
  switch (issue.keyword) {
    case 'additionalProperties': {
      // TypeBox lists every unknown name; Ajv reports one per error.
      const names = Array.isArray(params.additionalProperties) ? params.additionalProperties : [params.additionalProperty]
      const object = resolve(root, node)
      // A map (keys by pattern, as metadata): the key breaks the rule the schema describes.
      if (isSchema(object?.patternProperties)) {
        const rule = typeof object.description === 'string' ? `: ${object.description}` : ''
        return names.map((name) => ({ path, message: `key \`${quote(name)}\` is not allowed${rule}` }))
      }
      const known = object?.properties
      const hint = isSchema(known) && Object.keys(known).length > 0 ? ` (known ${field}s: ${Object.keys(known).join(', ')})` : ''
      return names.map((name) => ({ path, message: `unknown ${field} \`${quote(name)}\`${hint}` }))
    }
    case 'boolean': {
      // TypeBox's twin of the above, at the unknown field itself: said once, by its parent.
      if (node.at(-1) !== 'additionalProperties') break
      const parent = issue.instancePath.slice(0, issue.instancePath.lastIndexOf('/'))
      const name = issue.instancePath
        .slice(parent.length + 1)
        .replaceAll('~1', '/')
        .replaceAll('~0', '~')
      return describeIssue(
        { issue: { ...issue, keyword: 'additionalProperties', instancePath: parent, params: { additionalProperty: name } }, node: node.slice(0, -1) },
        context,
        root,
      )
    }
    case 'required': {
      const names = Array.isArray(params.requiredProperties) ? params.requiredProperties : [params.missingProperty]
      return names.map((name) => ({ path, message: `missing required ${field} \`${quote(name)}\`` }))
    }
    case 'enum':
      if (Array.isArray(params.allowedValues)) return [{ path, message: oneOf(params.allowedValues) }]
      break
    case 'const':
      return [{ path, message: oneOf([params.allowedValue]) }]
    case 'type':
      return [{ path, message: `must be ${typeName(params.type)}` }]
    case 'format':
      return [{ path, message: `must be a valid ${String(params.format)}` }]
    case 'pattern': {
      const description = resolve(root, node)?.description
      if (typeof description === 'string' && description !== '') return [{ path, message: `does not match the expected format: ${lowerFirst(description)}` }]
      break
    }
  }
  return [{ path, message: issue.message ?? 'is invalid' }]
}

/** Where the first union (`anyOf` with its branch index) on a node's path is, or -1. */
function unionAt(node: readonly string[], from: number): number {
  for (let i = from; i < node.length - 1; i++) if (node[i] === 'anyOf' && /^\d+$/.test(node[i + 1]!)) return i
  return -1
}

const commonPrefix = (paths: readonly string[]) =>
  paths.reduce((prefix, path) => {
    const a = prefix.split('/')
    const b = path.split('/')
    let i = 0
    while (i < a.length && i < b.length && a[i] === b[i]) i++
    return a.slice(0, i).join('/')
  })

/**
 * A failed union: the branch the value was evidently meant for (its shape fits: no type or required
 * field missing at the union itself) says what is wrong; when none fits, one line lists the choices.
 */
function describeUnion(key: string[], members: Located[], context: string, root: unknown): ValidationDetail[] {
  const union = resolve(root, key)
  const branches = Array.isArray(union?.anyOf) ? union.anyOf.map((branch) => (isSchema(branch) ? branch : undefined)) : []
  const own = members.find((m) => m.issue.keyword === 'anyOf' && m.node.length === key.length)
  const at = own ? own.issue.instancePath : commonPrefix(members.map((m) => m.issue.instancePath))
  const path = `${context}${at}`
  const values = literals(union)
  if (values) return [{ path, message: oneOf(values) }]
  const byBranch = new Map<number, Located[]>()
  for (const member of members) {
    if (member.node.length <= key.length + 1) continue
    const branch = Number(member.node[key.length + 1])
    byBranch.set(branch, [...(byBranch.get(branch) ?? []), member])
  }
  const SHAPE = new Set(['type', 'required', 'const', 'enum'])
  const fitting = [...byBranch.entries()]
    .filter(([, issues]) => !issues.some((m) => m.issue.instancePath === at && SHAPE.has(m.issue.keyword) && m.node.length === key.length + 2))
    .sort((a, b) => a[1].length - b[1].length)
  const best = fitting[0]
  if (best) {
    const details = describeAll(best[1], context, root, key.length + 2)
    if (details.length > 0) return details
  }
  const choices = [...new Set(branches.map(describeBranch))]
  const separator = choices.length > 2 || choices.some((choice) => choice.includes(' and ')) ? ', or ' : ' or '
  if (choices.length > 0) return [{ path, message: `must be ${choices.join(separator)}` }]
  // A union this module cannot see (no schema): what the validator said.
  const said = members.filter((m) => m !== own).flatMap((m) => describeIssue(m, context, root))
  return said.length > 0 ? said : [{ path, message: own?.issue.message ?? 'is invalid' }]
}

function describeAll(located: Located[], context: string, root: unknown, from: number): ValidationDetail[] {
  const details: ValidationDetail[] = []
  const unions = new Map<string, { key: string[]; members: Located[] }>()
  for (const item of located) {
    const at = unionAt(item.node, from)
    // An `anyOf` failure names the union itself: it belongs with its branches' failures.
    // The first union on the path is the outermost: an inner one is part of one of its branches.
    const key = at >= 0 ? item.node.slice(0, at) : item.issue.keyword === 'anyOf' ? item.node : undefined
    if (!key) {
      details.push(...describeIssue(item, context, root))
      continue
    }
    const id = key.join('/')
    const group = unions.get(id) ?? { key, members: [] }
    group.members.push(item)
    unions.set(id, group)
  }
  for (const { key, members } of unions.values()) details.push(...describeUnion(key, members, context, root))
  return details
}

/**
 * Readable details for a failed validation of one part of a request (`body`, `querystring`,
 * `params`, `headers`) against its schema (when known: descriptions and field lists come from it).
 */
export function describeValidation(issues: readonly ValidationIssue[], context: string, schema?: unknown): ValidationDetail[] {
  const details = describeAll(issues.map(locate), context, schema, 0)
  const seen = new Set<string>()
  const unique: ValidationDetail[] = []
  for (const detail of details) {
    const key = `${detail.path}\n${detail.message}`
    if (seen.has(key)) continue
    seen.add(key)
    unique.push(detail)
    if (unique.length === MAX_DETAILS) break
  }
  return unique
}
