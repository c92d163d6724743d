// The memory footprint (part `footprint` of `npm run bench`; alone: BENCH_ONLY=footprint): the
// resident memory (RSS, from /proc/<pid>/status) of each role after start-up, run the ways it is
// run, beside a bare node:http server measured in the same run; the whole `npm start`; and the
// registry holding 100,000 instances that heartbeat every 10 s, driven from the load core.
// Each role's loaded modules are recorded too (test/helpers/record-modules.ts), to say which
// packages its memory goes to. Everything is bounded in time; every process is stopped at the end.
// BENCH_FOOTPRINT_BEFORE: the src/cli.ts of another checkout (e.g. made with `git archive`), whose
// roles, `npm start` and 100,000-instance registry are measured in the same run, as they ran then
// (node's default flags, no compile cache): the "before" of a before/after comparison.
import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { V8_FLAGS } from '../src/runtime/node-flags.ts'
import type { HeartbeatJob, HeartbeatResult } from './footprint-worker.ts'
import { clockTicksPerSecond } from './load.ts'
import { coreTicks, cpuSeconds } from './proc.ts'
import { freePort, spawnPinned, type Pinned } from './processes.ts'
import { BENCH_TOKEN, REGISTRY_ENV } from './servers.ts'

export const FOOTPRINT_PREFIX = 'FOOTPRINT '

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const CLI = join(ROOT, 'src/cli.ts')
/** What `npm start` runs: the CLI from the sources, with the compile cache on in every process. */
const START = join(ROOT, 'bin/start.js')
const BARE = fileURLToPath(new URL('./bare-idle.js', import.meta.url))
const WORKER = fileURLToPath(new URL('./footprint-worker.ts', import.meta.url))
const RECORDER = join(ROOT, 'test/helpers/record-modules.ts')
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc')
const ROLES = ['registry', 'product', 'order', 'gateway'] as const
type RoleName = (typeof ROLES)[number]

/** After a process is ready, how long it is left alone before its memory is read. */
const SETTLE_MS = 5000
const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 15_000
/** The registry at scale: 100 services × 1,000 instances, each heartbeating every 10 s. */
const SCALE = { services: 100, perService: 1000, intervalSeconds: 10, warmupSeconds: 10, durationSeconds: 30, connections: 32, registerDeadlineSeconds: 180 }

export interface Memory {
  rssMb: number
  /** Proportional set size: shared pages (Node's binary) divided among the processes sharing them. */
  pssMb: number
}

/** How a role is run: which entry point, with which node flags and environment. */
interface Mode {
  name: string
  /** What the mode is, for the output. */
  how: string
  cli: string
  flags: readonly string[]
  env: Record<string, string>
}

export interface RoleRow extends Memory {
  mode: string
  role: RoleName
}

export interface ModuleCount {
  role: RoleName
  modules: number
  /** Packages under node_modules, by how many of their modules were loaded. */
  packages: Array<[string, number]>
}

export interface NpmStartRun {
  label: string
  processes: Array<Memory & { name: string }>
  totalRssMb: number
  totalPssMb: number
}

export interface ScaleRun {
  label: string
  idle: Memory
  afterRegistering: Memory
  afterHeartbeats: Memory
  maxRssMb: number
  /** The registry's CPU over the measured window, as a share of one core (it is pinned to one). */
  cpuFraction: number
  /** Share of the registry's core that other processes took meanwhile: noise, when it is not near 0. */
  othersOnCoreFraction: number
  heartbeats: HeartbeatResult
}

export interface FootprintResult {
  bare: Memory
  modes: Array<{ name: string; how: string }>
  roles: RoleRow[]
  modules: ModuleCount[]
  npmStart: NpmStartRun[]
  scale: ScaleRun[]
  notes: string[]
}

export interface FootprintOptions {
  serverCore: number
  loadCore: number
  log: (line?: string) => void
  /** The src/cli.ts of another checkout, measured as "before". */
  beforeCli?: string
}

/** The caller's environment without what would change what is measured (tracing, node options, compile cache). */
function baseEnv(): NodeJS.ProcessEnv {
  const dropped = /^(OTEL_|NODE_OPTIONS$|NODE_COMPILE_CACHE$|NODE_DISABLE_COMPILE_CACHE$|LOG_FORMAT$|LOG_LEVEL$|REGISTRY_|DATABASE_URL$)/
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !dropped.test(name)))
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const mb = (kb: number) => Math.round((kb / 1024) * 10) / 10

/** RSS and PSS of a process, from /proc. */
export function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN)
  let pss = Number.NaN
  try {
    pss = Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? Number.NaN)
  } catch {
    // Kernels before 4.14 have no smaps_rollup: PSS is then not known.
  }
  return { rssMb: mb(rss), pssMb: mb(pss) }
}

/** The processes `pid` started (Linux: every thread's children). */
function childrenOf(pid: number): number[] {
  const found: number[] = []
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const list = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim()
    if (list) found.push(...list.split(/\s+/).map(Number))
  }
  return found
}

async function untilReady(url: string, who: Pinned): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  let exited = false
  void who.exited.then(() => (exited = true))
  for (;;) {
    if (exited) throw new Error(`${who.name} exited before it was ready; output:\n${who.output()}`)
    const status = await fetch(url, { signal: AbortSignal.timeout(2000) }).then(
      (response) => response.status,
      () => 0,
    )
    if (status === 200) return
    if (Date.now() > deadline) throw new Error(`${who.name} was not ready within ${READY_TIMEOUT_MS} ms (last status ${status}); output:\n${who.output()}`)
    await sleep(100)
  }
}

/** SIGTERM, then SIGKILL if it has not exited in time; resolves once it has. */
async function stop(process: Pinned): Promise<void> {
  const { child } = process
  if (child.exitCode !== null || child.signalCode !== null) return
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
  child.kill('SIGTERM')
  await process.exited
  clearTimeout(timer)
}

/**
 * The four roles as `npm start` has them, each a process of its own: the registry first, then the
 * product, order and gateway services registered with it. Resolves once every one is ready.
 */
async function startRoles(mode: Mode, core: number, work: string, extraArgs: readonly string[] = [], extraEnv: (role: RoleName) => Record<string, string> = () => ({})) {
  const started = new Map<RoleName, Pinned>()
  const env = (role: RoleName, port: number) => ({
    ...baseEnv(),
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_FORMAT: 'json',
    DATA_DIR: join(work, `data-${mode.name.replace(/\W+/g, '-')}`),
    ...mode.env,
    ...extraEnv(role),
  })
  const registryPort = await freePort()
  const registryUrl = `http://127.0.0.1:${registryPort}`
  const registry = spawnPinned(`registry (${mode.name})`, core, [...mode.flags, ...extraArgs, mode.cli, 'registry'], {
    ...env('registry', registryPort),
    REGISTRY_DNS_PORT: String(await freePort()),
  })
  started.set('registry', registry)
  try {
    await untilReady(`${registryUrl}/health/ready`, registry)
    const services: Array<[RoleName, number]> = []
    for (const role of ['product', 'order', 'gateway'] as const) {
      const port = await freePort()
      started.set(role, spawnPinned(`${role} (${mode.name})`, core, [...mode.flags, ...extraArgs, mode.cli, role], { ...env(role, port), REGISTRY_URL: registryUrl }))
      services.push([role, port])
    }
    for (const [role, port] of services) await untilReady(`http://127.0.0.1:${port}/health/ready`, started.get(role)!)
  } catch (error) {
    await Promise.all([...started.values()].map(stop))
    throw error
  }
  return started
}

async function stopRoles(started: Map<RoleName, Pinned>): Promise<void> {
  // Services first, so that they deregister from a registry that is still there.
  await Promise.all([...started].filter(([role]) => role !== 'registry').map(([, process]) => stop(process)))
  await stop(started.get('registry')!)
}

/** The roles' memory after start-up, in one mode. */
async function measureRoles(mode: Mode, core: number, work: string): Promise<RoleRow[]> {
  const started = await startRoles(mode, core, work)
  await sleep(SETTLE_MS)
  const rows = [...started].map(([role, process]) => ({ mode: mode.name, role, ...memoryOf(process.child.pid!) }))
  await stopRoles(started)
  return rows
}

/**
 * Starts the roles once with the module recorder, which also fills the compile cache of `mode`
 * (when it has one): which packages each role loads, read from the lists written at exit.
 */
async function recordModules(mode: Mode, core: number, work: string): Promise<ModuleCount[]> {
  const file = (role: RoleName) => join(work, `modules-${role}.txt`)
  const started = await startRoles(mode, core, work, ['--import', RECORDER], (role) => ({ RECORD_MODULES_FILE: file(role) }))
  await stopRoles(started)
  return ROLES.map((role) => {
    const urls = existsSync(file(role)) ? readFileSync(file(role), 'utf8').split('\n').filter(Boolean) : []
    const packages = new Map<string, number>()
    for (const url of urls) {
      const name = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1]
      if (name) packages.set(name, (packages.get(name) ?? 0) + 1)
    }
    return { role, modules: urls.length, packages: [...packages].sort((a, b) => b[1] - a[1]) }
  })
}

/** `npm start` (what its script runs: the supervisor, which starts the five children). */
async function measureNpmStart(label: string, cli: string, flags: readonly string[], core: number, work: string): Promise<NpmStartRun> {
  const [registry, product1, product2, order, gateway, dns] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
  const supervisor = spawnPinned(`npm start (${label})`, core, [...flags, cli], {
    ...baseEnv(),
    HOST: '127.0.0.1',
    REGISTRY_PORT: String(registry),
    PRODUCT_PORTS: `${product1},${product2}`,
    ORDER_PORTS: String(order),
    GATEWAY_PORT: String(gateway),
    REGISTRY_DNS_PORT: String(dns),
    DATA_DIR: join(work, `data-npm-start-${label.replace(/\W+/g, '-')}`),
  })
  try {
    await supervisor.waitForLine((line) => (line.includes('all up in') ? true : undefined), READY_TIMEOUT_MS * 2)
    await sleep(SETTLE_MS)
    const pid = supervisor.child.pid!
    const processes = [{ name: 'supervisor', ...memoryOf(pid) }]
    for (const child of childrenOf(pid)) {
      const args = readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0').filter(Boolean)
      processes.push({ name: args.at(-1) ?? String(child), ...memoryOf(child) })
    }
    const sum = (pick: (m: Memory) => number) => Math.round(processes.reduce((total, m) => total + pick(m), 0) * 10) / 10
    return { label, processes, totalRssMb: sum((m) => m.rssMb), totalPssMb: sum((m) => m.pssMb) }
  } finally {
    await stop(supervisor)
  }
}

/** One registry holding SCALE's instances, heartbeating, driven from the load core. */
async function measureScale(label: string, mode: Mode, options: FootprintOptions): Promise<ScaleRun> {
  const port = await freePort()
  const baseUrl = `http://127.0.0.1:${port}`
  const registry = spawnPinned(`registry at scale (${label})`, options.serverCore, [...mode.flags, mode.cli, 'registry'], {
    ...baseEnv(),
    ...REGISTRY_ENV,
    ...mode.env,
    PORT: String(port),
    // As in production: instances expire 30 s after their last heartbeat, and request lines are debug.
    LOG_LEVEL: 'info',
    REGISTRY_TTL_SECONDS: '30',
    REGISTRY_MAX_INSTANCES: '200000',
    REGISTRY_MAX_INSTANCES_PER_SERVICE: '2000',
    // One load generator is one client address: a per-address write limit would refuse it.
    REGISTRY_WRITE_RATE_LIMIT: '0',
  })
  try {
    await untilReady(`${baseUrl}/health/ready`, registry)
    await sleep(SETTLE_MS)
    const pid = registry.child.pid!
    const idle = memoryOf(pid)
    const job: HeartbeatJob = { baseUrl, token: BENCH_TOKEN, ...SCALE }
    const worker = spawnPinned(`heartbeat load (${label})`, options.loadCore, [WORKER, JSON.stringify(job)], baseEnv())
    const event = (name: string, timeoutMs: number) =>
      worker.waitForLine((line) => {
        if (!line.startsWith(FOOTPRINT_PREFIX)) return undefined
        const parsed = JSON.parse(line.slice(FOOTPRINT_PREFIX.length)) as { event: string; result?: HeartbeatResult }
        return parsed.event === name ? parsed : undefined
      }, timeoutMs)
    const registered = event('registered', (SCALE.registerDeadlineSeconds + 30) * 1000)
    await registered
    const afterRegistering = memoryOf(pid)
    await event('measuring', (SCALE.warmupSeconds + 30) * 1000)
    const ticks = clockTicksPerSecond()
    const cpuBefore = cpuSeconds(pid, ticks)
    const coreBefore = coreTicks(options.serverCore)
    const startedAt = performance.now()
    let maxRssMb = afterRegistering.rssMb
    let finished = false
    const done = event('done', (SCALE.durationSeconds + 60) * 1000).finally(() => (finished = true))
    while (!finished) {
      maxRssMb = Math.max(maxRssMb, memoryOf(pid).rssMb)
      await Promise.race([done, sleep(1000)]).catch(() => undefined)
    }
    const { result } = await done
    const cpuSpent = cpuSeconds(pid, ticks) - cpuBefore
    const cpuFraction = cpuSpent / ((performance.now() - startedAt) / 1000)
    const coreAfter = coreTicks(options.serverCore)
    const coreBusy = (coreAfter.busy - coreBefore.busy) / Math.max(1, coreAfter.total - coreBefore.total)
    const othersOnCoreFraction = Math.max(0, coreBusy - cpuFraction)
    const afterHeartbeats = memoryOf(pid)
    await worker.exited
    return { label, idle, afterRegistering, afterHeartbeats, maxRssMb: Math.max(maxRssMb, afterHeartbeats.rssMb), cpuFraction, othersOnCoreFraction, heartbeats: result! }
  } finally {
    await stop(registry)
  }
}

/** `npm run build` into `work`, with node_modules and package.json beside it; undefined when the build fails. */
async function build(work: string, log: (line?: string) => void): Promise<string | undefined> {
  const out = join(work, 'build')
  try {
    await promisify(execFile)(process.execPath, [TSC, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(out, 'dist')], { cwd: ROOT, timeout: 180_000 })
  } catch (error) {
    log(`skipped:  the built roles: tsc failed (${(error as { stdout?: string }).stdout?.trim().split('\n')[0] ?? String(error)})`)
    return undefined
  }
  // As deploy/copy-assets.js does: every file under src/ that is not TypeScript (the dashboard's).
  cpSync(join(ROOT, 'src'), join(out, 'dist'), { recursive: true, filter: (source) => !source.endsWith('.ts') })
  writeFileSync(join(out, 'package.json'), readFileSync(join(ROOT, 'package.json')))
  symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'), 'dir')
  return join(out, 'dist/cli.js')
}

export async function measureFootprint(options: FootprintOptions): Promise<FootprintResult> {
  const { log, serverCore } = options
  const work = mkdtempSync(join(tmpdir(), 'bench-footprint-'))
  const notes: string[] = []
  try {
    const noCache = { NODE_DISABLE_COMPILE_CACHE: '1' }
    const modes: Mode[] = [
      { name: 'source', how: `node ${V8_FLAGS.join(' ')} src/cli.ts <role> (npm start -- <role>)`, cli: CLI, flags: V8_FLAGS, env: noCache },
      {
        name: 'source, cached',
        how: "the same with Node's compile cache warm, as npm start runs its children",
        cli: CLI,
        flags: V8_FLAGS,
        env: { NODE_COMPILE_CACHE: join(work, 'compile-cache') },
      },
    ]
    log('building: tsc -p tsconfig.build.json into a temporary directory (the container runs the build)')
    const built = await build(work, log)
    if (built) {
      modes.push({ name: 'built', how: `node ${V8_FLAGS.join(' ')} dist/cli.js <role> (the container image)`, cli: built, flags: V8_FLAGS, env: noCache })
      modes.push({ name: 'built, V8 defaults', how: "node dist/cli.js <role>: the build with Node's default V8 flags", cli: built, flags: [], env: noCache })
    }
    if (options.beforeCli) {
      modes.push({ name: 'before', how: `node ${options.beforeCli} <role>: the other checkout, as it ran`, cli: options.beforeCli, flags: [], env: noCache })
    }

    log('running: bare node:http server, idle')
    const bareProcess = spawnPinned('bare node:http (idle)', serverCore, [BARE], baseEnv())
    const barePort = await bareProcess.waitForLine((line) => (line.startsWith('{') ? (JSON.parse(line) as { port?: number }).port : undefined), READY_TIMEOUT_MS)
    await untilReady(`http://127.0.0.1:${barePort}/`, bareProcess)
    await sleep(SETTLE_MS)
    const bare = memoryOf(bareProcess.child.pid!)
    await stop(bareProcess)

    // The recording run fills the compile cache that `source, cached` then reads.
    log('running: each role once with the module recorder (this fills the compile cache)')
    const modules = await recordModules(modes[1]!, serverCore, work)
    const roles: RoleRow[] = []
    for (const mode of modes) {
      log(`running: the four roles, ${mode.name}`)
      roles.push(...(await measureRoles(mode, serverCore, work)))
    }

    const npmStart: NpmStartRun[] = []
    log('running: npm start, first start (an empty compile cache)')
    // The supervisor's children use the project's cache (src/runtime/node-flags.ts): emptied, so
    // that the first start is one.
    rmSync(join(ROOT, 'node_modules', '.cache', 'node-compile-cache'), { recursive: true, force: true })
    npmStart.push(await measureNpmStart('first start', START, V8_FLAGS, serverCore, work))
    log('running: npm start, second start (the compile cache the first one filled)')
    npmStart.push(await measureNpmStart('second start', START, V8_FLAGS, serverCore, work))
    if (options.beforeCli) {
      log('running: npm start, before')
      npmStart.push(await measureNpmStart('before', options.beforeCli, [], serverCore, work))
    }

    const scale: ScaleRun[] = []
    const scaleMode = modes.find((m) => m.name === 'built') ?? modes[0]!
    if (scaleMode.name !== 'built') notes.push('the registry at scale ran from the sources: the build failed')
    log(`running: the registry (${scaleMode.name}) with ${SCALE.services * SCALE.perService} instances heartbeating every ${SCALE.intervalSeconds} s`)
    scale.push(await measureScale(scaleMode.name, scaleMode, options))
    const before = modes.find((m) => m.name === 'before')
    if (before) {
      log('running: the registry (before) with the same instances')
      scale.push(await measureScale('before', before, options))
    }
    return { bare, modes: modes.map(({ name, how }) => ({ name, how })), roles, modules, npmStart, scale, notes }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

export const SCALE_SETUP = SCALE
export const SETTLE_SECONDS = SETTLE_MS / 1000
