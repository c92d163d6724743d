// A child of `npm start` never outlives its supervisor: when the supervisor is killed with -9, or
// whoever reads its output goes away (`npm start | head -n 3`), every child exits by itself.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { after, describe, it } from 'node:test'
import { CLI } from '../helpers/process.ts'
import { freePorts, pidAlive, tempDir, type TempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const EXIT_WITHIN_MS = 10_000

/** The pids whose parent is `pid`, read from /proc. */
function childrenOf(pid: number): number[] {
  const children: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      // The command may hold spaces and parentheses: the fields after its closing ')' are fixed.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) children.push(Number(name))
    } catch {
      // gone meanwhile
    }
  }
  return children
}

interface Supervisor {
  child: ChildProcess
  lines: string[]
  /** Every child process the supervisor has had, collected while it runs. */
  children: Set<number>
  exited: Promise<void>
  stopWatching: () => void
}

async function startSupervisor(dir: TempDir, env: Record<string, string> = {}): Promise<Supervisor> {
  const [registryPort, productPort, orderPort] = await freePorts(3)
  const child = spawn(process.execPath, [CLI, 'all'], {
    env: {
      ...process.env,
      REGISTRY_PORT: String(registryPort),
      PRODUCT_PORTS: String(productPort),
      ORDER_PORTS: String(orderPort),
      GATEWAY_PORT: '0',
      // No DNS server: 8600 would be shared with every other registry a test starts.
      REGISTRY_DNS_PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dir.path,
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const lines: string[] = []
  createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line))
  const children = new Set<number>()
  // Children come and go while it starts: note each one as soon as it exists.
  const watch = setInterval(() => {
    if (child.pid !== undefined) for (const pid of childrenOf(child.pid)) children.add(pid)
  }, 10)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return { child, lines, children, exited, stopWatching: () => clearInterval(watch) }
}

const allUp = (supervisor: Supervisor) => supervisor.lines.some((line) => line.includes('all up'))

async function assertAllGone(supervisor: Supervisor): Promise<void> {
  supervisor.stopWatching()
  assert.ok(supervisor.children.size > 0, 'the supervisor started children')
  await waitFor(() => [...supervisor.children].every((pid) => !pidAlive(pid)), {
    timeoutMs: EXIT_WITHIN_MS,
    what: `children ${[...supervisor.children].filter(pidAlive).join(', ')} to exit by themselves`,
  })
}

describe('children of npm start never outlive it', () => {
  const started: Supervisor[] = []
  const dir = tempDir('orphans')

  after(() => {
    for (const supervisor of started) {
      supervisor.stopWatching()
      for (const pid of [supervisor.child.pid, ...supervisor.children]) if (pid !== undefined && pidAlive(pid)) process.kill(pid, 'SIGKILL')
    }
    dir.remove()
  })

  for (const format of ['json', 'pretty']) {
    it(`exit by themselves when the supervisor is killed with -9 (${format} logs)`, async () => {
      const supervisor = await startSupervisor(dir, { LOG_FORMAT: format })
      started.push(supervisor)
      await waitFor(() => allUp(supervisor), { timeoutMs: 30_000, what: 'all up' })
      assert.equal(supervisor.children.size >= 3, true, `registry, product and order are running: ${[...supervisor.children]}`)
      supervisor.child.kill('SIGKILL')
      await supervisor.exited
      await assertAllGone(supervisor)
    })
  }

  it('exit, with the supervisor, when the reader of its output goes away (npm start | head -n 3)', async () => {
    const supervisor = await startSupervisor(dir)
    started.push(supervisor)
    await waitFor(() => supervisor.lines.length >= 3, { timeoutMs: 30_000, what: 'three lines of output' })
    // What `head -n 3` does once it has its lines: close the pipe's reading end and go.
    supervisor.child.stdout!.destroy()
    await waitFor(() => supervisor.child.exitCode !== null || supervisor.child.signalCode !== null, {
      timeoutMs: EXIT_WITHIN_MS,
      what: 'the supervisor to stop once nobody reads its output',
    })
    await assertAllGone(supervisor)
  })
})
