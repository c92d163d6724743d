// @ts-check
// The filter form, kept in the address so that a filtered view can be shared.
/** @import { Instance } from './instance.js' */
import { byId } from './dom.js'
import { isStatus } from './instance.js'

const form = byId('filters', HTMLFormElement)
const service = byId('filter-service', HTMLSelectElement)
const status = byId('filter-status', HTMLSelectElement)
const text = byId('filter-text', HTMLInputElement)

/**
 * @typedef {object} Filters
 * @property {string} service a service name, or '' for all
 * @property {string} status a status, or '' for any
 * @property {string} text lowercase, or '' for no search
 */

/** @returns {Filters} */
export function readFilters() {
  return {
    service: service.value,
    status: status.value,
    text: text.value.trim().toLowerCase(),
  }
}

/** @param {Filters} filters */
export const isFiltering = (filters) => Boolean(filters.service || filters.status || filters.text)

/** The form's look depends on it (the clear button is muted when there is nothing to clear). @param {boolean} filtering */
export function markFiltering(filtering) {
  form.dataset.filtered = String(filtering)
}

/** Whether an instance passes the status and text filters (the service filter picks whole sections). @param {Instance} instance @param {Filters} filters */
export function matches(instance, filters) {
  if (filters.status && instance.status !== filters.status) return false
  if (filters.text && !instance.haystack.includes(filters.text)) return false
  return true
}

/** @param {string} name */
function ensureServiceOption(name) {
  for (const option of service.options) if (option.value === name) return
  service.append(new Option(name, name))
}

export function filtersFromAddress() {
  const params = new URLSearchParams(location.search)
  // Listed before the snapshot brings the services, so that the choice holds.
  const name = params.get('service') ?? ''
  if (name) ensureServiceOption(name)
  service.value = name
  const wanted = params.get('status') ?? ''
  status.value = isStatus(wanted) ? wanted : ''
  text.value = params.get('q') ?? ''
}

function filtersToAddress() {
  const params = new URLSearchParams()
  if (service.value) params.set('service', service.value)
  if (status.value) params.set('status', status.value)
  // As typed (not lowercased): the address shows what the person searched for.
  if (text.value.trim()) params.set('q', text.value.trim())
  const query = params.toString()
  history.replaceState(null, '', `${location.pathname}${query ? `?${query}` : ''}`)
}

/** Calls `onChange` after each change of the filters, once the address shows it. @param {() => void} onChange */
export function onFiltersChange(onChange) {
  const changed = () => {
    filtersToAddress()
    onChange()
  }
  service.addEventListener('change', changed)
  status.addEventListener('change', changed)
  text.addEventListener('input', changed)
  form.addEventListener('submit', (event) => event.preventDefault())
  // A reset clears the fields after this event: act once it has.
  form.addEventListener('reset', () => setTimeout(changed, 0))
}

/** Lists the services that have instances. @param {readonly string[]} names sorted */
export function syncServiceOptions(names) {
  const selected = service.value
  // The selected service stays listed while it has no instances: the view should not jump.
  const listed = selected && !names.includes(selected) ? [...names, selected] : names
  const current = [...service.options].slice(1).map((o) => o.value)
  if (current.join('\n') === listed.join('\n')) return
  service.replaceChildren(new Option('All services', ''), ...listed.map((name) => new Option(name, name)))
  service.value = selected
}
