import type { FastifyReply, FastifyRequest } from 'fastify'
import type { JWTPayload, JWTVerifyOptions } from 'jose'
import { isSubject, SUBJECT_HEADER } from '../contracts/auth.ts'
import { sendProblem, type App } from '../http/app.ts'
import { defineErrors, type ProblemKind } from '../http/errors.ts'
import type { Logger } from '../lib/logger.ts'
import { upstreamTarget } from './routing.ts'

/** GATEWAY_JWT_*: how the gateway checks bearer tokens. Unset (undefined): it does not. */
export interface GatewayAuthOptions {
  /** HS256 with a shared secret (GATEWAY_JWT_SECRET), or the public keys a JWKS URL serves (GATEWAY_JWKS_URL). */
  keys: { kind: 'secret'; secret: string } | { kind: 'jwks'; url: string }
  /** GATEWAY_JWT_ISSUER: when set, the token's `iss` must be this. */
  issuer: string | undefined
  /** GATEWAY_JWT_AUDIENCE: when set, the token's `aud` must be or include this. */
  audience: string | undefined
}

/** What the gateway answers for itself when a request may not pass. */
const authError = defineErrors({
  UNAUTHENTICATED: { status: 401, title: 'Authentication required' },
  INVALID_TOKEN: { status: 401, title: 'The bearer token is not valid' },
  AUTH_UNAVAILABLE: { status: 503, title: 'Tokens cannot be checked just now' },
})

/** What a request that needs a token may be answered (for the OpenAPI document). */
export const AUTH_PROBLEMS: readonly ProblemKind[] = [authError.kind('UNAUTHENTICATED'), authError.kind('INVALID_TOKEN'), authError.kind('AUTH_UNAVAILABLE')]

export type TokenVerdict = { ok: true; subject: string } | { ok: false; code: 'INVALID_TOKEN' | 'AUTH_UNAVAILABLE'; reason: string }

export interface TokenVerifier {
  verify: (token: string) => Promise<TokenVerdict>
}

// Algorithms are pinned, never taken from the token: `none` is never accepted, and a key of one
// kind is never used as another (an RSA public key as an HMAC secret). A JWKS serves public keys
// only, so only the asymmetric algorithms are accepted with one; jose also holds each key to the
// `alg` it names, and refuses symmetric keys in a key set.
const SECRET_ALGORITHMS = ['HS256']
const JWKS_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']

/** Clocks differ a little between the issuer and the gateway. */
const CLOCK_TOLERANCE_SECONDS = 5

type Jose = typeof import('jose')
let jose: Promise<Jose> | undefined
/** jose, loaded by the first token checked: a gateway without authentication (the default) never carries it. */
const loadJose = (): Promise<Jose> => {
  jose ??= import('jose')
  return jose
}

/** Errors that say the key set could not be had (unreachable, slow, not a key set), not that the token is bad. */
function keysUnavailable(error: unknown, errors: Jose['errors']): boolean {
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid) return true
  // jose's plain JOSEError is its "the JWKS answered something other than 200 JSON".
  if (error instanceof errors.JOSEError) return error.code === errors.JOSEError.code
  // fetch's own failures (connection refused, DNS): not jose's.
  return true
}

export interface TokenVerifierOptions {
  /** Bound on one fetch of the JWKS. */
  jwksTimeoutMs?: number
  /** The clock the claims are checked against (tests). */
  now?: () => Date
}

/**
 * Checks a compact JWS token: signature (with the pinned algorithms), `exp` (required), `nbf`,
 * and `iss` and `aud` when configured; the subject (`sub`, required) must be one the services
 * can be told in a header. The JWKS is fetched when first needed and cached by jose (refreshed
 * every 10 minutes, and at most every 30 s for a token signed by a key it does not know yet).
 */
export function tokenVerifier(options: GatewayAuthOptions, settings: TokenVerifierOptions = {}): TokenVerifier {
  const base: JWTVerifyOptions = {
    requiredClaims: ['sub', 'exp'],
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    ...(options.issuer === undefined ? {} : { issuer: options.issuer }),
    ...(options.audience === undefined ? {} : { audience: options.audience }),
  }
  const withNow = (): JWTVerifyOptions => (settings.now ? { ...base, currentDate: settings.now() } : base)
  let check: (token: string) => Promise<JWTPayload>
  const { keys } = options
  if (keys.kind === 'secret') {
    const secret = new TextEncoder().encode(keys.secret)
    check = async (token) => (await (await loadJose()).jwtVerify(token, secret, { ...withNow(), algorithms: SECRET_ALGORITHMS })).payload
  } else {
    // One key set for the verifier's life (jose caches its keys in it), made with the first token.
    let jwks: ReturnType<Jose['createRemoteJWKSet']> | undefined
    check = async (token) => {
      const { createRemoteJWKSet, jwtVerify } = await loadJose()
      jwks ??= createRemoteJWKSet(new URL(keys.url), { timeoutDuration: settings.jwksTimeoutMs ?? 5000 })
      return (await jwtVerify(token, jwks, { ...withNow(), algorithms: JWKS_ALGORITHMS })).payload
    }
  }
  return {
    async verify(token) {
      let payload: JWTPayload
      try {
        payload = await check(token)
      } catch (error) {
        const { errors } = await loadJose()
        if (keys.kind === 'jwks' && keysUnavailable(error, errors)) {
          return { ok: false, code: 'AUTH_UNAVAILABLE', reason: error instanceof Error ? error.message : String(error) }
        }
        // jose's code (ERR_JWT_EXPIRED, ERR_JOSE_ALG_NOT_ALLOWED, ...) says why, without the token.
        const reason = error instanceof errors.JOSEError ? error.code : error instanceof Error ? error.name : 'error'
        return { ok: false, code: 'INVALID_TOKEN', reason }
      }
      if (!isSubject(payload.sub)) return { ok: false, code: 'INVALID_TOKEN', reason: 'unusable_subject' }
      return { ok: true, subject: payload.sub }
    },
  }
}

// RFC 6750's b64token, generously bounded; anything else in the header is no bearer token.
const BEARER = /^Bearer[ \t]+([\x21-\x7e]{1,8192})[ \t]*$/i

/** The bearer token of the request, or undefined when there is none (or the header is malformed). */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  if (typeof header !== 'string') return undefined
  return BEARER.exec(header)?.[1]
}

/**
 * Whether this request reads a prefix that is open to everyone: GET or HEAD of the prefix or below
 * it, as the gateway would forward it (a path that could resolve elsewhere, `/products/../orders`,
 * is no read of `/products`).
 */
export function isPublicRead(method: string, url: string, publicPrefixes: readonly string[]): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false
  return publicPrefixes.some((prefix) => !('refused' in upstreamTarget(url, prefix)))
}

/** Reads of the product catalogue are open to everyone; every other routed request needs a token. */
export const PUBLIC_READ_PREFIXES: readonly string[] = ['/products']

export interface GatewayAuthHookOptions {
  /** Undefined: no authentication (the default), every request passes as anonymous. */
  auth: GatewayAuthOptions | undefined
  logger: Logger
  publicReadPrefixes?: readonly string[]
  verifier?: TokenVerifier
}

function refuse(request: FastifyRequest, reply: FastifyReply, code: 'UNAUTHENTICATED' | 'INVALID_TOKEN' | 'AUTH_UNAVAILABLE'): FastifyReply {
  if (code === 'AUTH_UNAVAILABLE') {
    reply.header('retry-after', '5')
    return sendProblem(reply, authError(code, 'The gateway cannot fetch the keys that tokens are checked with; try again shortly').toProblem(request.url))
  }
  // RFC 6750: a request without credentials gets no error code; a bad token gets invalid_token.
  reply.header('www-authenticate', code === 'UNAUTHENTICATED' ? 'Bearer realm="gateway"' : 'Bearer realm="gateway", error="invalid_token"')
  const detail =
    code === 'UNAUTHENTICATED'
      ? 'This request needs a token as Authorization: Bearer <token>'
      : 'The bearer token is malformed, expired, not yet valid, signed with another key or algorithm, or for another issuer or audience'
  return sendProblem(reply, authError(code, detail).toProblem(request.url))
}

/**
 * Adds the gateway's authentication to the routes of `app` (the proxied ones; the gateway's own
 * health, metrics and documents are registered elsewhere and stay open).
 *
 * Always, auth on or off: the subject header a client sent is removed, so that nobody can claim a
 * subject. With auth on: reads of the public prefixes pass as anonymous; any other request needs
 * a valid bearer token (401 otherwise), and its subject is set in the header for the service.
 * Runs on onRequest, before the body is read, so a refused request costs no upload.
 */
export function registerGatewayAuth(app: App, options: GatewayAuthHookOptions): void {
  const { auth, logger } = options
  const publicPrefixes = options.publicReadPrefixes ?? PUBLIC_READ_PREFIXES
  const verifier = auth === undefined ? undefined : (options.verifier ?? tokenVerifier(auth))
  if (verifier === undefined) {
    // Authentication off: only the claim is removed, without a promise per request.
    app.addHook('onRequest', function dropSubject(request, _reply, done) {
      // The proxy copies the request's headers (request.raw.headers) when it forwards. (Deleting
      // only when present: a delete makes the headers object slower for everything after it.)
      if (request.raw.headers[SUBJECT_HEADER] !== undefined) delete request.raw.headers[SUBJECT_HEADER]
      done()
    })
    return
  }
  app.addHook('onRequest', async function authenticate(request, reply) {
    if (request.raw.headers[SUBJECT_HEADER] !== undefined) delete request.raw.headers[SUBJECT_HEADER]
    if (isPublicRead(request.method, request.url, publicPrefixes)) return
    const token = bearerToken(request)
    if (token === undefined) return refuse(request, reply, 'UNAUTHENTICATED')
    const verdict = await verifier.verify(token)
    if (!verdict.ok) {
      if (verdict.code === 'AUTH_UNAVAILABLE') logger.warn({ event: 'auth_unavailable', reason: verdict.reason }, 'cannot fetch the JWKS to check a token')
      else request.log.debug({ event: 'auth_refused', reason: verdict.reason }, 'bearer token refused')
      return refuse(request, reply, verdict.code)
    }
    request.raw.headers[SUBJECT_HEADER] = verdict.subject
  })
}
