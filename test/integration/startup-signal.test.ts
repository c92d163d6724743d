// A signal that arrives while a service is still starting (here: waiting for its database)
// ends it at once, instead of being ignored until start-up finishes (as PID 1 in a container, a
// process ignores signals it has no handler for).
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { startRole } from '../helpers/process.ts'

describe('signals during start-up', () => {
  it('SIGTERM while waiting for the database exits at once with 143', async () => {
    const product = await startRole('product', {
      env: { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere', REGISTRY_URL: 'http://127.0.0.1:1' },
      waitForListening: false,
    })
    await product.waitForLog((line) => line.event === 'database_unavailable')
    const sent = Date.now()
    const exit = await product.stop('SIGTERM', 5000)
    assert.deepEqual(exit, { code: 143, signal: null })
    assert.ok(Date.now() - sent < 2000, 'exits promptly')
  })
})
