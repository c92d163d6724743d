// @ts-check
// The registry's change stream `GET /events`, and the connection state the page shows
// (`data-connection` on the body: the styles dim a view that may be out of date).
//
// The stream is followed with fetch() and a streaming reader, not EventSource: EventSource cannot
// send the `Authorization` header that a registry with REGISTRY_READ_TOKEN wants (and a token in
// the address would end up in logs and history). What EventSource did by itself is done here:
// parsing the events (sse.js), and reconnecting when the stream is lost, first after the
// registry's `retry:` time, then backing off. A 401 is not retried: the registry wants a read
// token, or another one, and only the person at the page can give it.
/** @import { SseEvent } from './sse.js' */
import { byId, setText } from './dom.js'
import { SseParser } from './sse.js'
import { authorization } from './token.js'

const RECONNECT_MIN_MS = 500
const RECONNECT_MAX_MS = 15_000
// The registry writes a keep-alive comment every 15 s: a stream silent for far longer is dead even
// though nothing said so (a proxy or NAT that dropped it quietly), and is replaced.
const IDLE_TIMEOUT_MS = 45_000

const connectionText = byId('connection-text')

/**
 * @typedef {object} StreamHandlers
 * @property {(data: unknown) => void} onSnapshot everything the registry has; throws if malformed
 * @property {(data: unknown) => void} onChange one service's instances
 * @property {(sentToken: boolean) => void} onUnauthorized the registry refused to be read (401):
 *   it wants a read token, or (`sentToken`) does not accept the one sent. Nothing is retried.
 */

/** @type {AbortController | undefined} the request of the connection being followed */
let current
/** How soon to reconnect after losing a stream: the registry says, with `retry:`. */
let retryMs = 1000
/** Attempts that failed since the last snapshot: each doubles the wait before the next. */
let failures = 0
/** @type {ReturnType<typeof setTimeout> | undefined} */
let reconnectTimer

export const isLive = () => document.body.dataset.connection === 'live'

/** @param {'connecting' | 'live' | 'reconnecting' | 'offline' | 'locked'} state @param {string} text */
function setConnection(state, text) {
  document.body.dataset.connection = state
  setText(connectionText, text)
}

/**
 * Follows the stream from now on, reconnecting whenever it is lost, until refused (401) or
 * disconnected. Replaces (and aborts) the connection there was.
 * @param {StreamHandlers} handlers
 */
export function connect(handlers) {
  disconnect()
  // After a refusal, a new attempt (with a token now): no longer "token needed".
  if (document.body.dataset.connection === 'locked') setConnection('connecting', 'Connecting…')
  const controller = new AbortController()
  current = controller
  void follow(controller.signal, handlers)
}

/** Stops following the stream: aborts its request, and any reconnection planned. */
export function disconnect() {
  clearTimeout(reconnectTimer)
  current?.abort()
  current = undefined
}

/**
 * One connection, from its request to its end. Everything it does is skipped once `signal` is
 * aborted: a replaced connection neither shows a state nor plans a reconnection.
 * @param {AbortSignal} signal @param {StreamHandlers} handlers
 */
async function follow(signal, handlers) {
  const headers = { accept: 'text/event-stream', ...authorization() }
  /** @type {Response} */
  let response
  try {
    response = await fetch('/events', { headers, cache: 'no-store', signal })
  } catch {
    // The registry is unreachable (stopped, restarting), or this connection was replaced.
    if (!signal.aborted) retryLater(handlers, 'reconnecting')
    return
  }
  if (signal.aborted) return
  if (response.status === 401) {
    void response.body?.cancel()
    setConnection('locked', 'Read token needed')
    handlers.onUnauthorized('authorization' in headers)
    return
  }
  if (!response.ok || response.body === null) {
    // E.g. 503 while the registry shuts down, or 429 beyond its cap on watchers (with Retry-After).
    void response.body?.cancel()
    retryLater(handlers, 'offline', Number(response.headers.get('retry-after')) * 1000 || 0)
    return
  }

  const parser = new SseParser({
    onEvent: (event) => {
      if (!signal.aborted) dispatch(event, handlers)
    },
    onRetry: (ms) => {
      retryMs = ms
    },
  })
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let idle
  const watch = () => {
    clearTimeout(idle)
    // Cancelling ends the read loop below as if the registry had closed the stream.
    idle = setTimeout(() => void reader.cancel().catch(() => {}), IDLE_TIMEOUT_MS)
  }
  try {
    watch()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      watch()
      parser.push(value)
    }
  } catch {
    // The stream broke (the registry went away), or this connection was replaced (aborted).
  } finally {
    clearTimeout(idle)
  }
  if (!signal.aborted) retryLater(handlers, 'reconnecting')
}

/** @param {SseEvent} event @param {StreamHandlers} handlers */
function dispatch(event, handlers) {
  try {
    if (event.type === 'snapshot') {
      handlers.onSnapshot(JSON.parse(event.data))
      failures = 0
      setConnection('live', 'Live')
    } else if (event.type === 'change') {
      handlers.onChange(JSON.parse(event.data))
    }
  } catch {
    // A malformed event: keep what is shown (the next snapshot replaces it) rather than stop.
  }
}

/**
 * Plans the next attempt: after the registry's `retry:` time, doubled for each attempt that failed
 * since the last snapshot, at most RECONNECT_MAX_MS; or later, if the registry said when.
 * @param {StreamHandlers} handlers
 * @param {'reconnecting' | 'offline'} state `offline`: the registry answered, with an error
 * @param {number} [notBeforeMs] the registry's Retry-After, in ms
 */
function retryLater(handlers, state, notBeforeMs = 0) {
  const backoff = Math.min(RECONNECT_MAX_MS, Math.max(RECONNECT_MIN_MS, retryMs) * 2 ** Math.min(failures, 10))
  const delay = Math.max(backoff, Math.min(notBeforeMs, RECONNECT_MAX_MS * 4))
  failures += 1
  setConnection(state, state === 'offline' ? `Disconnected, retrying in ${Math.ceil(delay / 1000)}s` : 'Reconnecting…')
  clearTimeout(reconnectTimer)
  reconnectTimer = setTimeout(() => connect(handlers), delay)
}
