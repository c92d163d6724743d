// @ts-check
// The counts above the table, the result count, and what an empty table says.
import { byId, setText } from './dom.js'
import { plural } from './format.js'
import { STATUSES } from './instance.js'
import { hasSnapshot, services } from './model.js'

const serviceCount = byId('stat-services')
const instanceCount = byId('stat-instances')
const statusCounts = STATUSES.map((status) => /** @type {const} */ ([status, byId(`stat-${status}`)]))
const resultCount = byId('result-count')
const empty = byId('empty')
const emptyTitle = byId('empty-title')
const emptyText = byId('empty-text')

/** @param {number} shown how many instances the table shows @param {boolean} filtering */
export function renderSummary(shown, filtering) {
  const totals = { up: 0, starting: 0, draining: 0, down: 0 }
  let total = 0
  for (const instances of services.values()) {
    for (const instance of instances) totals[instance.status] += 1
    total += instances.length
  }
  setText(serviceCount, String(services.size))
  setText(instanceCount, String(total))
  for (const [status, node] of statusCounts) setText(node, String(totals[status]))
  // Before the first snapshot nothing is known: no count, and no "nothing registered".
  const known = hasSnapshot()
  setText(resultCount, !known ? '' : filtering ? `Showing ${shown} of ${plural(total, 'instance', 'instances')}` : plural(total, 'instance', 'instances'))

  const isEmpty = known && shown === 0
  empty.hidden = !isEmpty
  if (!isEmpty) return
  if (total === 0) {
    setText(emptyTitle, 'No services registered')
    setText(emptyText, 'Instances appear here as soon as they register with POST /register.')
  } else {
    setText(emptyTitle, 'No instances match these filters')
    setText(emptyText, `${plural(total, 'instance is', 'instances are')} registered; clear the filters to see them.`)
  }
}
