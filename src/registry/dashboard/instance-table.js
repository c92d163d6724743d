// @ts-check
// The instances on the page: a section per service in name order, a row per instance in URL
// order. Rows and sections are kept and updated in place (not rebuilt), so that a change does
// not lose focus, selection or scroll position.
/** @import { Filters } from './filters.js' */
/** @import { Row } from './instance-row.js' */
/** @import { Section } from './service-section.js' */
import { now } from './clock.js'
import { byId } from './dom.js'
import { matches } from './filters.js'
import { createRow, fillRow, updateRowTimes } from './instance-row.js'
import { appearedWithin, serviceNames, services } from './model.js'
import { createSection, fillSectionHead } from './service-section.js'

const NEW_ROW_HIGHLIGHT_MS = 4000

const container = byId('services')
/** @type {Map<string, Section>} service name -> its section, shown or hidden */
const sections = new Map()
/** @type {Map<string, Row>} instance id -> its row, for rows on the page */
const rows = new Map()

/**
 * Brings the sections and rows in line with the model and the filters.
 * @param {Filters} filters
 * @returns {number} how many instances are shown
 */
export function renderTable(filters) {
  const names = serviceNames()
  let shown = 0
  /** @type {Set<string>} */
  const visibleIds = new Set()

  for (const name of names) {
    const instances = services.get(name) ?? []
    const visible = filters.service && filters.service !== name ? [] : instances.filter((i) => matches(i, filters))
    let entry = sections.get(name)
    if (visible.length === 0) {
      if (entry) entry.section.hidden = true
      continue
    }
    if (!entry) {
      entry = createSection(name)
      sections.set(name, entry)
    }
    entry.section.hidden = false
    shown += visible.length
    fillSectionHead(entry, visible, instances)

    const { tbody } = entry
    visible.forEach((instance, index) => {
      visibleIds.add(instance.id)
      let row = rows.get(instance.id)
      // An instance id that moved to another service gets a new row in that service's table.
      if (row && row.instance.service !== name) {
        row.tr.remove()
        row = undefined
      }
      if (row) fillRow(row, instance)
      else {
        row = createRow(instance)
        rows.set(instance.id, row)
      }
      if (tbody.children[index] !== row.tr) tbody.insertBefore(row.tr, tbody.children[index] ?? null)
    })
  }

  for (const [id, row] of rows) {
    if (!visibleIds.has(id)) {
      row.tr.remove()
      rows.delete(id)
    }
  }
  // Sections in name order; those of departed services go.
  for (const [name, entry] of sections) {
    if (!services.has(name)) {
      entry.section.remove()
      sections.delete(name)
    }
  }
  names.forEach((name, index) => {
    const entry = sections.get(name)
    if (entry && container.children[index] !== entry.section) container.insertBefore(entry.section, container.children[index] ?? null)
  })
  return shown
}

/** Updates the times of the rows on the page: runs every second and after each change. */
export function tickRows() {
  const t = now()
  const wallNow = Date.now()
  for (const row of rows.values()) updateRowTimes(row, t, appearedWithin(row.instance.id, wallNow, NEW_ROW_HIGHLIGHT_MS))
}
