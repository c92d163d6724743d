// @ts-check
// What the registry has, as the page knows it. Membership (which instances exist, and their
// status) comes only from the change stream: a snapshot, then one change per service with every
// unexpired instance. Heartbeat times may also move forward from a `GET /services` answer, which
// never adds or removes an instance (it could be older than the stream).
/** @import { Instance } from './instance.js' */
import { toInstances } from './instance.js'

/** @type {Map<string, Instance[]>} service name -> its instances */
const byService = new Map()
/** @type {Map<string, number>} instance id -> when it appeared (wall clock), for a brief highlight */
const appeared = new Map()
let haveSnapshot = false

/** @type {ReadonlyMap<string, readonly Instance[]>} service name -> its instances */
export const services = byService

export const hasSnapshot = () => haveSnapshot

export const serviceNames = () => [...byService.keys()].sort()

/** @param {string} name @param {Instance[]} instances */
function setService(name, instances) {
  // Everything is new in a snapshot: only what arrives after it is highlighted.
  if (haveSnapshot) {
    const before = new Set((byService.get(name) ?? []).map((i) => i.id))
    for (const instance of instances) if (!before.has(instance.id)) appeared.set(instance.id, Date.now())
  }
  if (instances.length === 0) byService.delete(name)
  else byService.set(name, instances)
}

/**
 * Replaces everything with a `snapshot` event's data; throws, changing nothing, if it is not an object.
 * @param {unknown} data
 * @returns {string | undefined} the registry's epoch
 */
export function applySnapshot(data) {
  const { epoch, services: list } = /** @type {{epoch?: unknown, services?: unknown}} */ (data)
  byService.clear()
  haveSnapshot = false
  if (Array.isArray(list)) {
    for (const entry of list) {
      if (typeof entry?.service_name === 'string') setService(entry.service_name, toInstances(entry.instances))
    }
  }
  haveSnapshot = true
  return typeof epoch === 'string' ? epoch : undefined
}

/** Forgets everything: the registry no longer lets the page read it (a token was refused or forgotten). */
export function clearModel() {
  byService.clear()
  appeared.clear()
  haveSnapshot = false
}

/**
 * Replaces one service's instances with a `change` event's; before the first snapshot there is
 * nothing to change.
 * @param {unknown} data
 * @returns {boolean} whether anything was applied
 */
export function applyChange(data) {
  if (!haveSnapshot) return false
  const { service_name: name, instances } = /** @type {{service_name?: unknown, instances?: unknown}} */ (data)
  if (typeof name !== 'string') return false
  setService(name, toInstances(instances))
  return true
}

/** @param {ReadonlyMap<string, number>} latest instance id -> its last heartbeat */
export function advanceHeartbeats(latest) {
  for (const instances of byService.values()) {
    for (const instance of instances) {
      const beat = latest.get(instance.id)
      if (beat !== undefined && beat > instance.lastHeartbeat) instance.lastHeartbeat = beat
    }
  }
}

/**
 * Whether an instance appeared less than `withinMs` ago; forgets it once it has not.
 * @param {string} id @param {number} wallNow @param {number} withinMs
 */
export function appearedWithin(id, wallNow, withinMs) {
  const since = appeared.get(id)
  if (since === undefined) return false
  if (wallNow - since < withinMs) return true
  appeared.delete(id)
  return false
}
