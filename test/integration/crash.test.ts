// A process that meets a bug (an uncaught exception, an unhandled rejection) does not vanish
// silently: it logs the error, leaves discovery at once (not after the TTL), and exits non-zero
// within its shutdown timeout.
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { discover, tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const CRASH_CHILD = fileURLToPath(new URL('../helpers/crash-child.ts', import.meta.url))
const SHUTDOWN_TIMEOUT_SECONDS = 5

describe('a crash', () => {
  const dataDir = tempDir('crash')
  let registry: RunningProcess
  const started: RunningProcess[] = []

  before(async () => {
    // A TTL far longer than the test: only a deregistration can take an instance out of discovery.
    registry = await startRole('registry', { env: { REGISTRY_TTL_SECONDS: '300' } })
  })

  after(async () => {
    await Promise.all(started.map((p) => p.stop('SIGKILL')))
    await registry?.stop()
    dataDir.remove()
  })

  const crashing = async (role: string) => {
    const env = {
      REGISTRY_URL: registry.url,
      DATA_DIR: dataDir.path,
      SHUTDOWN_TIMEOUT_SECONDS: String(SHUTDOWN_TIMEOUT_SECONDS),
      HEARTBEAT_INTERVAL_SECONDS: '0.5',
    }
    const proc = await startRole(role, { script: CRASH_CHILD, stdin: true, env })
    started.push(proc)
    return proc
  }

  for (const [role, how] of [
    ['product', 'throw'],
    ['order', 'reject'],
  ] as const) {
    it(`of ${role} (${how === 'throw' ? 'uncaught exception' : 'unhandled rejection'}): logged, deregistered, exit 1`, async () => {
      const proc = await crashing(role)
      const url = proc.url
      await waitFor(async () => (await discover(registry.url, role)).some((i) => i.url === url), { what: `${role} in discovery` })
      const crashedAt = Date.now()
      proc.child.stdin!.write(`${how}\n`)
      const exit = await proc.exited
      assert.equal(exit.code, 1, 'exits non-zero')
      assert.ok(Date.now() - crashedAt < SHUTDOWN_TIMEOUT_SECONDS * 1000 + 1000, 'within its shutdown timeout')
      const crashed = proc.logs.find((line) => line.event === 'crashed')
      assert.ok(crashed, 'the crash is logged')
      assert.match(String((crashed.err as { message?: unknown } | undefined)?.message), /^boom/)
      assert.ok(
        proc.logs.some((line) => line.event === 'deregistered'),
        'it deregistered on the way out',
      )
      assert.ok(!(await discover(registry.url, role)).some((i) => i.url === url), 'it left discovery at once, not after the TTL')
    })
  }

  it('of the registry: logged, exit 1', async () => {
    const proc = await startRole('registry', { script: CRASH_CHILD, stdin: true, env: { SHUTDOWN_TIMEOUT_SECONDS: String(SHUTDOWN_TIMEOUT_SECONDS) } })
    started.push(proc)
    proc.child.stdin!.write('throw\n')
    const exit = await proc.exited
    assert.equal(exit.code, 1)
    assert.ok(proc.logs.some((line) => line.event === 'crashed'))
  })
})
