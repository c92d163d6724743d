// @ts-check
// Durations and counts as the page writes them.

/** @param {number} ms a duration; a negative one counts as 0 */
export function formatDuration(ms) {
  const s = Math.floor(Math.max(0, ms) / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`
  const h = Math.floor(m / 60)
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, '0')}m`
  return `${Math.floor(h / 24)}d ${h % 24}h`
}

/** A short fractional TTL (the registry allows one) keeps its tenths rather than rounding down. @param {number} ms */
export function formatTtl(ms) {
  return ms < 10_000 && ms % 1000 !== 0 ? `${(ms / 1000).toFixed(1)} s` : formatDuration(ms).replace(/(\d)s$/, '$1 s')
}

/** @param {number} n @param {string} one @param {string} many */
export const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`
