// Runs a role exactly as the CLI does, then crashes it on request: a line `throw` on stdin throws
// an uncaught exception, `reject` leaves a promise rejection unhandled. For the crash tests.
import { createInterface } from 'node:readline'
import { ROLES } from '../../src/config/index.ts'
import { runRole } from '../../src/roles.ts'

const role = ROLES.find((r) => r === process.argv[2])
if (!role) throw new Error(`unknown role ${process.argv[2]}`)
await runRole(role, process.env)
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'throw') {
    setImmediate(() => {
      throw new Error('boom: a bug in a request handler')
    })
  } else if (line === 'reject') {
    void Promise.reject(new Error('boom: a promise nobody awaited'))
  }
})
