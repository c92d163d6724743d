// One Compose project brought up by the test: docker-compose over podman's socket for the Compose
// commands, podman itself for what Compose v1 cannot aim at a single replica (kill, exec, inspect).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { engineEnv, run, type CommandResult, type Log, type RunOptions } from './engine.ts'

export const PROJECT_PREFIX = 'ma-compose-test'
const LABEL_PROJECT = 'com.docker.compose.project'
const LABEL_SERVICE = 'com.docker.compose.service'

export interface ContainerInfo {
  id: string
  name: string
  service: string
  running: boolean
  exitCode: number
  user: string
  /** The container's address on the project's network. */
  ip: string
  /** Its environment as configured (what `podman inspect` shows anyone who may inspect it). */
  env: string[]
  /** Host ports it publishes: `8000/tcp` -> [{ hostIp: '0.0.0.0', hostPort: '8000' }]. */
  published: Record<string, Array<{ hostIp: string; hostPort: string }>>
  limits: { memoryBytes: number; memorySwapBytes: number; cpus: number; pids: number }
}

interface InspectJson {
  Id: string
  Name: string
  Config: { User?: string; Labels?: Record<string, string> | null; Env?: string[] | null }
  State: { Running: boolean; ExitCode: number }
  NetworkSettings: { Networks?: Record<string, { IPAddress?: string }> | null }
  HostConfig: {
    PortBindings?: Record<string, Array<{ HostIp?: string; HostPort?: string }> | null> | null
    Memory?: number
    MemorySwap?: number
    NanoCpus?: number
    CpuQuota?: number
    CpuPeriod?: number
    PidsLimit?: number
  }
}

function cpus(host: InspectJson['HostConfig']): number {
  if (host.NanoCpus) return host.NanoCpus / 1e9
  return host.CpuQuota && host.CpuPeriod ? host.CpuQuota / host.CpuPeriod : 0
}

export interface StackOptions {
  project: string
  files: string[]
  /** DOCKER_HOST and the Compose variables (NODE_IMAGE, REGISTRY_HOST_PORT, ...). */
  env: Record<string, string>
  logFile: string
}

export class Stack {
  readonly project: string
  readonly network: string
  readonly #options: StackOptions

  constructor(options: StackOptions) {
    this.#options = options
    this.project = options.project
    this.network = `${options.project}_default`
  }

  compose(args: string[], options: RunOptions = {}): Promise<CommandResult> {
    const files = this.#options.files.flatMap((file) => ['-f', file])
    // None of the caller's own COMPOSE_* / DOCKER_* settings (profiles, files, contexts, TLS).
    const env = Object.fromEntries(Object.entries(engineEnv()).filter(([name]) => !/^(COMPOSE|DOCKER)_/.test(name)))
    return run('docker-compose', ['--ansi', 'never', '-p', this.project, ...files, ...args], {
      env: {
        ...env,
        ...this.#options.env,
        COMPOSE_DOCKER_CLI_BUILD: '0',
        DOCKER_BUILDKIT: '0',
        COMPOSE_HTTP_TIMEOUT: '600',
      },
      logFile: this.#options.logFile,
      ...options,
    })
  }

  podman(args: string[], options: RunOptions = {}): Promise<CommandResult> {
    return run('podman', args, { timeoutMs: 60_000, ...options })
  }

  async containers(service?: string): Promise<ContainerInfo[]> {
    const filters = ['--filter', `label=${LABEL_PROJECT}=${this.project}`]
    if (service) filters.push('--filter', `label=${LABEL_SERVICE}=${service}`)
    const ids = (await this.podman(['ps', '-a', '-q', '--no-trunc', ...filters])).stdout.split('\n').filter(Boolean)
    if (ids.length === 0) return []
    const inspected = JSON.parse((await this.podman(['container', 'inspect', ...ids])).stdout) as InspectJson[]
    return inspected
      .map((c) => ({
        id: c.Id,
        name: c.Name.replace(/^\//, ''),
        service: c.Config.Labels?.[LABEL_SERVICE] ?? '',
        running: c.State.Running,
        exitCode: c.State.ExitCode,
        user: c.Config.User ?? '',
        ip: c.NetworkSettings.Networks?.[this.network]?.IPAddress ?? '',
        env: c.Config.Env ?? [],
        published: Object.fromEntries(
          Object.entries(c.HostConfig.PortBindings ?? {})
            .map(([port, bindings]) => [port, (bindings ?? []).map((b) => ({ hostIp: b.HostIp ?? '', hostPort: b.HostPort ?? '' }))] as const)
            .filter(([, bindings]) => bindings.length > 0),
        ),
        limits: { memoryBytes: c.HostConfig.Memory ?? 0, memorySwapBytes: c.HostConfig.MemorySwap ?? 0, cpus: cpus(c.HostConfig), pids: c.HostConfig.PidsLimit ?? 0 },
      }))
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  async container(service: string): Promise<ContainerInfo> {
    const found = (await this.containers(service)).find((c) => c.running)
    if (!found) throw new Error(`no running ${service} container in ${this.project}`)
    return found
  }

  /** The host's own address on the project's network (its gateway). */
  async networkGateway(): Promise<string> {
    const result = await this.podman(['network', 'inspect', this.network, '--format', '{{range .Subnets}}{{.Gateway}} {{end}}'])
    const gateway = result.stdout.trim().split(/\s+/)[0]
    if (!gateway) throw new Error(`no gateway address for ${this.network}: ${result.stdout}`)
    return gateway
  }

  /** The last `lines` lines of every service's log, for a failure report. */
  async logs(lines = 60): Promise<string> {
    const result = await this.compose(['logs', '--no-color', `--tail=${lines}`], { allowFailure: true, timeoutMs: 60_000, logFile: undefined })
    return result.stdout + result.stderr
  }

  /** `down` with volumes, then whatever is left by label (a failed `down`, a killed run). */
  async tearDown(log: Log): Promise<void> {
    const down = await this.compose(['down', '--volumes', '--remove-orphans', '--timeout', '10'], { allowFailure: true, timeoutMs: 180_000 })
    if (down.code !== 0) log(`docker-compose down failed (exit ${down.code}); removing the project's resources with podman`)
    await removeProjectResources(this.project)
  }

  async leftovers(): Promise<string[]> {
    return projectResources(this.project)
  }
}

async function listByLabel(kind: 'ps' | 'network' | 'volume', project: string): Promise<string[]> {
  const args = kind === 'ps' ? ['ps', '-a', '-q', '--filter', `label=${LABEL_PROJECT}=${project}`] : [kind, 'ls', '-q', '--filter', `label=${LABEL_PROJECT}=${project}`]
  const result = await run('podman', args, { allowFailure: true, timeoutMs: 60_000 })
  return result.stdout
    .split('\n')
    .map((s) => s.trim())
    .filter(Boolean)
}

async function projectResources(project: string): Promise<string[]> {
  const found: string[] = []
  for (const kind of ['ps', 'network', 'volume'] as const) {
    for (const id of await listByLabel(kind, project)) found.push(`${kind === 'ps' ? 'container' : kind} ${id}`)
  }
  return found
}

export async function removeProjectResources(project: string): Promise<void> {
  const containers = await listByLabel('ps', project)
  if (containers.length > 0) await run('podman', ['rm', '--force', '--time', '2', ...containers], { allowFailure: true, timeoutMs: 120_000 })
  const networks = await listByLabel('network', project)
  if (networks.length > 0) await run('podman', ['network', 'rm', '--force', ...networks], { allowFailure: true })
  const volumes = await listByLabel('volume', project)
  if (volumes.length > 0) await run('podman', ['volume', 'rm', '--force', ...volumes], { allowFailure: true })
}

// ---------------------------------------------------------------------------------------------
// Runs that were killed (no teardown) leave a state file; the next run cleans up after them.

const STATE_DIR = join(tmpdir(), 'microservices-advanced-compose-test')

interface RunState {
  project: string
  runnerPid: number
  socketPid?: number
  socketPath?: string
  workDir: string
}

export function stateFile(project: string): string {
  return join(STATE_DIR, `${project}.json`)
}

export function saveState(state: RunState): void {
  mkdirSync(STATE_DIR, { recursive: true })
  writeFileSync(stateFile(state.project), JSON.stringify(state))
}

export function clearState(project: string): void {
  rmSync(stateFile(project), { force: true })
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Only a `podman system service` on that run's own socket: never anyone else's process. */
function isSocketServiceOf(pid: number, socketPath: string): boolean {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    return args.includes('service') && args.includes(`unix://${socketPath}`)
  } catch {
    return false
  }
}

/** Tears down what earlier runs left when they were killed before their own teardown. */
export async function reapAbandonedRuns(log: Log): Promise<void> {
  if (!existsSync(STATE_DIR)) return
  for (const file of readdirSync(STATE_DIR).filter((f) => f.endsWith('.json'))) {
    const path = join(STATE_DIR, file)
    let state: RunState
    try {
      state = JSON.parse(readFileSync(path, 'utf8')) as RunState
    } catch {
      rmSync(path, { force: true })
      continue
    }
    if (alive(state.runnerPid)) continue // a run in progress
    log(`cleaning up after an earlier run that did not finish: ${state.project}`)
    if (state.socketPid !== undefined && state.socketPath && isSocketServiceOf(state.socketPid, state.socketPath)) {
      process.kill(state.socketPid, 'SIGKILL')
    }
    await removeProjectResources(state.project)
    if (state.workDir.startsWith(tmpdir())) rmSync(state.workDir, { recursive: true, force: true })
    rmSync(path, { force: true })
  }
}
