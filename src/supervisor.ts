import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { backoffDelay } from './lib/backoff.ts'
import { errorCode } from './lib/errors.ts'
import type { AllConfig, Env } from './config/index.ts'

// cli.ts beside this file when run from the sources, cli.js when run from the build (dist/).
const CLI = fileURLToPath(new URL(`./cli${extname(fileURLToPath(import.meta.url))}`, import.meta.url))
const STOP_DEADLINE_MS = 9000
const READY_DEADLINE_MS = 20_000

interface ChildSpec {
  role: 'registry' | 'product' | 'order' | 'gateway'
  port: number
}

interface Child {
  spec: ChildSpec
  label: string
  process?: ChildProcess
  restarts: number
  startedAt: number
  restartTimer?: NodeJS.Timeout
}

// Set when our stdout or stderr is closed under us (`npm start | head`): nothing more is written there.
const closedStreams = new Set<NodeJS.WriteStream>()

function write(stream: NodeJS.WriteStream, label: string, line: string): void {
  if (!closedStreams.has(stream)) stream.write(`[${label}] ${line}\n`)
}

/**
 * `npm start`: the whole system as separate processes, registry first. Each child's output is
 * prefixed with its role and port; a child that dies is restarted with backoff; Ctrl-C or SIGTERM
 * stops the services (they deregister and drain), then the registry, within 10 s.
 */
export async function runAll(config: AllConfig, env: Env): Promise<void> {
  const registryUrl = `http://127.0.0.1:${config.registryPort}`
  const specs: ChildSpec[] = [
    { role: 'registry', port: config.registryPort },
    ...config.productPorts.map((port) => ({ role: 'product' as const, port })),
    ...config.orderPorts.map((port) => ({ role: 'order' as const, port })),
    ...(config.gatewayPort === 0 ? [] : [{ role: 'gateway' as const, port: config.gatewayPort }]),
  ]
  const children = specs.map((spec): Child => ({ spec, label: `${spec.role}:${spec.port}`, restarts: 0, startedAt: 0 }))
  let stopping = false

  const log = (message: string) => write(process.stdout, 'all', message)

  const start = (child: Child) => {
    const { role, port } = child.spec
    const proc = spawn(process.execPath, [CLI, role], {
      env: {
        ...env,
        PORT: String(port),
        HOST: config.host,
        // Children write to our pipe, not a terminal: ask for readable lines when we have one.
        LOG_FORMAT: config.logFormat ?? (process.stdout.isTTY ? 'pretty' : 'json'),
        // Every child talks to this system's registry and advertises a local address.
        REGISTRY_URL: registryUrl,
        SERVICE_URL: `http://127.0.0.1:${port}`,
      },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // Own process group: Ctrl-C reaches only us, and we stop the children in order.
      detached: true,
    })
    child.process = proc
    child.startedAt = Date.now()
    createInterface({ input: proc.stdout! }).on('line', (line) => write(process.stdout, child.label, line))
    createInterface({ input: proc.stderr! }).on('line', (line) => write(process.stderr, child.label, line))
    // Spawning or signalling failed (not expected for our own executable): say so; 'exit' follows
    // when there was a process, and restarts it.
    proc.on('error', (error) => log(`${child.label}: ${error.message}`))
    proc.on('exit', (code, signal) => {
      child.process = undefined
      if (stopping) return
      if (code === 2) {
        log(`${child.label} exited with a configuration error; stopping everything`)
        void stopAll(2)
        return
      }
      // A child that ran for a while gets a fresh backoff.
      if (Date.now() - child.startedAt > 30_000) child.restarts = 0
      const delay = backoffDelay(child.restarts++, { initialMs: 500, maxMs: 10_000 })
      log(`${child.label} exited (${signal ?? `code ${code}`}); restarting in ${delay} ms`)
      child.restartTimer = setTimeout(() => start(child), delay)
    })
  }

  const waitForExit = (children: Child[], deadline: number) =>
    Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            const proc = child.process
            if (!proc || proc.exitCode !== null || proc.signalCode !== null) return resolve()
            const timer = setTimeout(
              () => {
                log(`${child.label} did not stop in time; killing it`)
                proc.kill('SIGKILL')
              },
              Math.max(0, deadline - Date.now()),
            )
            proc.once('exit', () => {
              clearTimeout(timer)
              resolve()
            })
            proc.kill('SIGTERM')
          }),
      ),
    )

  const stopAll = async (code: number) => {
    if (stopping) return
    stopping = true
    log('stopping: services first, then the registry')
    for (const child of children) clearTimeout(child.restartTimer)
    const deadline = Date.now() + STOP_DEADLINE_MS
    // Services deregister while the registry is still up, then the registry goes.
    await waitForExit(
      children.filter((c) => c.spec.role !== 'registry'),
      deadline - 1000,
    )
    await waitForExit(
      children.filter((c) => c.spec.role === 'registry'),
      deadline,
    )
    log('stopped')
    process.exit(code)
  }

  // Whoever reads our output went away (`npm start | head -n 3`): stop everything, as for Ctrl-C.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error) => {
      if (errorCode(error) !== 'EPIPE') throw error
      closedStreams.add(stream)
      void stopAll(0)
    })
  }
  // A bug of ours must not leave the children running without a supervisor.
  for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
    process.on(event, (error: unknown) => {
      write(process.stderr, 'all', `supervisor failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
      void stopAll(1)
    })
  }

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (stopping) {
        for (const child of children) child.process?.kill('SIGKILL')
        process.exit(1)
      }
      void stopAll(0)
    })
  }

  const [registry, ...services] = children
  start(registry!)
  if (!(await waitReady(`${registryUrl}/health/ready`, READY_DEADLINE_MS, () => stopping))) {
    log(`registry did not become ready on port ${config.registryPort} within ${READY_DEADLINE_MS / 1000} s`)
    await stopAll(1)
    return
  }
  log(`registry ready at ${registryUrl}`)
  for (const child of services) start(child)
  const ready = await Promise.all(services.map((c) => waitReady(`http://127.0.0.1:${c.spec.port}/health/ready`, READY_DEADLINE_MS, () => stopping)))
  if (!stopping) {
    log(ready.every(Boolean) ? `all up: registry ${registryUrl}, ${services.map((c) => c.label).join(', ')}` : 'some services are not ready yet; see their logs')
  }
}

async function waitReady(url: string, timeoutMs: number, cancelled: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && !cancelled()) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) })
      await response.body?.cancel()
      if (response.ok) return true
    } catch {
      // not up yet
    }
    await sleep(100)
  }
  return false
}
