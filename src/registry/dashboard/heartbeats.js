// @ts-check
// Routine heartbeats are not changes, so the stream does not carry them: `GET /services` is
// polled now and then to move last-heartbeat times forward, with the read token if there is one.
import { ttlMs } from './clock.js'
import { isLive } from './connection.js'
import { advanceHeartbeats, hasSnapshot } from './model.js'
import { authorization } from './token.js'

// Often enough that ages stay close to the truth, rarely enough to cost the registry nothing.
const REFRESH_MS = Math.min(5000, Math.max(1000, ttlMs / 4))

/**
 * @typedef {object} RefreshHandlers
 * @property {() => void} onRefreshed heartbeat times moved forward
 * @property {() => void} onRefused the registry refused the read (401): the token the stream was
 *   opened with is no longer accepted (rotated), though the open stream goes on
 */

/** @param {RefreshHandlers} handlers */
async function refreshHeartbeats({ onRefreshed, onRefused }) {
  if (!hasSnapshot() || document.visibilityState === 'hidden' || !isLive()) return
  try {
    const response = await fetch('/services', { cache: 'no-store', headers: { accept: 'application/json', ...authorization() } })
    if (response.status === 401) {
      void response.body?.cancel()
      onRefused()
      return
    }
    if (!response.ok) return
    const body = await response.json()
    /** @type {Map<string, number>} */
    const latest = new Map()
    for (const service of Array.isArray(body?.services) ? body.services : []) {
      for (const raw of Array.isArray(service?.instances) ? service.instances : []) {
        const beat = Date.parse(String(raw?.last_heartbeat))
        if (typeof raw?.id === 'string' && Number.isFinite(beat)) latest.set(raw.id, beat)
      }
    }
    advanceHeartbeats(latest)
    onRefreshed()
  } catch {
    // The stream reports the connection; a failed refresh just leaves the times as they were.
  }
}

/** Refreshes heartbeat times now and then, and as soon as a hidden page is shown again. @param {RefreshHandlers} handlers */
export function refreshHeartbeatsPeriodically(handlers) {
  setInterval(() => void refreshHeartbeats(handlers), REFRESH_MS)
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') void refreshHeartbeats(handlers)
  })
}
