import { Readable } from 'node:stream'
import type { FastifyReply } from 'fastify'
import { Agent, type Dispatcher } from 'undici'
import { AttemptFailure } from '../discovery/failures.ts'

// One proxied attempt over undici's dispatch API: the request goes out with the caller's body
// streamed, and the answer comes back through a handler that writes it to the Fastify reply, with
// no stream in between when it is small. (@fastify/reply-from did this through undici's request
// API, a body stream per answer and a pipe into the reply: a profile under load showed those
// layers as the largest part of the gateway's own time.) Everything Fastify does around a reply
// still runs: onSend hooks (`Connection: close` while draining), onResponse hooks (metrics, the
// request log line).

/** Answers with a declared length up to this are read whole, then sent as one write; larger or unbounded ones stream. */
export const BUFFERED_ANSWER_BYTES = 64 * 1024

export interface ProxyAgentOptions {
  connectTimeoutMs: number
  /** Bound on the answer's head, and on each pause within its body. */
  timeoutMs: number
}

/** The connection pool to every instance: kept-alive connections, one request at a time on each. */
export function proxyAgent(options: ProxyAgentOptions): Agent {
  return new Agent({
    connections: 128,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    connect: { timeout: options.connectTimeoutMs },
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  })
}

type Headers = Record<string, string | string[] | undefined>

// In answers: an instance's `Connection: keep-alive` is about its connection to the gateway, and
// must not keep the client's open when the client asked for it to close (RFC 9110 7.6.1).
const ANSWER_HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

/** The header names a Connection header lists (lower-cased), which are hop-by-hop too; undefined when none. */
export function connectionNamed(value: string | string[] | undefined): Set<string> | undefined {
  if (typeof value !== 'string' || value === 'keep-alive' || value === 'close') return undefined
  const names = new Set<string>()
  for (const part of value.split(',')) {
    const name = part.trim().toLowerCase()
    if (name !== '') names.add(name)
  }
  return names
}

export interface ForwardRequest {
  origin: string
  /** Path and query, as the instance receives them. */
  path: string
  method: string
  headers: Headers
  body: Readable | null
  /** False when the caller's body has not been read to its end: the client connection cannot be reused. */
  requestComplete: () => boolean
  /**
   * The answer's body failed after its head was in (the instance went away mid-answer): the error
   * to answer with instead, if nothing of the answer has reached the client yet.
   */
  failedAnswer: (error: Error) => Error
}

/**
 * Sends one attempt. Resolves with the answer's status once its head is in (the body then goes to
 * `reply` by itself); rejects with an AttemptFailure that says whether any of the request was
 * written, which decides whether another instance may be asked.
 */
export function forward(agent: Dispatcher, reply: FastifyReply, request: ForwardRequest): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    agent.dispatch(
      { origin: request.origin, path: request.path, method: request.method as Dispatcher.HttpMethod, headers: request.headers as Record<string, string>, body: request.body },
      new AnswerHandler(reply, request, resolve, reject),
    )
  })
}

class AnswerHandler implements Dispatcher.DispatchHandler {
  readonly #reply: FastifyReply
  readonly #request: ForwardRequest
  readonly #resolve: (status: number) => void
  readonly #reject: (error: Error) => void
  /** undici is about to write the request (onRequestStart): from here on it may reach the instance. */
  #sent = false
  #settled = false
  #status = 0
  #headers: Headers | undefined
  /** A small answer, read whole before it is sent. */
  #chunks: Buffer[] | undefined
  /** A large or unbounded answer, streamed to the reply. */
  #stream: Readable | undefined
  #ended = false

  constructor(reply: FastifyReply, request: ForwardRequest, resolve: (status: number) => void, reject: (error: Error) => void) {
    this.#reply = reply
    this.#request = request
    this.#resolve = resolve
    this.#reject = reject
  }

  onRequestStart(): void {
    this.#sent = true
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Headers): void {
    // An informational answer (103 Early Hints) before the real one: not passed on.
    if (statusCode < 200) return
    const length = headers['content-length']
    const bodiless = statusCode === 204 || statusCode === 304 || this.#request.method === 'HEAD'
    if (bodiless || (typeof length === 'string' && Number(length) <= BUFFERED_ANSWER_BYTES)) {
      this.#status = statusCode
      this.#headers = headers
      this.#chunks = []
    } else {
      const stream = new Readable({
        read: () => controller.resume(),
        destroy: (error, callback) => {
          // The client went away (the reply destroyed its source): stop reading the instance.
          if (!this.#ended) controller.abort(error ?? new Error('the client closed the connection'))
          callback(error)
        },
      })
      this.#stream = stream
      this.#head(statusCode, headers)
      this.#reply.send(stream)
    }
    this.#settled = true
    this.#resolve(statusCode)
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#chunks !== undefined) this.#chunks.push(chunk)
    else if (this.#stream !== undefined && !this.#stream.push(chunk)) controller.pause()
  }

  onResponseEnd(): void {
    this.#ended = true
    const chunks = this.#chunks
    if (chunks !== undefined) {
      this.#head(this.#status, this.#headers!)
      this.#reply.send(chunks.length === 0 ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks))
    } else {
      this.#stream?.push(null)
    }
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, error: Error): void {
    this.#ended = true
    if (!this.#settled) {
      this.#settled = true
      this.#reject(new AttemptFailure(error, this.#sent))
    } else if (this.#stream !== undefined) {
      // Destroyed already: the client went away, and this is the abort that followed (no failure of the instance).
      if (this.#stream.destroyed) return
      // Fastify answers with it if no byte has gone out yet, and cuts the connection otherwise.
      this.#stream.destroy(this.#request.failedAnswer(error))
    } else {
      this.#reply.send(this.#request.failedAnswer(error))
    }
  }

  /** The instance's status and headers on the reply, less its hop-by-hop headers. */
  #head(statusCode: number, headers: Headers): void {
    const reply = this.#reply
    reply.code(statusCode)
    const named = connectionNamed(headers.connection)
    for (const name in headers) {
      const value = headers[name]
      if (value === undefined || ANSWER_HOP_BY_HOP.has(name) || named?.has(name)) continue
      reply.header(name, value)
    }
    // A connection whose request body was not read to its end cannot carry another request.
    if (!this.#request.requestComplete()) reply.header('connection', 'close')
  }
}
