// @ts-check
// The registry's TTL and clock, as the page carries them in its meta tags (the registry fills them
// in when it serves the page).

/** @param {string} name */
function metaContent(name) {
  return document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') ?? ''
}

function pageResponseStart() {
  const navigation = /** @type {PerformanceNavigationTiming | undefined} */ (performance.getEntriesByType('navigation')[0])
  return navigation && navigation.responseStart > 0 ? performance.timeOrigin + navigation.responseStart : Date.now()
}

const pageTtlMs = Number(metaContent('registry-ttl-ms'))
/** The registry's heartbeat TTL; the registry's default when the page does not say. */
export const ttlMs = pageTtlMs > 0 ? pageTtlMs : 30_000

// Ages are measured on the registry's clock: the browser's may be off. The page says when the
// registry wrote it, which is (within a round trip) when its response started to arrive here.
const serverTime = Number(metaContent('registry-server-time'))
const clockOffsetMs = Number.isFinite(serverTime) && serverTime > 0 ? serverTime - pageResponseStart() : 0

/** Now on the registry's clock, in milliseconds since the epoch. */
export const now = () => Date.now() + clockOffsetMs
