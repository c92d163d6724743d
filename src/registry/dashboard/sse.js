// @ts-check
// A parser for the `text/event-stream` format (server-sent events), as the HTML standard defines it
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
// EventSource parses it itself, but EventSource cannot send an Authorization header: the page
// follows `GET /events` with fetch() and feeds this parser the decoded text as it arrives.
//
// The format, in short: the stream is lines (ended by CRLF, LF or CR); a line `field: value`
// (one space after the colon is dropped) adds to the event being built; a line starting with a
// colon is a comment (the registry's keep-alives); an empty line ends the event and dispatches it.
//   event: change          the event's type (default `message`)
//   data: {"service_...    a line of its data; several data lines are joined with LF
//   retry: 1000            how long to wait before reconnecting, in ms (digits only)
//   id: ...                ignored: the registry sends no ids (each connection starts with a snapshot)

/**
 * @typedef {object} SseEvent
 * @property {string} type the `event:` field, or `message`
 * @property {string} data the `data:` lines, joined with LF
 */

/**
 * @typedef {object} SseHandlers
 * @property {(event: SseEvent) => void} onEvent each complete event
 * @property {(ms: number) => void} [onRetry] each valid `retry:` field
 */

export class SseParser {
  /** Text after the last line break seen: the start of a line still arriving. */
  #partial = ''
  /** The last chunk ended in CR: an LF starting the next one is the same line break (CRLF split). */
  #afterCr = false
  /** @type {string} the event being built: its type */
  #type = ''
  /** @type {string[]} the event being built: its data lines */
  #data = []
  #handlers

  /** @param {SseHandlers} handlers */
  constructor(handlers) {
    this.#handlers = handlers
  }

  /**
   * Feeds decoded text, in chunks of any size (split anywhere, even inside a line break). A
   * leading byte order mark is the decoder's to drop (TextDecoder does by default).
   * @param {string} chunk
   */
  push(chunk) {
    if (chunk === '') return
    const skipLf = this.#afterCr && chunk.startsWith('\n')
    this.#afterCr = false
    const text = this.#partial + (skipLf ? chunk.slice(1) : chunk)
    let start = 0
    for (const lineBreak of text.matchAll(/\r\n|\r|\n/g)) {
      this.#line(text.slice(start, lineBreak.index))
      start = lineBreak.index + lineBreak[0].length
    }
    this.#partial = text.slice(start)
    // A CR at the very end matched alone: if the next chunk starts with LF, that LF is its pair.
    if (text.endsWith('\r')) this.#afterCr = true
  }

  /** One complete line, without its line break. @param {string} line */
  #line(line) {
    if (line === '') return this.#dispatch()
    if (line.startsWith(':')) return // a comment
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    switch (field) {
      case 'event':
        this.#type = value
        break
      case 'data':
        this.#data.push(value)
        break
      case 'retry':
        if (/^\d+$/.test(value)) this.#handlers.onRetry?.(Number(value))
        break
      default:
      // `id` and unknown fields are ignored.
    }
  }

  /** An empty line: the event is complete. One without data is not dispatched (as EventSource). */
  #dispatch() {
    const type = this.#type || 'message'
    const data = this.#data
    this.#type = ''
    this.#data = []
    if (data.length > 0) this.#handlers.onEvent({ type, data: data.join('\n') })
  }
}
