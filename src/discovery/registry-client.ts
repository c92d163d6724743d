import { Agent, type Dispatcher } from 'undici'
import { describe } from '../lib/errors.ts'
import { Compile } from 'typebox/compile'
import { DiscoverResponse, Instance, REGISTRY_HEADERS, type HeartbeatBody, type InstanceRef, type InstanceView, type RegisterBody } from '../protocol/registry.ts'

export type RegistryInstance = InstanceView
const checkInstance = Compile(Instance)
const checkDiscover = Compile(DiscoverResponse)

/** The registry could not be reached, or answered with something we cannot use. */
export class RegistryUnavailableError extends Error {
  readonly registry: string
  constructor(registry: string, message: string, options?: { cause?: unknown }) {
    super(`registry ${registry}: ${message}`, options)
    this.name = 'RegistryUnavailableError'
    this.registry = registry
  }
}

/**
 * The registry refused our token (401: missing or unknown; 403: not allowed to do this). Not an
 * outage: trying again, or another registry of the same cluster, will not help.
 */
export class RegistryAuthError extends Error {
  readonly registry: string
  readonly status: 401 | 403
  /** The registry's error code, e.g. UNAUTHORIZED, PROTECTED_MODE, TOKEN_NOT_ALLOWED, NOT_OWNER. */
  readonly code: string
  constructor(registry: string, status: 401 | 403, code: string, message: string) {
    super(`registry ${registry}: ${message}`)
    this.name = 'RegistryAuthError'
    this.registry = registry
    this.status = status
    this.code = code
  }
}

export interface RegistryClientOptions {
  /** One or more registry base URLs; on a connection failure the next one is tried. */
  urls: readonly string[]
  /** Sent as `Authorization: Bearer <token>` with every request (the registry's REGISTRY_TOKEN, or a scoped one). */
  token?: string
  timeoutMs?: number
  agent?: Agent
}

type Outcome<T> = { status: 'ok'; value: T; headers: Record<string, string | string[] | undefined> } | { status: 'not_found' }

/** A discovery answer with what a watcher needs to ask for the next change. */
export interface DiscoveryView {
  instances: RegistryInstance[]
  /** The service's index: pass it back to block until it changes. */
  index: number
  /** Identifies the registry process; a new epoch means a restarted (or another) registry. */
  epoch: string
  /** Milliseconds of the registry's warm-up left: it may not know every instance yet. */
  warmupMs: number
  registry: string
}

export interface BlockingOptions {
  index: number
  epoch: string
  waitMs: number
}

const header = (headers: Record<string, string | string[] | undefined>, name: string): string => {
  const value = headers[name]
  return Array.isArray(value) ? (value[0] ?? '') : (value ?? '')
}

/**
 * A thin, typed client for the registry's HTTP API. Responses are validated before use; a
 * connection failure moves on to the next registry in the list (and stays there while it works).
 */
export class RegistryClient {
  readonly #urls: readonly string[]
  readonly #timeoutMs: number
  readonly #agent: Agent
  readonly #ownsAgent: boolean
  readonly #authorization: Record<string, string>
  #current = 0

  constructor(options: RegistryClientOptions) {
    if (options.urls.length === 0) throw new RangeError('RegistryClient needs at least one registry URL')
    this.#urls = options.urls
    this.#timeoutMs = options.timeoutMs ?? 2000
    this.#ownsAgent = options.agent === undefined
    this.#authorization = options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }
    this.#agent = options.agent ?? new Agent({ connect: { timeout: this.#timeoutMs }, keepAliveTimeout: 30_000 })
  }

  /** The registry currently in use. */
  get currentUrl(): string {
    return this.#urls[this.#current]!
  }

  async register(body: RegisterBody): Promise<RegistryInstance> {
    const outcome = await this.#call('POST', '/register', body, (v) => checkInstance.Check(v))
    if (outcome.status !== 'ok') throw new RegistryUnavailableError(this.currentUrl, 'POST /register answered 404')
    return outcome.value
  }

  /** `undefined` when the registry does not know the instance (it must register again). */
  async heartbeat(ref: HeartbeatBody): Promise<RegistryInstance | undefined> {
    const outcome = await this.#call('POST', '/heartbeat', ref, (v) => checkInstance.Check(v))
    return outcome.status === 'ok' ? outcome.value : undefined
  }

  async deregister(ref: InstanceRef): Promise<boolean> {
    const outcome = await this.#call('POST', '/deregister', ref, (v) => checkInstance.Check(v))
    return outcome.status === 'ok'
  }

  /**
   * Discovery with the registry's index and epoch; with `blocking`, a long poll that answers when
   * the service changes (or the wait ends). A blocking call waits on one registry only: on
   * failure the next call starts at the next registry.
   */
  async watch(serviceName: string, blocking?: BlockingOptions, signal?: AbortSignal): Promise<DiscoveryView> {
    const query = blocking ? `?index=${blocking.index}&epoch=${encodeURIComponent(blocking.epoch)}&wait=${Math.max(1, Math.round(blocking.waitMs))}ms` : ''
    const path = `/discover/${encodeURIComponent(serviceName)}${query}`
    const check = (v: unknown) => checkDiscover.Check(v)
    const timeoutMs = blocking ? blocking.waitMs + this.#timeoutMs : undefined
    const outcome = blocking ? await this.#single('GET', path, undefined, check, timeoutMs, signal) : await this.#call('GET', path, undefined, check)
    if (outcome.status !== 'ok') throw new RegistryUnavailableError(this.currentUrl, 'GET /discover answered 404')
    return {
      instances: outcome.value.instances,
      index: Number(header(outcome.headers, REGISTRY_HEADERS.index)) || 0,
      epoch: header(outcome.headers, REGISTRY_HEADERS.epoch),
      warmupMs: Number(header(outcome.headers, REGISTRY_HEADERS.warmup)) || 0,
      registry: this.currentUrl,
    }
  }

  async #single<T>(method: 'GET' | 'POST', path: string, body: unknown, check: (value: unknown) => value is T, timeoutMs?: number, signal?: AbortSignal): Promise<Outcome<T>> {
    const base = this.currentUrl
    try {
      return await this.#once(base, method, path, body, check, timeoutMs, signal)
    } catch (error) {
      this.#current = (this.#current + 1) % this.#urls.length
      throw error
    }
  }

  async close(): Promise<void> {
    if (this.#ownsAgent) await this.#agent.close()
  }

  async #call<T>(method: 'GET' | 'POST', path: string, body: unknown, check: (value: unknown) => value is T): Promise<Outcome<T>> {
    let lastError: unknown
    for (let tried = 0; tried < this.#urls.length; tried++) {
      const base = this.#urls[this.#current]!
      try {
        return await this.#once(base, method, path, body, check)
      } catch (error) {
        if (error instanceof RegistryAuthError) throw error
        lastError = error
        // Try the next registry; remember it, so later calls start there.
        this.#current = (this.#current + 1) % this.#urls.length
      }
    }
    throw lastError instanceof RegistryUnavailableError ? lastError : new RegistryUnavailableError(this.currentUrl, 'unreachable', { cause: lastError })
  }

  async #once<T>(
    base: string,
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    check: (value: unknown) => value is T,
    timeoutMs = this.#timeoutMs,
    signal?: AbortSignal,
  ): Promise<Outcome<T>> {
    const url = new URL(base)
    let response: Dispatcher.ResponseData
    try {
      response = await this.#agent.request({
        origin: url.origin,
        path: `${url.pathname.replace(/\/$/, '')}${path}`,
        method,
        headers: {
          ...this.#authorization,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        ...(signal ? { signal } : {}),
      })
    } catch (error) {
      throw new RegistryUnavailableError(base, `${method} ${path} failed: ${describe(error)}`, { cause: error })
    }
    if (response.statusCode === 404) {
      await response.body.dump()
      return { status: 'not_found' }
    }
    if (response.statusCode === 401 || response.statusCode === 403) {
      const text = await response.body.text().catch(() => '')
      let problem: { code?: unknown; detail?: unknown } = {}
      try {
        problem = JSON.parse(text) as typeof problem
      } catch {}
      const code = typeof problem.code === 'string' ? problem.code : response.statusCode === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN'
      const detail = typeof problem.detail === 'string' ? problem.detail : text.slice(0, 200)
      throw new RegistryAuthError(base, response.statusCode, code, `${method} ${path} answered ${response.statusCode} ${code}: ${detail}`)
    }
    if (response.statusCode < 200 || response.statusCode >= 300) {
      const text = await response.body.text().catch(() => '')
      throw new RegistryUnavailableError(base, `${method} ${path} answered ${response.statusCode}: ${text.slice(0, 200)}`)
    }
    let value: unknown
    try {
      value = await response.body.json()
    } catch (error) {
      throw new RegistryUnavailableError(base, `${method} ${path} answered with invalid JSON`, { cause: error })
    }
    if (!check(value)) throw new RegistryUnavailableError(base, `${method} ${path} answered with an unexpected body`)
    return { status: 'ok', value, headers: response.headers }
  }
}
