// The ceiling: plain node:http answering the registry's bytes for the two benchmarked requests,
// with no routing library, validation, hooks or logging. Run by bench/run.ts, pinned to a core.
import { createServer, type ServerResponse } from 'node:http'
import { BARE_CONFIG_ENV, parseBareConfig, type CapturedResponse } from './responses.ts'

const config = parseBareConfig(process.env[BARE_CONFIG_ENV])

/** Everything but the Date header is computed once, as a hand-tuned server would. */
function responder(captured: CapturedResponse): (res: ServerResponse) => void {
  const body = Buffer.from(captured.body, 'utf8')
  const headers = [...captured.headers.flat(), 'content-length', String(body.length)]
  return (res) => {
    res.writeHead(captured.status, headers)
    res.end(body)
  }
}

const discover = responder(config.discover)
const heartbeat = responder(config.heartbeat)
const notFound = responder({ status: 404, headers: [['content-type', 'text/plain']], body: 'not found', keepAliveSeconds: undefined })

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === config.discoverPath) return discover(res)
  if (req.method === 'POST' && req.url === '/heartbeat') {
    // The body must be read before the answer so the keep-alive connection stays usable;
    // it is not parsed: that is the registry's work, and this is the ceiling.
    req.resume()
    req.once('end', () => heartbeat(res))
    return
  }
  req.resume()
  notFound(res)
})
// The registry's own timeout (Fastify's 72 s, or node's 5 s when the app brings its own server),
// so that idle connections live as long and the Keep-Alive header is byte for byte the same.
server.keepAliveTimeout = (config.discover.keepAliveSeconds ?? 5) * 1000

server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  process.stdout.write(`${JSON.stringify({ event: 'listening', port })}\n`)
})

const stop = () => server.close(() => process.exit(0))
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
