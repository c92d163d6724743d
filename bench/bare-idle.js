// The footprint baseline (bench/footprint.ts): a bare node:http server, idle. Plain JavaScript, so
// that Node does not load its TypeScript compiler for it. node:http through getBuiltinModule, as
// the roles take it (src/http/app.ts): an ES import of it loads Node's bundled undici (about 11 MB)
// for the module's WebSocket getters, which is Node's cost, not a server's.
const { createServer } = process.getBuiltinModule('node:http')

const server = createServer((request, response) => {
  request.resume()
  response.writeHead(200, { 'content-type': 'text/plain' })
  response.end('ok')
})
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(`${JSON.stringify({ event: 'listening', port: typeof address === 'object' && address ? address.port : 0 })}\n`)
})
const stop = () => server.close(() => process.exit(0))
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
