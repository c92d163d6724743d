import { hash, timingSafeEqual } from 'node:crypto'
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import type { IncomingMessage } from 'node:http'
import { Type, type Static } from 'typebox'
import { Compile } from 'typebox/compile'
import type { AppError } from '../http/errors.ts'
import { describe } from '../lib/errors.ts'
import type { Logger } from '../lib/logger.ts'
import { SERVICE_NAME_PATTERN } from '../protocol/registry.ts'
import { registryError } from './errors.ts'

// Who may write what. Three kinds of token, all sent as `Authorization: Bearer <token>`:
// - the admin token (REGISTRY_TOKEN): writes any service, owns what it registers;
// - scoped tokens (REGISTRY_ACL_FILE): write only their services, and only instances they own;
// - the read token (REGISTRY_READ_TOKEN): reads, when reads need a token at all.
// With no write token configured the registry is in protected mode: writes from loopback only.

/** Who sent a request, once its token is known. */
export type Principal =
  | { readonly kind: 'admin'; readonly owner: string }
  | { readonly kind: 'scoped'; readonly owner: string; readonly name: string; readonly services: readonly string[] }
  | { readonly kind: 'read' }
  /** Protected mode: a loopback peer, trusted as an admin. */
  | { readonly kind: 'loopback'; readonly owner: string }

export const ADMIN_OWNER = 'token:admin'
export const LOOPBACK_OWNER = 'loopback'

const SERVICE_OR_PREFIX = `${SERVICE_NAME_PATTERN}|^[a-z0-9._-]{0,63}\\*$`

/** `REGISTRY_ACL_FILE`: scoped tokens, by the SHA-256 of the token (the file holds no secret). */
export const AclFile = Type.Object(
  {
    tokens: Type.Array(
      Type.Object(
        {
          name: Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$' }),
          sha256: Type.String({ pattern: '^[0-9a-fA-F]{64}$' }),
          services: Type.Array(Type.String({ pattern: SERVICE_OR_PREFIX }), { minItems: 1, maxItems: 256 }),
        },
        { additionalProperties: false },
      ),
      { maxItems: 10_000 },
    ),
  },
  { additionalProperties: false },
)
export type AclFile = Static<typeof AclFile>
const checkAcl = Compile(AclFile)

interface ScopedToken {
  name: string
  digest: Buffer
  services: readonly string[]
}

const sha256 = (text: string): Buffer => hash('sha256', text, 'buffer')

/** Parses an ACL file's text; throws an Error that says what is wrong (never echoing a digest). */
export function parseAcl(text: string): ScopedToken[] {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new Error(`not valid JSON (${describe(error)})`)
  }
  if (!checkAcl.Check(value)) {
    const first = checkAcl.Errors(value)[0]
    throw new Error(`does not match {"tokens":[{"name","sha256","services":[...]}]}: ${first ? `${first.instancePath || '/'} ${first.message}` : 'invalid'}`)
  }
  // A name may appear more than once: one owner with several tokens, as during a rotation (the
  // new token's entry is added, services move onto it, the old entry is removed).
  const digests = new Set<string>()
  for (const token of value.tokens) {
    const digest = token.sha256.toLowerCase()
    if (digests.has(digest)) throw new Error(`the token of ${token.name} (by its sha256) appears twice`)
    digests.add(digest)
  }
  return value.tokens.map((token) => ({ name: token.name, digest: Buffer.from(token.sha256, 'hex'), services: token.services }))
}

/** Whether a scoped token's list (names, and prefixes ending in `*`) covers a service. */
export function serviceAllowed(services: readonly string[], serviceName: string): boolean {
  return services.some((entry) => (entry.endsWith('*') ? serviceName.startsWith(entry.slice(0, -1)) : entry === serviceName))
}

/** True for 127.0.0.0/8, ::1 and their IPv4-mapped forms: a peer on this machine. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address
  return v4.startsWith('127.') || address === '::1'
}

export interface RegistryAuthOptions {
  /** REGISTRY_TOKEN: writes anything. */
  adminToken?: string
  /** REGISTRY_READ_TOKEN: when set, reads need it (or any write token). */
  readToken?: string
  /** REGISTRY_ACL_FILE: scoped tokens, re-read on `reload()` and when the file changes. */
  aclFile?: string
  logger: Logger
}

/** Why a request may not do what it asks: a registry error code and its detail. */
export interface Refusal {
  code: 'UNAUTHORIZED' | 'PROTECTED_MODE' | 'TOKEN_NOT_ALLOWED' | 'NOT_OWNER'
  detail: string
}

export type WriteDecision = { ok: true; principal: Exclude<Principal, { kind: 'read' }> } | { ok: false; refusal: Refusal }

/** `WWW-Authenticate` of a 401: a bearer token is what the registry asks for. */
export const CHALLENGE = 'Bearer realm="registry"'

/**
 * The answer to a refused request, with the challenge on a 401. Built only by the route that
 * answers: a fast path that merely declines a request pays for no error (and no stack trace).
 */
export function refusalError(refusal: Refusal, setHeader: (name: string, value: string) => void): AppError {
  if (refusal.code === 'UNAUTHORIZED') setHeader('www-authenticate', CHALLENGE)
  return registryError(refusal.code, refusal.detail)
}

const READ_REFUSAL: Refusal = { code: 'UNAUTHORIZED', detail: 'Reads need a registry token (REGISTRY_READ_TOKEN or a write token) as Authorization: Bearer <token>' }
const PROTECTED_REFUSAL: Refusal = {
  code: 'PROTECTED_MODE',
  detail:
    'The registry has no token configured, so it accepts writes from this machine (loopback) only. Set REGISTRY_TOKEN (or REGISTRY_TOKEN_FILE) on the registry and on its clients to register from elsewhere.',
}
const WRITE_REFUSAL: Refusal = { code: 'UNAUTHORIZED', detail: 'Writes need a registry token as Authorization: Bearer <token> (REGISTRY_TOKEN on clients)' }

const BEARER = /^Bearer[ \t]+([\x21-\x7e]{1,4096})[ \t]*$/i
const UNKNOWN = Symbol('unknown token')

/**
 * Checks tokens (in constant time: every configured digest is compared, whatever matches) and
 * decides writes. Tokens are held as SHA-256 digests and never logged.
 */
export class RegistryAuth {
  readonly #admin: Buffer | undefined
  readonly #read: Buffer | undefined
  readonly #aclFile: string | undefined
  readonly #logger: Logger
  #scoped: ScopedToken[] = []
  /** Bumped when the tokens change: what connections remember from before no longer counts. */
  #generation = 0
  readonly #byConnection = new WeakMap<object, { header: string; generation: number; principal: Principal | typeof UNKNOWN }>()
  #watcher: FSWatcher | undefined
  #reloadTimer: NodeJS.Timeout | undefined

  constructor(options: RegistryAuthOptions) {
    this.#admin = options.adminToken === undefined ? undefined : sha256(options.adminToken)
    this.#read = options.readToken === undefined ? undefined : sha256(options.readToken)
    this.#aclFile = options.aclFile
    this.#logger = options.logger
  }

  /** Reads the ACL file (if any) for the first time: an unreadable or invalid file is an error. */
  loadSync(): void {
    if (this.#aclFile === undefined) return
    this.#scoped = parseAcl(readFileSync(this.#aclFile, 'utf8'))
  }

  /** Re-reads the ACL file; a file that cannot be read or parsed keeps the tokens in force. */
  async reload(reason: string): Promise<boolean> {
    if (this.#aclFile === undefined) return false
    try {
      const scoped = parseAcl(await readFile(this.#aclFile, 'utf8'))
      this.#scoped = scoped
      this.#generation++
      this.#logger.info({ event: 'acl_reloaded', reason, file: this.#aclFile, tokens: scoped.map((t) => t.name) }, `ACL reloaded: ${scoped.length} scoped tokens`)
      return true
    } catch (error) {
      this.#logger.error(
        { event: 'acl_reload_failed', reason, file: this.#aclFile, err_message: describe(error) },
        'ACL file could not be loaded; the previous tokens stay in force',
      )
      return false
    }
  }

  /** Re-reads the ACL file when it changes (written in place, or replaced as a Kubernetes secret is). */
  watch(): void {
    if (this.#aclFile === undefined || this.#watcher) return
    const file = this.#aclFile
    try {
      this.#watcher = watch(dirname(file), { persistent: false }, (_event, name) => {
        if (name !== null && name !== basename(file) && !name.startsWith('..')) return
        // Editors and secret mounts write in several steps: reload once they are done.
        clearTimeout(this.#reloadTimer)
        this.#reloadTimer = setTimeout(() => void this.reload('file changed'), 100)
        this.#reloadTimer.unref()
      })
      this.#watcher.on('error', (error) => this.#logger.warn({ event: 'acl_watch_failed', err_message: describe(error) }, 'cannot watch the ACL file; reload it with SIGHUP'))
    } catch (error) {
      this.#logger.warn({ event: 'acl_watch_failed', err_message: describe(error) }, 'cannot watch the ACL file; reload it with SIGHUP')
    }
  }

  close(): void {
    clearTimeout(this.#reloadTimer)
    this.#watcher?.close()
    this.#watcher = undefined
  }

  /** Whether any write token is configured; without one, writes come from loopback only. */
  get protectedMode(): boolean {
    return this.#admin === undefined && this.#aclFile === undefined
  }

  /** Whether reads need a token. */
  get readsNeedToken(): boolean {
    return this.#read !== undefined
  }

  /**
   * The request's principal: undefined without a token, UNKNOWN for a token nobody holds. A
   * kept-alive client sends the same header with every request: the answer is kept on its
   * connection (hashing each time cost more than the rest of a discovery answer) until the header
   * or the tokens change. Comparing with the header the same client sent before reveals nothing.
   */
  #principal(request: IncomingMessage): Principal | typeof UNKNOWN | undefined {
    // Consul's clients send their token as X-Consul-Token: the same token, another header.
    const consulToken = request.headers['x-consul-token']
    const header = request.headers.authorization ?? (typeof consulToken === 'string' && consulToken !== '' ? `Bearer ${consulToken}` : undefined)
    if (header === undefined) return undefined
    const cached = this.#byConnection.get(request.socket)
    if (cached !== undefined && cached.header === header && cached.generation === this.#generation) return cached.principal
    const principal = this.#identify(header)
    this.#byConnection.set(request.socket, { header, generation: this.#generation, principal })
    return principal
  }

  #identify(header: string): Principal | typeof UNKNOWN {
    const match = BEARER.exec(header)
    if (!match) return UNKNOWN
    const digest = sha256(match[1]!)
    // Compare with every digest, match or not, so that timing says nothing about which matched.
    let found: Principal | undefined
    if (this.#admin && timingSafeEqual(digest, this.#admin)) found = { kind: 'admin', owner: ADMIN_OWNER }
    for (const token of this.#scoped) {
      if (timingSafeEqual(digest, token.digest) && found === undefined) {
        found = { kind: 'scoped', owner: `acl:${token.name}`, name: token.name, services: token.services }
      }
    }
    if (this.#read && timingSafeEqual(digest, this.#read) && found === undefined) found = { kind: 'read' }
    return found ?? UNKNOWN
  }

  /** Whether the request may read (always, unless REGISTRY_READ_TOKEN is set). */
  mayRead(request: IncomingMessage): boolean {
    if (this.#read === undefined) return true
    const principal = this.#principal(request)
    return principal !== undefined && principal !== UNKNOWN
  }

  /** Why a read `mayRead` refused is refused. */
  readonly readRefusal: Refusal = READ_REFUSAL

  /**
   * Whether the request may write `serviceName`, and change an instance owned by `owner` (when the
   * instance exists). Admin and loopback (protected mode) may change anything; a scoped token only
   * its services' instances that it registered itself. Without a service (a write naming an
   * instance that does not exist), only whether the caller may write at all.
   */
  mayWrite(request: IncomingMessage, serviceName: string | undefined, owner: string | undefined): WriteDecision {
    if (this.protectedMode) {
      if (isLoopback(request.socket.remoteAddress)) return { ok: true, principal: { kind: 'loopback', owner: LOOPBACK_OWNER } }
      return { ok: false, refusal: PROTECTED_REFUSAL }
    }
    const principal = this.#principal(request)
    if (principal === undefined || principal === UNKNOWN) return { ok: false, refusal: WRITE_REFUSAL }
    if (principal.kind === 'read') return { ok: false, refusal: { code: 'TOKEN_NOT_ALLOWED', detail: 'This token may only read' } }
    if (principal.kind === 'scoped' && serviceName !== undefined) {
      if (!serviceAllowed(principal.services, serviceName)) {
        return { ok: false, refusal: { code: 'TOKEN_NOT_ALLOWED', detail: `Token ${principal.name} may not write service ${serviceName}` } }
      }
      if (owner !== undefined && owner !== principal.owner) {
        return {
          ok: false,
          refusal: { code: 'NOT_OWNER', detail: `This instance of ${serviceName} was registered with another token: only that token (or the admin token) may change it` },
        }
      }
    }
    return { ok: true, principal }
  }
}
