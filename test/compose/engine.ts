// The container engine for the Compose test: podman (as root) with docker-compose talking to its
// Docker-compatible socket. See ../../../shared/notes/containers.md for why each step is needed.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitFor } from '../helpers/wait.ts'

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const COMPOSE_DIR = fileURLToPath(new URL('./', import.meta.url))
/** runc instead of crun, and ulimits root may set here; every podman command reads it. */
export const CONTAINERS_CONF = join(COMPOSE_DIR, 'containers.conf')

export type Log = (message: string) => void

export function engineEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, CONTAINERS_CONF, ...extra }
}

export class CommandError extends Error {
  readonly result: CommandResult
  constructor(message: string, result: CommandResult) {
    super(message)
    this.name = 'CommandError'
    this.result = result
  }
}

export interface CommandResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** The command is killed past this (SIGTERM, then SIGKILL 5 s later) and the run fails. */
  timeoutMs?: number
  input?: string
  /** Resolve with a non-zero exit instead of throwing. */
  allowFailure?: boolean
  /** Also write everything the command prints to this file (appending). */
  logFile?: string
}

function tail(text: string, lines = 40): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n')
}

/** Runs a command to completion, with a deadline; output is collected (and optionally logged). */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  const started = performance.now()
  const timeoutMs = options.timeoutMs ?? 120_000
  return new Promise((resolve, reject) => {
    const logFd = options.logFile ? openSync(options.logFile, 'a') : undefined
    const child = spawn(command, args, {
      cwd: options.cwd ?? REPO_ROOT,
      env: options.env ?? engineEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
      if (logFd !== undefined) writeLog(logFd, chunk)
    })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
      if (logFd !== undefined) writeLog(logFd, chunk)
    })
    child.stdin.on('error', () => {})
    child.stdin.end(options.input ?? '')
    const killer = setTimeout(() => {
      timedOut = true
      child.kill('SIGTERM')
      setTimeout(() => child.kill('SIGKILL'), 5000).unref()
    }, timeoutMs)
    child.on('error', (error) => {
      clearTimeout(killer)
      if (logFd !== undefined) closeSync(logFd)
      reject(new Error(`${command}: ${error.message}`, { cause: error }))
    })
    child.on('close', (code, signal) => {
      clearTimeout(killer)
      if (logFd !== undefined) closeSync(logFd)
      const result: CommandResult = { code, signal, stdout, stderr, ms: Math.round(performance.now() - started) }
      const line = [command, ...args].map((a) => (a.length > 80 ? `${a.slice(0, 77)}...` : a)).join(' ')
      if (timedOut) {
        reject(new CommandError(`timed out after ${timeoutMs} ms: ${line}\n${tail(stdout + stderr)}`, result))
      } else if (code !== 0 && !options.allowFailure) {
        reject(new CommandError(`exit ${code ?? signal}: ${line}\n${tail(stderr || stdout)}`, result))
      } else {
        resolve(result)
      }
    })
  })
}

function writeLog(fd: number, chunk: string): void {
  try {
    // Synchronous so that nothing is lost when a run fails and the caller reads the file.
    writeSync(fd, chunk)
  } catch {
    // A log that cannot be written must not fail the command.
  }
}

export async function commandExists(name: string): Promise<boolean> {
  const result = await run('sh', ['-c', `command -v ${name}`], { allowFailure: true, timeoutMs: 10_000 })
  return result.code === 0
}

/** Command -> Debian package, for what the test runs itself. */
const COMMANDS: Record<string, string> = {
  podman: 'podman',
  runc: 'runc',
  'docker-compose': 'docker-compose',
  debootstrap: 'debootstrap',
}
// Without recommends (they would bring docker.io, buildah, criu, ...), so what podman needs as
// root is named: netavark and aardvark-dns (container networks with DNS by service name) and
// iptables (port publishing).
const ALSO = ['netavark', 'aardvark-dns', 'iptables']

/** Installs podman, runc, docker-compose and debootstrap from Debian's packages when missing. */
export async function ensurePackages(log: Log, logFile: string): Promise<void> {
  const missing: string[] = []
  for (const [command, pkg] of Object.entries(COMMANDS)) {
    if (!(await commandExists(command))) missing.push(pkg)
  }
  if (missing.length === 0) return
  if (process.getuid?.() !== 0) throw new Error(`${missing.join(', ')} missing, and installing them needs root`)
  log(`installing ${missing.join(' ')} (apt-get)`)
  const env = { ...engineEnv(), DEBIAN_FRONTEND: 'noninteractive' }
  await run('apt-get', ['update', '-qq'], { env, timeoutMs: 300_000, logFile })
  await run('apt-get', ['install', '-y', '-qq', '-o', 'DPkg::Lock::Timeout=300', '--no-install-recommends', ...missing, ...ALSO], { env, timeoutMs: 600_000, logFile })
}

export interface SocketService {
  pid: number
  socketPath: string
  /** For DOCKER_HOST. */
  dockerHost: string
  stop: () => Promise<void>
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', timeout: 2000 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode === 200))
    })
    req.on('error', () => resolve(false))
    req.on('timeout', () => req.destroy())
    req.end()
  })
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => child.once('exit', () => resolve()))
}

/** `podman system service` on a unix socket in `dir`: the Docker API docker-compose talks to. */
export async function startSocketService(dir: string, logFile: string): Promise<SocketService> {
  const socketPath = join(dir, 'podman.sock')
  const out = openSync(logFile, 'a')
  const child = spawn('podman', ['system', 'service', '--time=0', `unix://${socketPath}`], {
    env: engineEnv(),
    stdio: ['ignore', out, out],
  })
  closeSync(out)
  const pid = child.pid
  if (pid === undefined) throw new Error('podman system service did not start')
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const killer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exited(child)
    clearTimeout(killer)
  }
  try {
    await waitFor(async () => child.exitCode === null && existsSync(socketPath) && (await ping(socketPath)), {
      timeoutMs: 30_000,
      intervalMs: 100,
      what: `podman's API on ${socketPath}`,
    })
  } catch (error) {
    await stop()
    throw new Error(`${(error as Error).message}\n${tail(readFileSync(logFile, 'utf8'))}`)
  }
  return { pid, socketPath, dockerHost: `unix://${socketPath}`, stop }
}
