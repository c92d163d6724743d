// @ts-check
// Instances as the registry sends them, validated: a malformed one is skipped, never shown
// half-built.
import { now } from './clock.js'

export const STATUSES = /** @type {const} */ (['up', 'starting', 'draining', 'down'])

/** @typedef {typeof STATUSES[number]} Status */

/** @type {Readonly<Record<Status, string>>} */
export const STATUS_LABELS = { up: 'Up', starting: 'Starting', draining: 'Draining', down: 'Down' }

/**
 * What tells whether an instance works, beyond what it says of itself: the registry's probe of its
 * health URL, its heartbeats (it is alive, though nothing checks that it serves), or nothing (it
 * registered, and has not been heard from since: by hand, or a Consul registration with no check).
 * @typedef {'health' | 'heartbeat' | 'none'} Check
 */

/** @type {Readonly<Record<Check, string>>} */
export const CHECK_LABELS = { health: 'Health-checked', heartbeat: 'Heartbeats only', none: 'Not checked' }

/** @type {Readonly<Record<Check, string>>} */
export const CHECK_HINTS = {
  health: 'The registry probes its health URL, and shows it down while the probe fails',
  heartbeat: 'Nothing probes it: it is shown as it reports itself while its heartbeats arrive',
  none: 'No health check, and no heartbeat since it registered: nothing confirms that it works',
}

/** @param {Instance} instance @returns {Check} */
export function checkOf(instance) {
  if (instance.healthUrl) return 'health'
  return instance.lastHeartbeat > instance.registeredAt ? 'heartbeat' : 'none'
}

/** @param {unknown} value @returns {value is Status} */
export function isStatus(value) {
  return /** @type {readonly unknown[]} */ (STATUSES).includes(value)
}

/**
 * @typedef {object} Instance
 * @property {string} id
 * @property {string} service
 * @property {string} url
 * @property {Status} status
 * @property {[string, string][]} metadata sorted by key
 * @property {string | undefined} healthUrl
 * @property {number} registeredAt
 * @property {number} lastHeartbeat
 * @property {string} haystack lowercase text the search box matches
 * @property {string} signature what a row shows, apart from times
 */

/** @param {string} a @param {string} b */
const byCodeUnits = (a, b) => (a < b ? -1 : a > b ? 1 : 0)

/** @param {unknown} value @returns {Instance | undefined} */
export function toInstance(value) {
  if (typeof value !== 'object' || value === null) return undefined
  const raw = /** @type {Record<string, unknown>} */ (value)
  const { id, service_name: service, url, status } = raw
  if (typeof id !== 'string' || typeof service !== 'string' || typeof url !== 'string') return undefined
  const registeredAt = Date.parse(String(raw.registered_at))
  const lastHeartbeat = Date.parse(String(raw.last_heartbeat))
  /** @type {[string, string][]} */
  const metadata = []
  if (typeof raw.metadata === 'object' && raw.metadata !== null) {
    for (const [key, v] of Object.entries(raw.metadata)) metadata.push([key, String(v)])
    metadata.sort((a, b) => byCodeUnits(a[0], b[0]))
  }
  const healthUrl = typeof raw.health_url === 'string' ? raw.health_url : undefined
  /** @type {Instance} */
  const instance = {
    id,
    service,
    url,
    // A status this page does not know yet is shown as the one that needs attention.
    status: isStatus(status) ? status : 'down',
    metadata,
    healthUrl,
    registeredAt: Number.isFinite(registeredAt) ? registeredAt : now(),
    lastHeartbeat: Number.isFinite(lastHeartbeat) ? lastHeartbeat : now(),
    haystack: [id, url, healthUrl ?? '', ...metadata.flat()].join('\n').toLowerCase(),
    signature: '',
  }
  instance.signature = JSON.stringify([instance.status, url, metadata, healthUrl ?? '', instance.registeredAt])
  return instance
}

/** A service's instances in URL order; anything malformed is left out. @param {unknown} list */
export function toInstances(list) {
  if (!Array.isArray(list)) return []
  return list
    .map(toInstance)
    .filter((i) => i !== undefined)
    .sort((a, b) => byCodeUnits(a.url, b.url))
}
