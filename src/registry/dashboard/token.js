// @ts-check
// The read token, when the registry wants one (REGISTRY_READ_TOKEN): kept in this tab's
// sessionStorage only, so that it survives a reload but not the tab, and is never written to
// localStorage, a cookie or the address (which ends up in history and in logs). It leaves the page
// only as `Authorization: Bearer` on this registry's reads.

const KEY = 'registry-read-token'

// Where sessionStorage is refused (some privacy settings throw on any access), the token lives as
// long as the page.
/** @type {string | undefined} */
let inMemory

/** The token the reads are sent with, if any. @returns {string | undefined} */
export function readToken() {
  try {
    return sessionStorage.getItem(KEY) ?? undefined
  } catch {
    return inMemory
  }
}

/** @param {string} token */
export function saveToken(token) {
  inMemory = token
  try {
    sessionStorage.setItem(KEY, token)
  } catch {
    // Kept in memory only (above).
  }
}

export function forgetToken() {
  inMemory = undefined
  try {
    sessionStorage.removeItem(KEY)
  } catch {
    // Nothing was stored.
  }
}

/** The headers that authorize a read: none without a token. @returns {Record<string, string>} */
export function authorization() {
  const token = readToken()
  return token ? { authorization: `Bearer ${token}` } : {}
}
