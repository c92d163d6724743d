// @ts-check
// The registry dashboard's entry module: plain ES modules served as they are (no build step),
// nothing fetched but this registry. This module only wires the others together.
//
// Membership comes from the change stream `GET /events` (connection.js into model.js); heartbeat
// times are refreshed from `GET /services` (heartbeats.js); the view (instance-table.js,
// summary.js) is redrawn from the model after each change and each change of the filters
// (filters.js), and its times tick every second. When the registry's reads need a token
// (REGISTRY_READ_TOKEN), a form asks for it instead of showing the data (sign-in.js); both reads
// send it (token.js).
/** @import { StreamHandlers } from './connection.js' */
import { ttlMs } from './clock.js'
import { connect, disconnect } from './connection.js'
import { byId } from './dom.js'
import { filtersFromAddress, isFiltering, markFiltering, onFiltersChange, readFilters, syncServiceOptions } from './filters.js'
import { formatTtl } from './format.js'
import { refreshHeartbeatsPeriodically } from './heartbeats.js'
import { renderTable, tickRows } from './instance-table.js'
import { applyChange, applySnapshot, clearModel, serviceNames } from './model.js'
import { hideSignIn, onSignIn, showSignIn } from './sign-in.js'
import { renderSummary } from './summary.js'
import { forgetToken } from './token.js'

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

/** Nothing the registry said stays on the page once it no longer lets the page read it. */
function clearData() {
  clearModel()
  epoch.textContent = '–'
  render()
}

/** @type {StreamHandlers} */
const stream = {
  onSnapshot(data) {
    epoch.textContent = applySnapshot(data) ?? '–'
    hideSignIn()
    render()
  },
  onChange(data) {
    if (applyChange(data)) render()
  },
  onUnauthorized(sentToken) {
    clearData()
    if (!sentToken) return showSignIn()
    // A token it does not accept (mistyped, or since rotated): not sent again.
    forgetToken()
    showSignIn('The registry did not accept that token. Check it and try again.')
  },
}

onSignIn({
  onToken: () => connect(stream),
  onForget() {
    disconnect()
    clearData()
    // Without a token: refused (the form stays), unless the registry no longer wants one.
    connect(stream)
  },
})
setInterval(tickRows, 1000)
// A refused refresh: the token was revoked under the open stream; a new stream asks again.
refreshHeartbeatsPeriodically({ onRefreshed: tickRows, onRefused: () => connect(stream) })
connect(stream)
