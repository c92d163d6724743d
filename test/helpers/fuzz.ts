// fast-check arbitraries for HTTP requests to the roles: hostile strings, paths (percent-encoded,
// raw, dot segments, backslashes), query strings, headers and bodies (arbitrary JSON, junk, and
// valid bodies of each route with one thing changed). Only what undici will put on the wire:
// a request line is bytes 0x21-0xff, header values are tab, 0x20-0x7e and 0x80-0xff.
import fc from 'fast-check'

export type Role = 'registry' | 'product' | 'order' | 'gateway'
export const ROLES: readonly Role[] = ['registry', 'product', 'order', 'gateway']

export interface FuzzRequest {
  role: Role
  method: string
  /** The request target as sent: path and query, already encoded. */
  path: string
  headers: Record<string, string>
  body?: string
}

/** What the generators need to know about the running system. */
export interface FuzzContext {
  /** A product that exists, so that near-valid orders are sometimes valid. */
  productId: string
  /** A next_cursor the product service issued. */
  productCursor: string
  /** A loopback port nothing listens on: the only place registered URLs and health URLs point. */
  deadPort: number
}

/** Service names that generated registrations may use: never one the system itself runs under. */
export const FUZZ_SERVICES = ['fuzz-a', 'fuzz-b', 'fuzz.c', 'fuzz_d'] as const
const RESERVED_SERVICES = new Set(['product', 'order', 'gateway', 'registry'])

const NASTY = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\u0001\u0002\u001f',
  '\t',
  '\n',
  '\r\n',
  '\u007f',
  '\u0085',
  '\ud800',
  'x\udfffy',
  '\ufeff',
  '\u202e',
  '\uffff',
  '😀',
  'é',
  '..',
  '../..',
  '.',
  '\\',
  '..\\..',
  '%',
  '%00',
  '%zz',
  '%2e%2e',
  '%252e%252e',
  '%2F',
  '%5C',
  '%C0%AE',
  '%E0%A4%A',
  '/',
  '//',
  '?',
  '#',
  ';',
  '&',
  '=',
  'null',
  'true',
  '-1',
  '0',
  '1e400',
  'NaN',
  '__proto__',
  'constructor',
  "' OR 1=1 --",
  '$' + '{7*7}',
  '<script>',
  'x'.repeat(250),
  'é'.repeat(201),
]

/** Any UTF-16 string: lone surrogates, NULs and control characters included. */
const utf16 = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)), maxLength: 40 })

export const nastyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NASTY) },
  { weight: 2, arbitrary: utf16 },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...NASTY), fc.string({ maxLength: 10 }), fc.constantFrom(...NASTY)).map((parts) => parts.join('')) },
)

const UNRESERVED = /[A-Za-z0-9\-._~]/

/** Percent-encodes every UTF-8 byte of `text` but the unreserved ones (lone surrogates become U+FFFD). */
function percentEncode(text: string): string {
  let out = ''
  for (const char of text) {
    if (UNRESERVED.test(char)) out += char
    else for (const byte of Buffer.from(char, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/** Sends what undici lets through (0x21-0xff) as it is and percent-encodes the rest. */
function rawWhereAllowed(text: string, keep: RegExp): string {
  let out = ''
  for (const char of text) out += keep.test(char) ? char : percentEncode(char)
  return out
}

type Encoding = 'encoded' | 'raw'
const encoding = fc.constantFrom<Encoding>('encoded', 'encoded', 'raw')

/** A path segment as sent: percent-encoded, or raw where the request line allows it. */
const segment: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(
      { weight: 3, arbitrary: nastyString },
      { weight: 2, arbitrary: fc.uuid().map(String) },
      { weight: 1, arbitrary: fc.constantFrom('products', 'orders', 'health', 'live', 'metrics', 'docs', 'openapi.json', 'discover', 'instances', 'ui', 'static') },
    ),
    encoding,
  )
  // Raw: `?` would start the query; everything else in 0x21-0xff goes as it is.
  .map(([text, how]) => (how === 'encoded' ? percentEncode(text) : rawWhereAllowed(text, /^[\x21-\x3e\x40-\xff]$/)))

const QUERY_KEYS = ['limit', 'cursor', 'index', 'wait', 'epoch', 'service', 'offset', 'id', '']

function queryValue(context: FuzzContext): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: nastyString },
    { weight: 2, arbitrary: fc.integer({ min: -2, max: 200 }).map(String) },
    { weight: 1, arbitrary: fc.constantFrom('1e3', '0x10', '1.5', '9007199254740993', '-0', ' 5', '5 ') },
    { weight: 1, arbitrary: fc.constantFrom('0ms', '10ms', '100ms', '1s', '1000000ms', 'forever') },
    { weight: 2, arbitrary: cursorLike(context) },
  )
}

/** Cursors: the one issued, mangled ones, and well-formed base64url of JSON the service never wrote. */
function cursorLike(context: FuzzContext): fc.Arbitrary<string> {
  const base64 = (value: unknown) => Buffer.from(JSON.stringify(value) ?? 'undefined').toString('base64url')
  return fc.oneof(
    fc.constant(context.productCursor),
    fc.tuple(fc.nat(), fc.constantFrom('A', '_', '-', '=', '%', '+', '/', '')).map(([at, char]) => {
      const i = at % (context.productCursor.length + 1)
      return context.productCursor.slice(0, i) + char + context.productCursor.slice(i + 1)
    }),
    fc.tuple(nastyString, nastyString).map(([a, b]) => base64([a, b])),
    fc.tuple(fc.constantFrom('2026-01-01T00:00:00.000Z', '\u0000', ''), nastyString).map(([a, b]) => base64([a, b])),
    fc.jsonValue({ maxDepth: 2 }).map(base64),
  )
}

function query(context: FuzzContext): fc.Arbitrary<string> {
  const pair = fc.tuple(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...QUERY_KEYS) }, { weight: 1, arbitrary: nastyString }), queryValue(context), encoding)
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant('') },
    {
      weight: 5,
      arbitrary: fc
        .array(pair, { maxLength: 4 })
        .map((pairs) =>
          pairs
            .map(([key, value, how]) =>
              how === 'encoded'
                ? `${percentEncode(key)}=${percentEncode(value)}`
                : `${rawWhereAllowed(key, /^[\x21-\x22\x24-\x25\x27-\x3c\x3e-\xff]$/)}=${rawWhereAllowed(value, /^[\x21-\x22\x24-\x25\x27-\xff]$/)}`,
            )
            .join('&'),
        ),
    },
    { weight: 1, arbitrary: nastyString.map((text) => rawWhereAllowed(text, /^[\x21-\xff]$/)) },
  )
}

// Route templates per role; `*` is a generated segment. /events is left out: it streams forever.
const PATHS: Record<Role, readonly string[]> = {
  registry: [
    '/register',
    '/heartbeat',
    '/deregister',
    '/instances/*',
    '/discover/*',
    '/discover/fuzz-a',
    '/services',
    '/health/live',
    '/health/ready',
    '/metrics',
    '/openapi.json',
    '/docs',
    '/docs/*',
    '/',
    '/ui',
    '/ui/*',
    '/v1/agent/service/register',
    '/v1/agent/service/deregister/*',
    '/v1/agent/check/pass/*',
    '/v1/agent/check/fail/*',
    '/v1/agent/check/update/*',
    '/sd/prometheus',
    '/*',
    '/*/*',
  ],
  product: ['/products', '/products', '/products/*', '/products/*/*', '/health/live', '/health/ready', '/metrics', '/openapi.json', '/docs/*', '/*', '/*/*'],
  order: ['/orders', '/orders', '/orders/*', '/orders/*/*', '/health/live', '/health/ready', '/metrics', '/openapi.json', '/docs/*', '/*', '/*/*'],
  gateway: [
    '/products',
    '/products/*',
    '/products/*/*',
    '/orders',
    '/orders/*',
    '/orders/*/*',
    '/health/live',
    '/health/ready',
    '/metrics',
    '/openapi.json',
    '/docs/*',
    '/*',
    '/*/*',
    '/products*',
    '/orders/../products',
  ],
}

function path(role: Role, context: FuzzContext): fc.Arbitrary<string> {
  return fc
    .tuple(fc.constantFrom(...PATHS[role]), fc.array(segment, { minLength: 2, maxLength: 2 }), fc.constantFrom('', '', '', '/', '//', '/.', '/..'), query(context))
    .map(([template, [first, second], tail, search]) => {
      let n = 0
      const filled = template.replace(/\*/g, () => (n++ === 0 ? first! : second!)) + tail
      return search === '' ? filled : `${filled}?${search}`
    })
}

const METHODS = ['GET', 'GET', 'GET', 'POST', 'POST', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']

const HEADER_NAMES = [
  'accept',
  'accept-encoding',
  'accept-language',
  'authorization',
  'cookie',
  'origin',
  'referer',
  'user-agent',
  'idempotency-key',
  'x-request-id',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'traceparent',
  'tracestate',
  'baggage',
  'if-none-match',
  'range',
  'cache-control',
  'x-registry-index',
]

/** Header values undici will send: tab, 0x20-0x7e, 0x80-0xff; no leading or trailing space. */
const headerValue: fc.Arbitrary<string> = fc
  .oneof(
    { weight: 3, arbitrary: nastyString },
    {
      weight: 1,
      arbitrary: fc.constantFrom('Bearer x', 'Bearer ', 'Basic Zm9vOmJhcg==', 'gzip, br', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'bytes=0-1', '*/*'),
    },
    { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((code) => String.fromCharCode(code)), minLength: 120, maxLength: 300 }) },
  )
  .map((text) => text.replace(/[^\t\x20-\x7e\x80-\xff]/g, (char) => percentEncode(char)).trim())

const CONTENT_TYPES = [
  'application/json',
  'application/json',
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=latin1',
  'application/JSON',
  'application/problem+json',
  'application/vnd.api+json',
  'text/plain',
  'text/html',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/octet-stream',
  '*/*',
  'json',
  '',
  ';',
]

function headers(): fc.Arbitrary<Record<string, string>> {
  const name = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...HEADER_NAMES) }, { weight: 1, arbitrary: fc.stringMatching(/^x-[a-z0-9-]{1,20}$/) })
  return fc
    .tuple(
      fc.array(fc.tuple(name, headerValue), { maxLength: 4 }),
      fc.option(fc.oneof(fc.constantFrom(...CONTENT_TYPES), headerValue), { nil: undefined, freq: 4 }),
      fc.option(fc.oneof(fc.uuid().map(String), headerValue), { nil: undefined, freq: 2 }),
    )
    .map(([pairs, contentType, idempotencyKey]) => {
      const out: Record<string, string> = Object.create(null)
      for (const [key, value] of pairs) out[key] = value
      if (contentType !== undefined) out['content-type'] = contentType
      if (idempotencyKey !== undefined) out['idempotency-key'] = idempotencyKey
      return { ...out }
    })
}

// Bodies: valid ones per route, then one mutation of them.

const loopbackUrl = (context: FuzzContext) =>
  fc
    .tuple(fc.constantFrom('http', 'https'), fc.constantFrom('127.0.0.1', 'localhost', '[::1]'), fc.constantFrom('', '/', '/a', '/health'))
    .map(([scheme, host, suffix]) => `${scheme}://${host}:${context.deadPort}${suffix}`)

const amount = fc.oneof(
  fc.integer({ min: 0, max: 1_000_000 }).map((cents) => cents / 100),
  fc.integer({ min: 0, max: 100_000_000_000 }).map((cents) => (cents / 100).toFixed(2)),
  fc.constantFrom(0, 9.99, '9.99', '0.1', 1_000_000_000),
)

/** Text for a string field: plain, hostile, or plain with a control character or lone surrogate inside. */
const text = fc.oneof(
  { weight: 3, arbitrary: fc.string({ minLength: 1, maxLength: 40 }) },
  { weight: 2, arbitrary: nastyString },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.string({ minLength: 1, maxLength: 20 }),
        fc.constantFrom('\u0000', '\u0001', '\u001b', '\u007f', '\ud800', '\udc00', '\t', '\n', '\r'),
        fc.string({ maxLength: 20 }),
      )
      .map((parts) => parts.join('')),
  },
)

function validBodies(context: FuzzContext) {
  const serviceName = fc.constantFrom(...FUZZ_SERVICES)
  const url = loopbackUrl(context)
  const instanceRef = fc.oneof(
    fc.record({ service_name: serviceName, url }),
    fc.record({ instance_id: fc.oneof(fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/), fc.constantFrom('fuzz-a-000000000000')) }),
  )
  const status = fc.constantFrom('starting', 'up', 'draining')
  return {
    products: fc.record({ name: text, price: amount, description: fc.oneof(text, fc.constant(null)) }, { requiredKeys: ['name', 'price'] }),
    orders: fc.record({ product_id: fc.oneof(fc.constant(context.productId), fc.uuid().map(String)), quantity: fc.integer({ min: 1, max: 10_000 }) }),
    register: fc.record(
      {
        service_name: serviceName,
        url,
        instance_id: fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/),
        metadata: fc.dictionary(fc.stringMatching(/^[A-Za-z0-9._/-]{1,10}$/), fc.string({ maxLength: 20 }), { maxKeys: 3 }),
        status,
        health_url: url,
      },
      { requiredKeys: ['service_name', 'url'] },
    ),
    heartbeat: fc.tuple(instanceRef, fc.option(status, { nil: undefined })).map(([ref, s]) => (s === undefined ? ref : { ...ref, status: s })),
    deregister: instanceRef,
    // Consul's agent registration: at the dead loopback port, so that an HTTP check probes nothing else.
    consulRegister: fc.record(
      {
        Name: serviceName,
        ID: fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/),
        Address: fc.constantFrom('127.0.0.1', '::1', 'localhost', ''),
        Port: fc.constant(context.deadPort),
        Tags: fc.array(fc.stringMatching(/^[a-z0-9-]{1,8}$/), { maxLength: 3 }),
        Meta: fc.dictionary(fc.stringMatching(/^[A-Za-z0-9._/-]{1,10}$/), fc.string({ maxLength: 20 }), { maxKeys: 3 }),
        Check: fc.oneof(
          fc.record(
            {
              TTL: fc.constantFrom('1s', '10s', '1m30s', '500ms', '0s', '200h'),
              DeregisterCriticalServiceAfter: fc.constantFrom('1s', '1m', '90m'),
              Status: fc.constantFrom('passing', 'critical', 'warning'),
              CheckID: fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/),
            },
            { requiredKeys: ['TTL'] },
          ),
          fc.record({ HTTP: url, Interval: fc.constantFrom('10s', '1m') }, { requiredKeys: ['HTTP'] }),
        ),
      },
      { requiredKeys: ['Name', 'Port'] },
    ),
  }
}

type Mutation =
  | { kind: 'none' }
  | { kind: 'drop'; at: number }
  | { kind: 'set'; at: number; key: string; value: unknown }
  | { kind: 'wrap' }
  | { kind: 'raw'; text: string }
  | { kind: 'truncate'; at: number }
  | { kind: 'number'; at: number; literal: string }

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Mutation>({ kind: 'none' }) },
  { weight: 2, arbitrary: fc.nat().map((at): Mutation => ({ kind: 'drop', at })) },
  {
    weight: 5,
    arbitrary: fc
      .tuple(
        fc.nat(),
        fc.oneof(fc.constant(''), fc.constantFrom('__proto__', 'constructor', 'extra', 'id', 'price'), nastyString),
        fc.oneof(
          nastyString,
          fc.jsonValue({ maxDepth: 2 }),
          fc.constantFrom(-1, 0, -0, 0.001, 1.005, 0.1 + 0.2, 1e21, 1e-7, 2 ** 53 + 2, Number.MAX_VALUE, 10_001, 1_000_000_000.01, true, null, [], {}),
        ),
      )
      .map(([at, key, value]): Mutation => ({ kind: 'set', at, key, value })),
  },
  { weight: 1, arbitrary: fc.constant<Mutation>({ kind: 'wrap' }) },
  { weight: 1, arbitrary: fc.nat().map((at): Mutation => ({ kind: 'truncate', at })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.nat(), fc.constantFrom('1e400', '-1e400', '1.0000000000000001', '00', '1.', '.5', '0x1', '1_0', '99999999999999999999'))
      .map(([at, literal]): Mutation => ({ kind: 'number', at, literal })),
  },
  { weight: 1, arbitrary: nastyString.map((text): Mutation => ({ kind: 'raw', text })) },
)

/** Applies a mutation to a valid body; a name of the system's own services is never registered. */
function mutate(valid: Record<string, unknown>, change: Mutation): string {
  const body: Record<string, unknown> = { ...valid }
  const keys = Object.keys(body)
  switch (change.kind) {
    case 'none':
      break
    case 'drop':
      delete body[keys[change.at % keys.length]!]
      break
    case 'set': {
      const key = change.key === '' ? keys[change.at % keys.length]! : change.key
      Object.defineProperty(body, key, { value: change.value, enumerable: true, writable: true, configurable: true })
      break
    }
    case 'wrap':
      return JSON.stringify([body])
    case 'truncate': {
      const full = JSON.stringify(body)
      return full.slice(0, change.at % full.length)
    }
    case 'number': {
      const key = keys[change.at % keys.length]!
      body[key] = 0
      return JSON.stringify(body).replace(`${JSON.stringify(key)}:0`, `${JSON.stringify(key)}:${change.literal}`)
    }
    case 'raw':
      return change.text
  }
  if (typeof body.service_name === 'string' && RESERVED_SERVICES.has(body.service_name)) body.service_name = FUZZ_SERVICES[0]
  if (typeof body.Name === 'string' && RESERVED_SERVICES.has(body.Name)) body.Name = FUZZ_SERVICES[0]
  return JSON.stringify(body)
}

type Route = keyof ReturnType<typeof validBodies>
const ROUTE = /^\/(products|orders|register|heartbeat|deregister)(?:[/?]|$)/
const CONSUL_REGISTER = /^\/v1\/agent\/service\/register(?:[/?]|$)/

/** `key=value&...`, each pair percent-encoded (mostly) or raw where the request line allows. */
function encodeQuery(pairs: ReadonlyArray<readonly [string, string, Encoding]>): string {
  return pairs
    .map(([key, value, how]) =>
      how === 'encoded'
        ? `${percentEncode(key)}=${percentEncode(value)}`
        : `${rawWhereAllowed(key, /^[\x21-\x22\x24-\x25\x27-\x3c\x3e-\xff]$/)}=${rawWhereAllowed(value, /^[\x21-\x22\x24-\x25\x27-\xff]$/)}`,
    )
    .join('&')
}

/** A query of known keys, each present or not, plus sometimes one unknown key. */
function knownQuery(values: Record<string, fc.Arbitrary<string>>): fc.Arbitrary<string> {
  const pairs = Object.entries(values).map(([key, value]) => fc.option(fc.tuple(fc.constant(key), value, encoding), { nil: undefined, freq: 2 }))
  const extra = fc.option(fc.tuple(fc.oneof(fc.constantFrom('offset', 'index', 'Limit', ''), nastyString), nastyString, encoding), { nil: undefined, freq: 5 })
  return fc.tuple(fc.tuple(...pairs), extra).map(([known, unknown]) => encodeQuery([...known, unknown].filter((pair) => pair !== undefined)))
}

const VIA_PRODUCT: readonly Role[] = ['product', 'gateway']
const VIA_ORDER: readonly Role[] = ['order', 'gateway']
const REGISTRY: readonly Role[] = ['registry']

interface Directed {
  roles: readonly Role[]
  method: string
  path: string
  headers?: Record<string, string>
  body?: string
}

type Tweak = { kind: 'none' } | { kind: 'method'; method: string } | { kind: 'tail'; tail: string } | { kind: 'content-type'; value: string } | { kind: 'headers' }

/**
 * Requests a route would accept, with at most one thing changed (a field of the body, the query,
 * an id, the method, the content type or a header): they get past the framework's first checks
 * to the code behind, where the interesting failures are.
 */
function directed(context: FuzzContext, nearValid: (route: Route) => fc.Arbitrary<string>, extraHeaders: fc.Arbitrary<Record<string, string>>): fc.Arbitrary<FuzzRequest> {
  const limit = fc.oneof(fc.integer({ min: -2, max: 120 }).map(String), fc.constantFrom('1e1', '0x10', '1.5', ' 5', ''), nastyString)
  const pageQuery = knownQuery({ limit, cursor: cursorLike(context) })
  const id = (known: string) => fc.oneof(fc.constant(known), fc.uuid().map(String), segment)
  const json = { 'content-type': 'application/json' }
  const specs: fc.Arbitrary<Directed>[] = [
    nearValid('products').map((body) => ({ roles: VIA_PRODUCT, method: 'POST', path: '/products', headers: json, body })),
    pageQuery.map((q) => ({ roles: VIA_PRODUCT, method: 'GET', path: q === '' ? '/products' : `/products?${q}` })),
    id(context.productId).map((p) => ({ roles: VIA_PRODUCT, method: 'GET', path: `/products/${p}` })),
    fc
      .tuple(nearValid('orders'), fc.option(fc.oneof(fc.uuid().map(String), fc.constantFrom('k', 'key-1'), headerValue), { nil: undefined, freq: 2 }))
      .map(([body, key]) => ({ roles: VIA_ORDER, method: 'POST', path: '/orders', headers: key === undefined ? json : { ...json, 'idempotency-key': key }, body })),
    pageQuery.map((q) => ({ roles: VIA_ORDER, method: 'GET', path: q === '' ? '/orders' : `/orders?${q}` })),
    id(context.productId).map((o) => ({ roles: VIA_ORDER, method: 'GET', path: `/orders/${o}` })),
    ...(['register', 'heartbeat', 'deregister'] as const).map((route) =>
      nearValid(route).map((body) => ({ roles: REGISTRY, method: 'POST', path: `/${route}`, headers: json, body })),
    ),
    fc.oneof(fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/), segment).map((i) => ({ roles: REGISTRY, method: 'DELETE', path: `/instances/${i}` })),
    nearValid('consulRegister').map((body) => ({ roles: REGISTRY, method: 'PUT', path: '/v1/agent/service/register', headers: json, body })),
    fc
      .tuple(
        fc.constantFrom('pass', 'fail', 'update'),
        fc.oneof(
          fc.constantFrom('service%3Afuzz-a', 'service:fuzz-a', `service%3A${FUZZ_SERVICES[1]}`, 'service%3A', '%3A'),
          fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/),
          segment,
        ),
        fc.oneof(fc.constantFrom('{"Status":"passing"}', '{"Status":"critical","Output":"x"}', '{"Status":"warning"}', ''), nastyString),
      )
      .map(([verb, id, body]) => ({ roles: REGISTRY, method: 'PUT', path: `/v1/agent/check/${verb}/${id}`, ...(verb === 'update' ? { headers: json, body } : {}) })),
    fc.oneof(fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/), segment).map((i) => ({ roles: REGISTRY, method: 'PUT', path: `/v1/agent/service/deregister/${i}` })),
    // Consul's reads; an index always comes with a short wait, so that no request blocks for minutes.
    fc
      .tuple(
        fc.constantFrom('/v1/catalog/service/', '/v1/health/service/'),
        fc.oneof(fc.constantFrom(...FUZZ_SERVICES, 'product'), segment),
        fc.option(fc.oneof(fc.integer({ min: -1, max: 60 }).map(String), nastyString.map(percentEncode)), { nil: undefined }),
        fc.constantFrom('', 'passing', 'passing=true', 'passing=1', 'passing=no', 'tag=v1', 'filter=x', 'dc=dc1', 'stale', 'wait=forever'),
      )
      .map(([base, name, index, extra]) => {
        const search = [index === undefined ? '' : `index=${index}&wait=20ms`, extra].filter((part) => part !== '').join('&')
        return { roles: REGISTRY, method: 'GET', path: `${base}${name}${search === '' ? '' : `?${search}`}` }
      }),
    fc.constantFrom('', '?service=fuzz-a', '?service=', '?service=%00', '?other=1').map((q) => ({ roles: REGISTRY, method: 'GET', path: `/sd/prometheus${q}` })),
    fc
      .constantFrom('/v1/agent/self', '/v1/catalog/datacenters', '/v1/catalog/services?index=1&wait=20ms', '/v1/catalog/services')
      .map((p) => ({ roles: REGISTRY, method: 'GET', path: p })),
    fc
      .tuple(
        fc.oneof(fc.constantFrom(...FUZZ_SERVICES, 'product', 'order', 'gateway'), segment),
        knownQuery({
          index: fc.oneof(fc.integer({ min: -1, max: 5 }).map(String), nastyString),
          wait: fc.oneof(fc.constantFrom('0ms', '10ms', '100ms', '1s'), nastyString),
          epoch: nastyString,
        }),
      )
      .map(([name, q]) => ({ roles: REGISTRY, method: 'GET', path: q === '' ? `/discover/${name}` : `/discover/${name}?${q}` })),
    fc.constantFrom('/health/live', '/health/ready', '/metrics', '/openapi.json', '/services', '/docs/json').map((p) => ({ roles: ROLES, method: 'GET', path: p })),
  ]
  const tweak: fc.Arbitrary<Tweak> = fc.oneof(
    { weight: 12, arbitrary: fc.constant<Tweak>({ kind: 'none' }) },
    { weight: 1, arbitrary: fc.constantFrom(...METHODS).map((method): Tweak => ({ kind: 'method', method })) },
    { weight: 1, arbitrary: fc.constantFrom('/', '//', '/.', '/..', '/x', '%00', '%2F..', '/%2e%2e').map((tail): Tweak => ({ kind: 'tail', tail })) },
    { weight: 1, arbitrary: fc.oneof(fc.constantFrom(...CONTENT_TYPES), headerValue).map((value): Tweak => ({ kind: 'content-type', value })) },
    { weight: 2, arbitrary: fc.constant<Tweak>({ kind: 'headers' }) },
  )
  return fc.tuple(fc.oneof(...specs), fc.nat(), tweak, extraHeaders).map(([spec, which, change, more]): FuzzRequest => {
    const request: FuzzRequest = { role: spec.roles[which % spec.roles.length]!, method: spec.method, path: spec.path, headers: { ...spec.headers } }
    if (spec.body !== undefined) request.body = spec.body
    if (change.kind === 'method') request.method = change.method
    if (change.kind === 'tail') {
      const mark = request.path.indexOf('?')
      request.path = mark < 0 ? request.path + change.tail : request.path.slice(0, mark) + change.tail + request.path.slice(mark)
    }
    if (change.kind === 'content-type') request.headers['content-type'] = change.value
    if (change.kind === 'headers') request.headers = { ...more, ...request.headers }
    return request
  })
}

/** Anything: any role, path, query, method, headers and body. */
function wild(context: FuzzContext, nearValid: (route: Route) => fc.Arbitrary<string>, anyBody: fc.Arbitrary<string | undefined>): fc.Arbitrary<FuzzRequest> {
  // A path of a route with a body gets that route's body (changed) more often than not.
  const routeBody = Object.fromEntries(
    (Object.keys(validBodies(context)) as Route[]).map((route) => [route, fc.oneof({ weight: 3, arbitrary: nearValid(route) }, { weight: 1, arbitrary: anyBody })]),
  ) as Record<Route, fc.Arbitrary<string | undefined>>
  const paths = Object.fromEntries(ROLES.map((role) => [role, path(role, context)])) as Record<Role, fc.Arbitrary<string>>
  const headerSets = headers()
  return fc
    .constantFrom(...ROLES)
    .chain((role) => fc.tuple(fc.constant(role), paths[role]))
    .chain(([role, target]) => {
      const route = (ROUTE.exec(target)?.[1] ?? (CONSUL_REGISTER.test(target) ? 'consulRegister' : undefined)) as Route | undefined
      return fc.record({
        role: fc.constant(role),
        method: fc.constantFrom(...METHODS),
        path: fc.constant(target),
        headers: headerSets,
        body: route === undefined ? anyBody : routeBody[route],
      })
    })
    .map(({ body, ...request }) => (body === undefined ? request : { ...request, body }))
}

/** One request to one role, or to a service through the gateway: near-valid more often than wild. */
export function fuzzRequest(context: FuzzContext): fc.Arbitrary<FuzzRequest> {
  // Every arbitrary is built once, here: `chain` only picks among them (building them for each
  // value, fc.stringMatching above all, costs more than sending the request).
  const valid = validBodies(context)
  const nearValid = (route: Route) => fc.tuple(valid[route] as fc.Arbitrary<Record<string, unknown>>, mutation).map(([v, m]) => mutate(v, m))
  const anyBody: fc.Arbitrary<string | undefined> = fc.oneof(
    { weight: 2, arbitrary: fc.constant(undefined) },
    { weight: 6, arbitrary: fc.oneof(...(Object.keys(valid) as Route[]).map(nearValid)) },
    { weight: 2, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 1, arbitrary: nastyString },
  )
  return fc.oneof({ weight: 3, arbitrary: directed(context, nearValid, headers()) }, { weight: 2, arbitrary: wild(context, nearValid, anyBody) }).map(({ body, ...request }) => {
    // No body on GET, HEAD and OPTIONS: undici refuses some and a proxy may drop them.
    const withBody = body !== undefined && request.method !== 'GET' && request.method !== 'HEAD' && request.method !== 'OPTIONS'
    // A blocking discovery (`?index=`) waits 30 s unless told otherwise: bound it.
    if (request.role === 'registry' && /[?&]index=/.test(request.path) && !/[?&]wait=/.test(request.path)) request.path += '&wait=100ms'
    return withBody ? { ...request, body } : request
  })
}
