// @ts-check
// One instance's row in its service's table: what it shows (rewritten only when that changes)
// and its times (rewritten every tick).
/** @import { Check, Instance, Status } from './instance.js' */
import { ttlMs } from './clock.js'
import { el, setText } from './dom.js'
import { formatDuration } from './format.js'
import { CHECK_HINTS, CHECK_LABELS, checkOf, STATUS_LABELS } from './instance.js'

/**
 * @typedef {object} Row
 * @property {HTMLTableRowElement} tr
 * @property {Instance} instance
 * @property {string} signature of what the row shows
 * @property {HTMLTableCellElement} statusCell
 * @property {HTMLElement} check whether anything checks the instance, under its status
 * @property {HTMLTableCellElement} instanceCell
 * @property {HTMLTableCellElement} metaCell
 * @property {HTMLElement} age
 * @property {HTMLTimeElement} ageTime
 * @property {HTMLElement} expiry
 * @property {HTMLElement} expiryBar
 * @property {HTMLElement} registered
 */

/** @param {Status} status */
function statusBadge(status) {
  const badge = el('span', `status status-${status}`)
  const dot = el('span', 'dot')
  dot.setAttribute('aria-hidden', 'true')
  badge.append(dot, el('span', '', STATUS_LABELS[status]))
  return badge
}

/** @param {string} label shown before the value when narrow screens lay rows out as cards @param {string} className */
function cell(label, className) {
  const td = el('td', className)
  td.dataset.label = label
  td.setAttribute('role', 'cell')
  return td
}

/** @param {Instance} instance @returns {Row} */
export function createRow(instance) {
  const tr = el('tr')
  tr.setAttribute('role', 'row')
  tr.dataset.instanceId = instance.id

  const ageTime = el('time')
  const age = el('span', 'age')
  ageTime.append(age)
  const ageCell = cell('Last heartbeat', 'col-age')
  ageCell.append(ageTime)

  const expiry = el('span', 'expiry-text')
  const track = el('span', 'expiry-track')
  track.setAttribute('aria-hidden', 'true')
  const expiryBar = el('span', 'expiry-bar')
  track.append(expiryBar)
  const expiryCell = cell('Expires in', 'col-expiry')
  expiryCell.append(expiry, track)

  const statusCell = cell('Status', 'col-status')
  const check = el('span', 'check')
  const instanceCell = cell('Instance', 'col-instance')
  const metaCell = cell('Metadata', 'col-meta')
  const registered = el('span', 'registered')
  /** @type {Row} */
  const row = { tr, instance, signature: '', statusCell, check, instanceCell, metaCell, age, ageTime, expiry, expiryBar, registered }
  tr.append(statusCell, instanceCell, metaCell, ageCell, expiryCell)
  fillRow(row, instance)
  return row
}

/** The instance's address, a link only when it is a web address. @param {string} url */
function address(url) {
  try {
    const parsed = new URL(url)
    if (parsed.protocol === 'http:' || parsed.protocol === 'https:') {
      const link = el('a', 'url', url)
      link.href = parsed.href
      link.rel = 'noopener noreferrer'
      return link
    }
  } catch {
    // Not a URL at all: shown as text, like any other address that is not a link.
  }
  return el('span', 'url', url)
}

/** Writes what a row shows apart from the times. @param {Row} row @param {Instance} instance */
export function fillRow(row, instance) {
  row.instance = instance
  if (row.signature === instance.signature) return
  row.signature = instance.signature
  row.tr.dataset.status = instance.status
  row.statusCell.replaceChildren(statusBadge(instance.status), row.check)
  fillCheck(row)

  const details = el('span', 'instance-details')
  details.append(el('code', 'instance-id', instance.id), row.registered)
  row.instanceCell.replaceChildren(address(instance.url), details)
  if (instance.healthUrl) {
    const health = el('span', 'health-url')
    health.append(el('span', 'health-label', 'Health check '), el('code', '', instance.healthUrl))
    row.instanceCell.append(health)
  }

  if (instance.metadata.length === 0) {
    row.metaCell.replaceChildren(el('span', 'muted', 'None'))
  } else {
    const list = el('ul', 'metadata')
    for (const [key, value] of instance.metadata) {
      const item = el('li', 'tag')
      item.append(el('span', 'tag-key', key), el('span', 'tag-value', value))
      list.append(item)
    }
    row.metaCell.replaceChildren(list)
  }
}

/**
 * Writes whether anything checks the instance: a heartbeat after its registration turns `none`
 * into `heartbeat`, so this follows the times (and runs with them).
 * @param {Row} row
 */
function fillCheck(row) {
  /** @type {Check} */
  const check = checkOf(row.instance)
  if (row.tr.dataset.check === check) return
  row.tr.dataset.check = check
  setText(row.check, CHECK_LABELS[check])
  row.check.title = CHECK_HINTS[check]
}

/**
 * Writes a row's times: the age of its last heartbeat, when it registered, and how long until it
 * expires (text, bar and level).
 * @param {Row} row @param {number} t now on the registry's clock @param {boolean} isNew whether to highlight it
 */
export function updateRowTimes(row, t, isNew) {
  const { instance } = row
  fillCheck(row)
  const age = Math.max(0, t - instance.lastHeartbeat)
  const remaining = Math.min(ttlMs, instance.lastHeartbeat + ttlMs - t)
  setText(row.age, `${formatDuration(age)} ago`)
  const iso = new Date(instance.lastHeartbeat).toISOString()
  if (row.ageTime.dateTime !== iso) {
    row.ageTime.dateTime = iso
    row.ageTime.title = new Date(instance.lastHeartbeat).toLocaleString()
  }
  setText(row.registered, `registered ${formatDuration(t - instance.registeredAt)} ago`)
  const expired = remaining <= 0
  // Ceil: "1s" until it really is gone, never "0s" while still live.
  setText(row.expiry, expired ? 'Expired, awaiting eviction' : formatDuration(Math.ceil(remaining / 1000) * 1000))
  const fraction = expired ? 0 : Math.min(1, remaining / ttlMs)
  row.expiryBar.style.transform = `scaleX(${fraction.toFixed(3)})`
  const level = expired ? 'expired' : fraction < 0.25 ? 'low' : fraction < 0.5 ? 'mid' : 'ok'
  if (row.tr.dataset.expiry !== level) row.tr.dataset.expiry = level
  row.tr.classList.toggle('is-new', isNew)
}
