// @ts-check
// Routine heartbeats are not changes, so the stream does not carry them: `GET /services` is
// polled now and then to move last-heartbeat times forward.
import { ttlMs } from './clock.js'
import { isLive } from './connection.js'
import { advanceHeartbeats, hasSnapshot } from './model.js'

// Often enough that ages stay close to the truth, rarely enough to cost the registry nothing.
const REFRESH_MS = Math.min(5000, Math.max(1000, ttlMs / 4))

/** @param {() => void} onRefreshed */
async function refreshHeartbeats(onRefreshed) {
  if (!hasSnapshot() || document.visibilityState === 'hidden' || !isLive()) return
  try {
    const response = await fetch('/services', { cache: 'no-store', headers: { accept: 'application/json' } })
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

/** Refreshes heartbeat times now and then, and as soon as a hidden page is shown again. @param {() => void} onRefreshed */
export function refreshHeartbeatsPeriodically(onRefreshed) {
  setInterval(() => void refreshHeartbeats(onRefreshed), REFRESH_MS)
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') void refreshHeartbeats(onRefreshed)
  })
}
