// @ts-check
// The registry dashboard's entry module: plain ES modules served as they are (no build step),
// nothing fetched but this registry. This module only wires the others together.
//
// Membership comes from the change stream `GET /events` (connection.js into model.js); heartbeat
// times are refreshed from `GET /services` (heartbeats.js); the view (instance-table.js,
// summary.js) is redrawn from the model after each change and each change of the filters
// (filters.js), and its times tick every second.
import { ttlMs } from './clock.js'
import { connect } from './connection.js'
import { byId } from './dom.js'
import { filtersFromAddress, isFiltering, markFiltering, onFiltersChange, readFilters, syncServiceOptions } from './filters.js'
import { formatTtl } from './format.js'
import { refreshHeartbeatsPeriodically } from './heartbeats.js'
import { renderTable, tickRows } from './instance-table.js'
import { applyChange, applySnapshot, serviceNames } from './model.js'
import { renderSummary } from './summary.js'

const epoch = byId('epoch')

function render() {
  syncServiceOptions(serviceNames())
  const filters = readFilters()
  const shown = renderTable(filters)
  const filtering = isFiltering(filters)
  renderSummary(shown, filtering)
  markFiltering(filtering)
  tickRows()
}

byId('ttl').textContent = formatTtl(ttlMs)
byId('registry-host').textContent = location.host
filtersFromAddress()
onFiltersChange(render)

setInterval(tickRows, 1000)
refreshHeartbeatsPeriodically(tickRows)
connect({
  onSnapshot(data) {
    epoch.textContent = applySnapshot(data) ?? '–'
    render()
  },
  onChange(data) {
    if (applyChange(data)) render()
  },
})
