import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'

// Child processes of the benchmark: each one pinned to a CPU core with `taskset`, tracked so that
// none outlives the benchmark (normal end, error, Ctrl-C or SIGTERM).

export interface Pinned {
  readonly name: string
  readonly child: ChildProcess
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>
  /** The last few KB of stdout and stderr, for error messages. */
  output(): string
  /** Resolves with the first stdout line that `match` accepts; rejects on exit or deadline. */
  waitForLine<T>(match: (line: string) => T | undefined, timeoutMs: number): Promise<T>
}

const OUTPUT_TAIL_BYTES = 16 * 1024
const live = new Set<ChildProcess>()
let interruptedBy: NodeJS.Signals | undefined

/** The signal that is stopping the benchmark, if any: errors that follow from it are not news. */
export const interrupted = (): NodeJS.Signals | undefined => interruptedBy

/** Spawns `node args...` (or `command args...`) on one core; stdout and stderr are captured, never inherited. */
export function spawnPinned(name: string, core: number, args: readonly string[], env: NodeJS.ProcessEnv, command = process.execPath): Pinned {
  const child = spawn('taskset', ['-c', String(core), command, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  live.add(child)
  let tail = ''
  const lineListeners = new Set<(line: string) => void>()
  let partial = ''
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_BYTES)
  }
  child.stdout.on('data', (chunk: Buffer) => {
    keep(chunk)
    const lines = (partial + chunk.toString('utf8')).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) for (const listener of lineListeners) listener(line)
  })
  child.stderr.on('data', keep)

  const exited = new Promise<number | null>((resolve) => {
    // 'error' (taskset missing) comes instead of 'exit'; both settle the promise once.
    child.once('error', (error) => {
      live.delete(child)
      tail += `\n${error.message}`
      resolve(null)
    })
    child.once('exit', (code) => {
      live.delete(child)
      resolve(code)
    })
  })

  const waitForLine = <T>(match: (line: string) => T | undefined, timeoutMs: number) =>
    new Promise<T>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer)
        lineListeners.delete(onLine)
      }
      const onLine = (line: string) => {
        const value = match(line)
        if (value === undefined) return
        done()
        resolve(value)
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`${name}: no expected output within ${timeoutMs} ms; output so far:\n${tail}`))
      }, timeoutMs)
      lineListeners.add(onLine)
      void exited.then((code) => {
        done()
        reject(new Error(`${name} exited (code ${code}) before it was ready; output:\n${tail}`))
      })
    })

  return { name, child, exited, output: () => tail, waitForLine }
}

/** SIGTERM to every live child, then SIGKILL to any still running after `graceMs`. */
export async function stopAll(graceMs = 5000): Promise<void> {
  const children = [...live]
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve()
          const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
          child.once('exit', () => {
            clearTimeout(timer)
            resolve()
          })
          child.kill('SIGTERM')
        }),
    ),
  )
}

/** Makes sure no child survives: on Ctrl-C/SIGTERM stop them gracefully, at exit kill the rest. */
export function installCleanup(log: (message: string) => void): void {
  // Last resort: 'exit' handlers run synchronously, so only a kill can be sent here.
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL')
  })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      interruptedBy = signal
      log(`\n${signal}: stopping ${live.size} child process(es)`)
      void stopAll(2000).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
    })
  }
}

/**
 * A port that is free right now: bind port 0, read it, close. Needed for the registry, which with
 * LOG_LEVEL=warn does not print the port it bound. Another process could take it in between;
 * the readiness check would then fail loudly rather than measure the wrong server.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not read the bound port'))))
    })
  })
}
