import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { waitFor } from './wait.ts'

export const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))

export type LogLine = Record<string, unknown> & { msg?: string; event?: string }

export interface RunningProcess {
  child: ChildProcess
  role: string
  port: number
  url: string
  /** Every JSON log line so far. */
  logs: LogLine[]
  /** Every raw output line so far (stdout and stderr). */
  output: string[]
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  waitForLog: (predicate: (line: LogLine) => boolean, timeoutMs?: number) => Promise<LogLine>
  /** Sends a signal and waits for the exit. */
  stop: (signal?: NodeJS.Signals, timeoutMs?: number) => Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const running = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

export interface StartOptions {
  env?: Record<string, string>
  /** Resolve once this many ms pass without waiting for the `listening` line (for failing starts). */
  waitForListening?: boolean
  timeoutMs?: number
  /** Runs this script with the role as its argument instead of the CLI (test harnesses). */
  script?: string
  /** Gives the process a stdin pipe (`child.stdin`) instead of none. */
  stdin?: boolean
}

/** Starts `microservices-advanced <role>` as a real process; PORT defaults to 0 (any free port), REGISTRY_DNS_PORT to 0 (no DNS). */
export async function startRole(role: string, options: StartOptions = {}): Promise<RunningProcess> {
  const child = spawn(process.execPath, [options.script ?? CLI, role], {
    // REGISTRY_DNS_PORT 0: registries started by tests do not all bind DNS on 8600 (a test sets a port).
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', REGISTRY_DNS_PORT: '0', ...options.env },
    stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  })
  running.add(child)
  const logs: LogLine[] = []
  const output: string[] = []
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child)
      resolve({ code, signal })
    })
  })
  const onLine = (line: string) => {
    output.push(line)
    if (process.env.TEST_VERBOSE) process.stderr.write(`[${role}] ${line}\n`)
    if (line.startsWith('{')) {
      try {
        logs.push(JSON.parse(line) as LogLine)
      } catch {
        // not JSON
      }
    }
  }
  createInterface({ input: child.stdout! }).on('line', onLine)
  createInterface({ input: child.stderr! }).on('line', onLine)

  const waitForLog = (predicate: (line: LogLine) => boolean, timeoutMs = 10_000) => waitFor(() => logs.find(predicate), { timeoutMs, what: `a log line from ${role}` })

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    const result = await exited
    clearTimeout(timer)
    return result
  }

  const proc: RunningProcess = { child, role, port: 0, url: '', logs, output, exited, waitForLog, stop }
  if (options.waitForListening === false) return proc
  // Fail as soon as the process exits before listening, with its exit and output.
  const earlyExit = exited.then(({ code, signal }) => {
    throw new Error(`${role} exited (code ${code}, signal ${signal}) before listening:\n${output.join('\n')}`)
  })
  earlyExit.catch(() => {})
  const listening = await Promise.race([
    waitFor(() => logs.find((line) => line.event === 'listening'), { timeoutMs: options.timeoutMs ?? 20_000, what: `${role} to listen` }),
    earlyExit,
  ]).catch(async (error: unknown) => {
    await stop('SIGKILL')
    throw error
  })
  proc.port = Number(listening.port)
  proc.url = `http://127.0.0.1:${proc.port}`
  return proc
}
