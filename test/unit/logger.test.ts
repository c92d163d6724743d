// What a person at a terminal reads (LOG_FORMAT=pretty, the default there): one short line per
// event, whatever the event holds; and the conventions that turn colour on and off.
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import { createLogger, prettyLine, wantsColor } from '../../src/lib/logger.ts'

function prettyLogger(colors = false) {
  let text = ''
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString()
      done()
    },
  })
  const logger = createLogger({ level: 'debug', format: 'pretty', colors, base: { role: 'product' }, destination })
  return { logger, lines: () => text.split('\n').filter((line) => line !== '') }
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: an escape sequence is what is looked for
const ANSI = /\x1b\[/
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is looked for
const CONTROL = /[\x00-\x1f\x7f-\x9f]/

describe('pretty log lines', () => {
  it('writes each event on one line, however many fields, nested objects, arrays and errors it holds', () => {
    const { logger, lines } = prettyLogger()
    logger.info({ event: 'database_ready', dialect: 'sqlite', migrations_applied: ['0001_products', '0002_more'] }, 'database ready')
    logger.info({ event: 'routes', routes: [{ prefix: '/products', service: 'product' }] }, 'gateway routing table')
    logger.error({ event: 'crashed', err: new TypeError('boom\nsecond line') }, 'uncaught error')
    logger.warn({ event: 'odd', detail: 'a\nvalue\r\nwith breaks', nested: { deep: { deeper: [1, 2, { x: 'y' }] } } }, 'a message\nthat has a newline')
    const written = lines()
    assert.equal(written.length, 4, written.join('\n'))
    for (const line of written) assert.match(line, /^\[\d\d:\d\d:\d\d\] (INFO|WARN|ERROR): \S/)
    assert.match(written[0]!, /database ready dialect=sqlite migrations_applied=0001_products,0002_more$/)
    assert.match(written[1]!, /routes=\[\{"prefix":"\/products","service":"product"\}\]$/)
    // The error's type and message, and where it was thrown; not its stack.
    assert.match(written[2]!, /uncaught error err="TypeError: boom\\nsecond line" at=test\/unit\/logger\.test\.ts:\d+:\d+$/)
    assert.doesNotMatch(written.join('\n'), /\bpid\b|\brole=|\bevent=/, 'what every line would repeat is left to the JSON lines')
  })

  it('reads a request as method, path, status and duration', () => {
    const line = prettyLine({ msg: 'request', method: 'GET', route: '/products/:id', url: '/products/1', status: 200, duration_ms: 3.14, reqId: 'abc' })
    assert.equal(line, 'GET /products/1 200 3.14ms')
  })

  it('does not repeat in fields what the message says', () => {
    const line = prettyLine({ msg: 'product listening on http://127.0.0.1:8081', event: 'listening', port: 8081, url: 'http://127.0.0.1:8081', host: '0.0.0.0' })
    assert.equal(line, 'product listening on http://127.0.0.1:8081 host=0.0.0.0')
  })

  it('escapes control characters a client may have sent, so they cannot drive the terminal', () => {
    const line = prettyLine({ msg: 'request', method: 'GET', url: '/x\x1b[2J\x9b31m', status: 404, service_name: 'evil\x1b]0;title\x07' })
    assert.doesNotMatch(line, CONTROL)
    assert.match(line, /\\u001b\[2J/)
  })

  it('colours only when asked', () => {
    const plain = prettyLogger(false)
    plain.logger.warn({ event: 'x', a: 1 }, 'careful')
    assert.doesNotMatch(plain.lines()[0]!, ANSI)
    const coloured = prettyLogger(true)
    coloured.logger.warn({ event: 'x', a: 1 }, 'careful')
    assert.match(coloured.lines()[0]!, ANSI)
  })
})

describe('colour conventions', () => {
  it('follows NO_COLOR, then FORCE_COLOR, then whether the output is a terminal', () => {
    assert.equal(wantsColor({}, true), true)
    assert.equal(wantsColor({}, false), false)
    assert.equal(wantsColor({ NO_COLOR: '1' }, true), false)
    assert.equal(wantsColor({ NO_COLOR: '' }, true), true, 'an empty NO_COLOR is unset')
    assert.equal(wantsColor({ FORCE_COLOR: '1' }, false), true)
    assert.equal(wantsColor({ FORCE_COLOR: '0' }, true), false)
    assert.equal(wantsColor({ NO_COLOR: '1', FORCE_COLOR: '1' }, true), false)
  })
})
