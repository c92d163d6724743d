// The registry dashboard: vanilla JavaScript, no build step, nothing fetched but this registry.
//
// Membership (which instances exist, and their status) comes only from the change stream
// `GET /events`: a snapshot, then one `change` per service with every unexpired instance.
// Routine heartbeats are not changes, so `GET /services` is polled now and then to refresh
// last-heartbeat times; the poll never adds or removes an instance (it could be older than the
// stream). Instance data comes from clients: it is only ever written with textContent.

const STATUSES = /** @type {const} */ (['up', 'starting', 'draining', 'down'])
const STATUS_LABELS = { up: 'Up', starting: 'Starting', draining: 'Draining', down: 'Down' }
const NEW_ROW_HIGHLIGHT_MS = 4000
const RECONNECT_MIN_MS = 500
const RECONNECT_MAX_MS = 15_000

/** @param {string} name */
function metaContent(name) {
  return document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') ?? ''
}

function pageResponseStart() {
  const navigation = /** @type {PerformanceNavigationTiming | undefined} */ (performance.getEntriesByType('navigation')[0])
  return navigation && navigation.responseStart > 0 ? performance.timeOrigin + navigation.responseStart : Date.now()
}

const ttlMs = Number(metaContent('registry-ttl-ms')) > 0 ? Number(metaContent('registry-ttl-ms')) : 30_000
// Ages are measured on the registry's clock: the browser's may be off. The page says when the
// registry wrote it, which is (within a round trip) when its response started to arrive here.
const serverTime = Number(metaContent('registry-server-time'))
const clockOffsetMs = Number.isFinite(serverTime) && serverTime > 0 ? serverTime - pageResponseStart() : 0
const now = () => Date.now() + clockOffsetMs
// Often enough that ages stay close to the truth, rarely enough to cost the registry nothing.
const heartbeatRefreshMs = Math.min(5000, Math.max(1000, ttlMs / 4))

/**
 * @typedef {object} Instance
 * @property {string} id
 * @property {string} service
 * @property {string} url
 * @property {'up' | 'starting' | 'draining' | 'down'} status
 * @property {[string, string][]} metadata
 * @property {string | undefined} healthUrl
 * @property {number} registeredAt
 * @property {number} lastHeartbeat
 * @property {string} haystack lowercase text the search box matches
 * @property {string} signature what a row shows, apart from times
 */

/**
 * @typedef {object} Row
 * @property {HTMLTableRowElement} tr
 * @property {Instance} instance
 * @property {string} signature
 * @property {HTMLElement} age
 * @property {HTMLTimeElement} ageTime
 * @property {HTMLElement} expiry
 * @property {HTMLElement} expiryBar
 * @property {HTMLElement} registered
 */

/** @type {Map<string, Instance[]>} service name -> its instances */
const services = new Map()
/** @type {Map<string, {section: HTMLElement, tbody: HTMLTableSectionElement, count: HTMLElement, badges: HTMLElement}>} */
const sections = new Map()
/** @type {Map<string, Row>} instance id -> its row, for rows on the page */
const rows = new Map()
/** @type {Map<string, number>} instance id -> when it appeared (for a brief highlight) */
const appeared = new Map()
let haveSnapshot = false

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id))
const elements = {
  connection: $('connection'),
  connectionText: $('connection-text'),
  filters: /** @type {HTMLFormElement} */ ($('filters')),
  service: /** @type {HTMLSelectElement} */ ($('filter-service')),
  status: /** @type {HTMLSelectElement} */ ($('filter-status')),
  text: /** @type {HTMLInputElement} */ ($('filter-text')),
  services: $('services'),
  empty: $('empty'),
  emptyTitle: $('empty-title'),
  emptyText: $('empty-text'),
  resultCount: $('result-count'),
  ttl: $('ttl'),
  epoch: $('epoch'),
}

// ---------------------------------------------------------------------------------------------
// Formatting

/** @param {number} ms a non-negative duration */
function formatDuration(ms) {
  const s = Math.floor(Math.max(0, ms) / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`
  const h = Math.floor(m / 60)
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, '0')}m`
  return `${Math.floor(h / 24)}d ${h % 24}h`
}

/** @param {number} ms */
function formatTtl(ms) {
  return ms < 10_000 && ms % 1000 !== 0 ? `${(ms / 1000).toFixed(1)} s` : formatDuration(ms).replace(/(\d)s$/, '$1 s')
}

/** @param {number} n @param {string} one @param {string} many */
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`

// ---------------------------------------------------------------------------------------------
// State from the wire (validated: a malformed instance is skipped, never shown half-built)

/** @param {unknown} value @returns {Instance | undefined} */
function toInstance(value) {
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
    metadata.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  }
  const healthUrl = typeof raw.health_url === 'string' ? raw.health_url : undefined
  const known = /** @type {readonly string[]} */ (STATUSES).includes(String(status))
  const instance = {
    id,
    service,
    url,
    status: /** @type {Instance['status']} */ (known ? status : 'down'),
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

/** @param {unknown} list */
function toInstances(list) {
  if (!Array.isArray(list)) return []
  return list.map(toInstance).filter((i) => i !== undefined).sort((a, b) => (a.url < b.url ? -1 : a.url > b.url ? 1 : 0))
}

/** @param {string} name @param {Instance[]} instances */
function setService(name, instances) {
  if (haveSnapshot) {
    const before = new Set((services.get(name) ?? []).map((i) => i.id))
    for (const instance of instances) if (!before.has(instance.id)) appeared.set(instance.id, Date.now())
  }
  if (instances.length === 0) services.delete(name)
  else services.set(name, instances)
}

/** @param {{epoch?: unknown, services?: unknown}} data */
function applySnapshot(data) {
  services.clear()
  haveSnapshot = false
  if (Array.isArray(data.services)) {
    for (const entry of data.services) {
      if (typeof entry?.service_name === 'string') setService(entry.service_name, toInstances(entry.instances))
    }
  }
  haveSnapshot = true
  elements.epoch.textContent = typeof data.epoch === 'string' ? data.epoch : '–'
  render()
}

/** @param {{service_name?: unknown, instances?: unknown}} data */
function applyChange(data) {
  if (!haveSnapshot || typeof data.service_name !== 'string') return
  setService(data.service_name, toInstances(data.instances))
  render()
}

/** Moves last-heartbeat times forward from a `GET /services` answer; membership is the stream's. */
async function refreshHeartbeats() {
  if (!haveSnapshot || document.visibilityState === 'hidden' || document.body.dataset.connection !== 'live') return
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
    for (const instances of services.values()) {
      for (const instance of instances) {
        const beat = latest.get(instance.id)
        if (beat !== undefined && beat > instance.lastHeartbeat) instance.lastHeartbeat = beat
      }
    }
    tick()
  } catch {
    // The stream reports the connection; a failed refresh just leaves the times as they were.
  }
}

// ---------------------------------------------------------------------------------------------
// Filters (kept in the address, so that a filtered view can be shared)

function readFilters() {
  return {
    service: elements.service.value,
    status: elements.status.value,
    text: elements.text.value.trim().toLowerCase(),
  }
}

function filtersFromAddress() {
  const params = new URLSearchParams(location.search)
  const service = params.get('service') ?? ''
  if (service) ensureServiceOption(service)
  elements.service.value = service
  const status = params.get('status') ?? ''
  elements.status.value = /** @type {readonly string[]} */ (STATUSES).includes(status) ? status : ''
  elements.text.value = params.get('q') ?? ''
}

function filtersToAddress() {
  const { service, status } = readFilters()
  const params = new URLSearchParams()
  if (service) params.set('service', service)
  if (status) params.set('status', status)
  if (elements.text.value.trim()) params.set('q', elements.text.value.trim())
  const query = params.toString()
  history.replaceState(null, '', `${location.pathname}${query ? `?${query}` : ''}`)
}

/** @param {string} name */
function ensureServiceOption(name) {
  for (const option of elements.service.options) if (option.value === name) return
  elements.service.append(new Option(name, name))
}

function syncServiceOptions() {
  const selected = elements.service.value
  const names = [...services.keys()].sort()
  // The selected service stays listed while it has no instances: the view should not jump.
  if (selected && !services.has(selected)) names.push(selected)
  const current = [...elements.service.options].slice(1).map((o) => o.value)
  if (current.join('\n') === names.join('\n')) return
  elements.service.replaceChildren(new Option('All services', ''), ...names.map((name) => new Option(name, name)))
  elements.service.value = selected
}

/** @param {Instance} instance @param {ReturnType<typeof readFilters>} filters */
function matches(instance, filters) {
  if (filters.status && instance.status !== filters.status) return false
  if (filters.text && !instance.haystack.includes(filters.text)) return false
  return true
}

// ---------------------------------------------------------------------------------------------
// Rendering

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
function el(tag, className, text) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

/** @param {string} status */
function statusBadge(status) {
  const badge = el('span', `status status-${status}`)
  badge.append(el('span', 'dot'), el('span', '', STATUS_LABELS[/** @type {keyof typeof STATUS_LABELS} */ (status)] ?? status))
  badge.querySelector('.dot')?.setAttribute('aria-hidden', 'true')
  return badge
}

/** @param {string} name */
function createSection(name) {
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
  for (const [label, className] of [
    ['Status', 'col-status'],
    ['Instance', 'col-instance'],
    ['Metadata', 'col-meta'],
    ['Last heartbeat', 'col-age'],
    ['Expires in', 'col-expiry'],
  ]) {
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

/** @param {string} label @param {string} className */
function cell(label, className) {
  const td = el('td', className)
  td.dataset.label = label
  td.setAttribute('role', 'cell')
  return td
}

/** @param {Instance} instance @returns {Row} */
function createRow(instance) {
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

  const registered = el('span', 'registered')
  const row = { tr, instance, signature: '', age, ageTime, expiry, expiryBar, registered }
  tr.append(cell('Status', 'col-status'), cell('Instance', 'col-instance'), cell('Metadata', 'col-meta'), ageCell, expiryCell)
  fillRow(row, instance)
  return row
}

/** Writes what a row shows apart from the times (those are the tick's). @param {Row} row @param {Instance} instance */
function fillRow(row, instance) {
  row.instance = instance
  if (row.signature === instance.signature) return
  row.signature = instance.signature
  const [statusCell, instanceCell, metaCell] = /** @type {HTMLElement[]} */ ([...row.tr.children])
  row.tr.dataset.status = instance.status
  statusCell.replaceChildren(statusBadge(instance.status))

  let address
  try {
    const parsed = new URL(instance.url)
    address = parsed.protocol === 'http:' || parsed.protocol === 'https:' ? el('a', 'url', instance.url) : undefined
    if (address) {
      address.href = parsed.href
      address.rel = 'noopener noreferrer'
    }
  } catch {
    address = undefined
  }
  const details = el('span', 'instance-details')
  details.append(el('code', 'instance-id', instance.id), row.registered)
  instanceCell.replaceChildren(address ?? el('span', 'url', instance.url), details)
  if (instance.healthUrl) {
    const health = el('span', 'health-url')
    health.append(el('span', 'health-label', 'Health check '), el('code', '', instance.healthUrl))
    instanceCell.append(health)
  }

  if (instance.metadata.length === 0) {
    metaCell.replaceChildren(el('span', 'muted', 'None'))
  } else {
    const list = el('ul', 'metadata')
    for (const [key, value] of instance.metadata) {
      const item = el('li', 'tag')
      item.append(el('span', 'tag-key', key), el('span', 'tag-value', value))
      list.append(item)
    }
    metaCell.replaceChildren(list)
  }
}

function render() {
  syncServiceOptions()
  const filters = readFilters()
  const names = [...services.keys()].sort()
  const totals = { up: 0, starting: 0, draining: 0, down: 0 }
  let total = 0
  let shown = 0
  /** @type {Set<string>} */
  const visibleIds = new Set()

  for (const name of names) {
    const instances = services.get(name) ?? []
    for (const instance of instances) totals[instance.status] += 1
    total += instances.length
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
    entry.count.textContent = visible.length === instances.length
      ? plural(instances.length, 'instance', 'instances')
      : `${visible.length} of ${instances.length} instances`
    const badges = STATUSES.filter((status) => status !== 'up' && instances.some((i) => i.status === status)).map((status) => {
      const n = instances.filter((i) => i.status === status).length
      return el('span', `pill pill-${status}`, `${n} ${STATUS_LABELS[status].toLowerCase()}`)
    })
    entry.badges.replaceChildren(...badges)

    visible.forEach((instance, index) => {
      visibleIds.add(instance.id)
      let row = rows.get(instance.id)
      if (row && row.instance.service !== name) {
        row.tr.remove()
        row = undefined
      }
      if (row) fillRow(row, instance)
      else {
        row = createRow(instance)
        rows.set(instance.id, row)
      }
      if (entry.tbody.children[index] !== row.tr) entry.tbody.insertBefore(row.tr, entry.tbody.children[index] ?? null)
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
    if (entry && elements.services.children[index] !== entry.section) elements.services.insertBefore(entry.section, elements.services.children[index] ?? null)
  })

  setText($('stat-services'), String(names.length))
  setText($('stat-instances'), String(total))
  for (const status of STATUSES) setText($(`stat-${status}`), String(totals[status]))
  const filtered = Boolean(filters.service || filters.status || filters.text)
  setText(elements.resultCount, !haveSnapshot ? '' : filtered ? `Showing ${shown} of ${plural(total, 'instance', 'instances')}` : plural(total, 'instance', 'instances'))
  elements.filters.dataset.filtered = String(filtered)

  const empty = haveSnapshot && shown === 0
  elements.empty.hidden = !empty
  if (empty) {
    if (total === 0) {
      setText(elements.emptyTitle, 'No services registered')
      setText(elements.emptyText, 'Instances appear here as soon as they register with POST /register.')
    } else {
      setText(elements.emptyTitle, 'No instances match these filters')
      setText(elements.emptyText, `${plural(total, 'instance is', 'instances are')} registered; clear the filters to see them.`)
    }
  }
  tick()
}

/** @param {HTMLElement} node @param {string} text */
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text
}

/** Updates the times of the rows on the page: runs every second and after each change. */
function tick() {
  const t = now()
  const wallNow = Date.now()
  for (const row of rows.values()) {
    const { instance } = row
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
    const since = appeared.get(instance.id)
    const fresh = since !== undefined && wallNow - since < NEW_ROW_HIGHLIGHT_MS
    if (!fresh && since !== undefined) appeared.delete(instance.id)
    row.tr.classList.toggle('is-new', fresh)
  }
}

// ---------------------------------------------------------------------------------------------
// Connection

/** @type {EventSource | undefined} */
let source
let reconnectDelayMs = RECONNECT_MIN_MS
/** @type {ReturnType<typeof setTimeout> | undefined} */
let reconnectTimer

/** @param {'connecting' | 'live' | 'reconnecting' | 'offline'} state @param {string} text */
function setConnection(state, text) {
  document.body.dataset.connection = state
  setText(elements.connectionText, text)
}

function connect() {
  clearTimeout(reconnectTimer)
  source?.close()
  const stream = new EventSource('/events')
  source = stream
  stream.addEventListener('snapshot', (event) => {
    try {
      applySnapshot(JSON.parse(/** @type {MessageEvent} */ (event).data))
      reconnectDelayMs = RECONNECT_MIN_MS
      setConnection('live', 'Live')
    } catch {
      // A malformed snapshot: keep what is shown; the next snapshot replaces it.
    }
  })
  stream.addEventListener('change', (event) => {
    try {
      applyChange(JSON.parse(/** @type {MessageEvent} */ (event).data))
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
    reconnectTimer = setTimeout(connect, delay)
  })
}

// ---------------------------------------------------------------------------------------------
// Start

elements.ttl.textContent = formatTtl(ttlMs)
$('registry-host').textContent = location.host
filtersFromAddress()
const onFilter = () => {
  filtersToAddress()
  render()
}
elements.service.addEventListener('change', onFilter)
elements.status.addEventListener('change', onFilter)
elements.text.addEventListener('input', onFilter)
elements.filters.addEventListener('submit', (event) => event.preventDefault())
// A reset clears the fields after this event: render once it has.
elements.filters.addEventListener('reset', () => setTimeout(onFilter, 0))

setInterval(tick, 1000)
setInterval(() => void refreshHeartbeats(), heartbeatRefreshMs)
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') void refreshHeartbeats()
})
connect()
