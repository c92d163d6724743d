// @ts-check
// The registry's change stream `GET /events`, and the connection state the page shows
// (`data-connection` on the body: the styles dim a view that may be out of date).
import { byId, setText } from './dom.js'

const RECONNECT_MIN_MS = 500
const RECONNECT_MAX_MS = 15_000

const connectionText = byId('connection-text')

/**
 * @typedef {object} StreamHandlers
 * @property {(data: unknown) => void} onSnapshot everything the registry has; throws if malformed
 * @property {(data: unknown) => void} onChange one service's instances
 */

/** @type {EventSource | undefined} */
let source
let reconnectDelayMs = RECONNECT_MIN_MS
/** @type {ReturnType<typeof setTimeout> | undefined} */
let reconnectTimer

export const isLive = () => document.body.dataset.connection === 'live'

/** @param {'connecting' | 'live' | 'reconnecting' | 'offline'} state @param {string} text */
function setConnection(state, text) {
  document.body.dataset.connection = state
  setText(connectionText, text)
}

/** Follows the stream from now on, reconnecting whenever it is lost. @param {StreamHandlers} handlers */
export function connect(handlers) {
  clearTimeout(reconnectTimer)
  source?.close()
  const stream = new EventSource('/events')
  source = stream
  stream.addEventListener('snapshot', (event) => {
    try {
      handlers.onSnapshot(JSON.parse(event.data))
      reconnectDelayMs = RECONNECT_MIN_MS
      setConnection('live', 'Live')
    } catch {
      // A malformed snapshot: keep what is shown; the next snapshot replaces it.
    }
  })
  stream.addEventListener('change', (event) => {
    try {
      handlers.onChange(JSON.parse(event.data))
    } catch {
      // Ignore one malformed event rather than stop the dashboard.
    }
  })
  stream.addEventListener('error', () => {
    if (stream !== source) return
    if (stream.readyState === EventSource.CONNECTING) {
      // The browser retries by itself (the registry went away or restarted).
      setConnection('reconnecting', 'Reconnecting…')
      return
    }
    // The browser gave up (e.g. a 503 while the registry shut down): retry with backoff.
    stream.close()
    const delay = reconnectDelayMs
    reconnectDelayMs = Math.min(RECONNECT_MAX_MS, reconnectDelayMs * 2)
    setConnection('offline', `Disconnected, retrying in ${Math.ceil(delay / 1000)}s`)
    reconnectTimer = setTimeout(() => connect(handlers), delay)
  })
}
