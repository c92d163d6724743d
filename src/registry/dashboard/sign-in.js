// @ts-check
// The read-token form, shown instead of the data while the registry refuses the page's reads
// (REGISTRY_READ_TOKEN: a 401 to a request without a token, or with one it does not accept), and
// the button that forgets the token. `data-auth` on the body says which: `needed` (the form; the
// styles hide the data), `token` (the data, read with a token) or `open` (no token needed).
import { byId, setText } from './dom.js'
import { forgetToken, readToken, saveToken } from './token.js'

const section = byId('sign-in-section')
const form = byId('sign-in', HTMLFormElement)
const input = byId('token', HTMLInputElement)
const submit = byId('sign-in-submit', HTMLButtonElement)
const message = byId('sign-in-message')
const forget = byId('forget-token', HTMLButtonElement)
const instances = byId('instances')

// It goes into an HTTP header: visible ASCII, no spaces, as the registry accepts.
const TOKEN = /^[\x21-\x7e]{1,4096}$/

const formShown = () => document.body.dataset.auth === 'needed'

/**
 * Shows the form instead of the data, with what went wrong if anything (announced: the message is
 * an alert, and describes the field, which gets the focus).
 * @param {string} [problem]
 */
export function showSignIn(problem = '') {
  const wasShown = formShown()
  document.body.dataset.auth = 'needed'
  section.hidden = false
  forget.hidden = true
  submit.disabled = false
  setText(message, problem)
  if (problem) input.setAttribute('aria-invalid', 'true')
  else input.removeAttribute('aria-invalid')
  // Not taken from someone typing: only when the form appears, or says something new.
  if (!wasShown || problem) {
    input.focus()
    input.select()
  }
}

/** The registry answers the page's reads: the data instead of the form. */
export function hideSignIn() {
  const wasShown = formShown()
  const token = readToken()
  document.body.dataset.auth = token ? 'token' : 'open'
  section.hidden = true
  forget.hidden = !token
  input.value = ''
  setText(message, '')
  input.removeAttribute('aria-invalid')
  // The focus was in the form, now hidden: on to what it opened.
  if (wasShown) instances.focus()
}

/**
 * @param {object} actions
 * @param {() => void} actions.onToken a token was entered (and saved): read with it
 * @param {() => void} actions.onForget the token was forgotten: read without one
 */
export function onSignIn({ onToken, onForget }) {
  form.addEventListener('submit', (event) => {
    // Never submitted: the token goes only into the reads' Authorization header.
    event.preventDefault()
    const token = input.value.trim()
    if (!TOKEN.test(token)) {
      showSignIn('A token is letters, digits and punctuation, without spaces.')
      return
    }
    saveToken(token)
    // Until the registry answers: accepted (the data) or refused (this form, with a message).
    submit.disabled = true
    onToken()
  })
  forget.addEventListener('click', () => {
    forgetToken()
    showSignIn()
    onForget()
  })
}
