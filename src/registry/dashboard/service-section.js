// @ts-check
// One service's section: a heading with counts, and a table of its instances.
/** @import { Instance } from './instance.js' */
import { el } from './dom.js'
import { plural } from './format.js'
import { STATUS_LABELS, STATUSES } from './instance.js'

/**
 * @typedef {object} Section
 * @property {HTMLElement} section
 * @property {HTMLTableSectionElement} tbody
 * @property {HTMLElement} count
 * @property {HTMLElement} badges
 */

const COLUMNS = /** @type {const} */ ([
  ['Status', 'col-status'],
  ['Instance', 'col-instance'],
  ['Metadata', 'col-meta'],
  ['Last heartbeat', 'col-age'],
  ['Expires in', 'col-expiry'],
])

/** @param {string} name @returns {Section} */
export function createSection(name) {
  const section = el('section', 'service')
  section.dataset.service = name
  const headingId = `service-${name}`
  section.setAttribute('aria-labelledby', headingId)
  const head = el('header', 'service-head')
  const title = el('h3', 'service-name', name)
  title.id = headingId
  const count = el('span', 'service-count')
  const badges = el('span', 'service-badges')
  head.append(title, count, badges)

  const wrap = el('div', 'table-wrap')
  const table = el('table', 'instance-table')
  // Explicit roles keep the table's semantics when narrow screens lay rows out as cards.
  table.setAttribute('role', 'table')
  const caption = el('caption', 'visually-hidden', `Instances of ${name}`)
  const thead = el('thead')
  thead.setAttribute('role', 'rowgroup')
  const headRow = el('tr')
  headRow.setAttribute('role', 'row')
  for (const [label, className] of COLUMNS) {
    const th = el('th', className, label)
    th.scope = 'col'
    th.setAttribute('role', 'columnheader')
    headRow.append(th)
  }
  thead.append(headRow)
  const tbody = el('tbody')
  tbody.setAttribute('role', 'rowgroup')
  table.append(caption, thead, tbody)
  wrap.append(table)
  section.append(head, wrap)
  return { section, tbody, count, badges }
}

/**
 * The heading's count, and a pill for each status other than up that some instance has.
 * @param {Section} entry @param {readonly Instance[]} visible @param {readonly Instance[]} instances
 */
export function fillSectionHead(entry, visible, instances) {
  entry.count.textContent = visible.length === instances.length ? plural(instances.length, 'instance', 'instances') : `${visible.length} of ${instances.length} instances`
  const badges = STATUSES.filter((status) => status !== 'up' && instances.some((i) => i.status === status)).map((status) => {
    const n = instances.filter((i) => i.status === status).length
    return el('span', `pill pill-${status}`, `${n} ${STATUS_LABELS[status].toLowerCase()}`)
  })
  entry.badges.replaceChildren(...badges)
}
