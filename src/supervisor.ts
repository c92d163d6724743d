import { spawn, type ChildProcess } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { styleText } from 'node:util'
import { backoffDelay } from './lib/backoff.ts'
import { errorCode } from './lib/errors.ts'
import { wantsColor } from './lib/logger.ts'
import { localUrl } from './runtime/address.ts'
import { childV8Flags, compileCacheEnv } from './runtime/node-flags.ts'
import { EXIT_PORT_IN_USE } from './runtime/role.ts'
import { ALL_PORT_VARIABLES, type AllConfig, type Env } from './config/index.ts'

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

// On a terminal, each process's prefix has its colour.
const LABEL_COLORS = { all: 'bold', registry: 'cyan', product: 'green', order: 'yellow', gateway: 'magenta' } as const
let colorLabels = false

function write(stream: NodeJS.WriteStream, label: string, line: string): void {
  if (closedStreams.has(stream)) return
  const role = label.split(':')[0] as keyof typeof LABEL_COLORS
  const prefix = colorLabels ? styleText(LABEL_COLORS[role] ?? 'bold', `[${label}]`, { validateStream: false }) : `[${label}]`
  stream.write(`${prefix} ${line}\n`)
}

interface PortClaim {
  port: number
  variable: string
  /** Whose port it is, for the message: "the registry's". */
  owner: string
  /** What to set instead: "a free port", "free ports (now 8081,8082)". */
  fix: string
  udp?: boolean
}

/** Every port `npm start` will listen on, with the variable that moves it. */
function portClaims(config: AllConfig): PortClaim[] {
  const list = (ports: number[]) => `free ports (now ${ports.join(',')})`
  return [
    { port: config.registryPort, variable: ALL_PORT_VARIABLES.registry, owner: "the registry's", fix: 'a free port' },
    { port: config.registryDnsPort, variable: ALL_PORT_VARIABLES.dns, owner: "the registry's DNS", fix: 'a free port (0: no DNS)', udp: true },
    ...config.productPorts.map((port) => ({ port, variable: ALL_PORT_VARIABLES.product, owner: "a product instance's", fix: list(config.productPorts) })),
    ...config.orderPorts.map((port) => ({ port, variable: ALL_PORT_VARIABLES.order, owner: "an order instance's", fix: list(config.orderPorts) })),
    { port: config.gatewayPort, variable: ALL_PORT_VARIABLES.gateway, owner: "the gateway's", fix: 'a free port (0: no gateway)' },
  ].filter((claim) => claim.port !== 0)
}

function inUseMessage(claim: PortClaim, host: string): string {
  return `port ${claim.port} (${claim.owner}) is already in use on ${host}: stop what uses it, or set ${claim.variable} to ${claim.fix}`
}

/** Why `port` cannot be listened on at `host` right now (EADDRINUSE, EACCES), or undefined. */
async function bindError(port: number, host: string, udp: boolean): Promise<string | undefined> {
  const tcp = await new Promise<string | undefined>((resolve) => {
    const server = createServer()
    server.once('error', (error) => resolve(errorCode(error) ?? 'EUNKNOWN'))
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(undefined)))
  })
  if (tcp !== undefined || !udp) return tcp
  return new Promise<string | undefined>((resolve) => {
    const socket = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' })
    socket.once('error', (error) => {
      socket.close()
      resolve(errorCode(error) ?? 'EUNKNOWN')
    })
    socket.bind({ port, address: host, exclusive: true }, () => socket.close(() => resolve(undefined)))
  })
}

/**
 * `npm start`: the whole system as separate processes, registry first. Each child's output is
 * prefixed with its role and port; a child that dies is restarted with backoff; Ctrl-C or SIGTERM
 * stops the services (they deregister and drain), then the registry, within 10 s.
 */
export async function runAll(config: AllConfig, env: Env): Promise<void> {
  colorLabels = wantsColor(env, process.stdout.isTTY)
  // A port that is taken stops everything before anything starts: one line per port, naming the
  // variable that moves it (a child that then failed to listen would only know its PORT).
  const busy: string[] = []
  for (const claim of portClaims(config)) {
    const code = await bindError(claim.port, config.host, claim.udp === true)
    if (code === 'EADDRINUSE') busy.push(inUseMessage(claim, config.host))
    else if (code === 'EACCES') busy.push(`port ${claim.port} (${claim.owner}) may not be bound by this user on ${config.host}: set ${claim.variable} to ${claim.fix} above 1023`)
  }
  if (busy.length > 0) {
    for (const line of busy) write(process.stderr, 'all', line)
    process.exit(EXIT_PORT_IN_USE)
  }

  const registryUrl = localUrl(config.host, config.registryPort)
  const specs: ChildSpec[] = [
    { role: 'registry', port: config.registryPort },
    ...config.productPorts.map((port) => ({ role: 'product' as const, port })),
    ...config.orderPorts.map((port) => ({ role: 'order' as const, port })),
    ...(config.gatewayPort === 0 ? [] : [{ role: 'gateway' as const, port: config.gatewayPort }]),
  ]
  const children = specs.map((spec): Child => ({ spec, label: `${spec.role}:${spec.port}`, restarts: 0, startedAt: 0 }))
  const claims = portClaims(config)
  const startedAt = Date.now()
  let stopping = false

  const log = (message: string) => write(process.stdout, 'all', message)

  const start = (child: Child) => {
    const { role, port } = child.spec
    const proc = spawn(process.execPath, [...childV8Flags(env.NODE_OPTIONS, process.execArgv), CLI, role], {
      env: {
        ...env,
        // From the sources, children read their modules already stripped of types from the cache.
        ...compileCacheEnv(env, CLI.endsWith('.ts'), fileURLToPath(new URL('..', import.meta.url))),
        PORT: String(port),
        HOST: config.host,
        // Children write to our pipe, not a terminal: ask for readable lines, in colour, when we have one.
        LOG_FORMAT: config.logFormat ?? (process.stdout.isTTY ? 'pretty' : 'json'),
        ...(colorLabels ? { FORCE_COLOR: '1' } : {}),
        // Every child talks to this system's registry and advertises a local address.
        REGISTRY_URL: registryUrl,
        SERVICE_URL: localUrl(config.host, port),
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
      // Taken since we checked: restarting cannot help. Say which of its ports, by the variable
      // that moves it (the child knows only its PORT).
      if (code === EXIT_PORT_IN_USE) {
        void (async () => {
          const own = claims.filter((c) => (c.port === port && c.variable !== ALL_PORT_VARIABLES.dns) || (role === 'registry' && c.variable === ALL_PORT_VARIABLES.dns))
          const taken: string[] = []
          for (const claim of own) if ((await bindError(claim.port, config.host, claim.udp === true)) === 'EADDRINUSE') taken.push(inUseMessage(claim, config.host))
          write(process.stderr, 'all', `${taken.length > 0 ? taken.join('; ') : `${child.label} could not listen: a port it needs is in use`}; stopping everything`)
          await stopAll(EXIT_PORT_IN_USE)
        })()
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
    if (stopping) return
    log(`registry did not become ready on port ${config.registryPort} within ${READY_DEADLINE_MS / 1000} s`)
    await stopAll(1)
    return
  }
  log(`registry ready at ${registryUrl}`)
  for (const child of services) start(child)
  const ready = await Promise.all(services.map((c) => waitReady(`${localUrl(config.host, c.spec.port)}/health/ready`, READY_DEADLINE_MS, () => stopping)))
  if (stopping) return
  if (!ready.every(Boolean)) {
    log(
      `not ready after ${READY_DEADLINE_MS / 1000} s: ${services
        .filter((_, i) => !ready[i])
        .map((c) => c.label)
        .join(', ')}; see their lines above`,
    )
    return
  }
  const seconds = ((Date.now() - startedAt) / 1000).toFixed(1)
  const gateway = services.find((c) => c.spec.role === 'gateway')
  const api = localUrl(config.host, gateway ? gateway.spec.port : config.productPorts[0]!)
  log(`all up in ${seconds} s: the API at ${api}/docs, the registry's dashboard at ${registryUrl}/ (Ctrl-C stops everything)`)
}

async function waitReady(url: string, timeoutMs: number, cancelled: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && !cancelled()) {
    if (await answersOk(url, 1000)) return true
    await sleep(100)
  }
  return false
}

/**
 * Whether GET `url` answers 2xx within `timeoutMs`. node:http, not fetch: fetch would load Node's
 * bundled undici into the supervisor (about 12 MB of its memory) for a few probes at start-up.
 */
function answersOk(url: string, timeoutMs: number): Promise<boolean> {
  const { get } = process.getBuiltinModule('node:http')
  return new Promise((resolve) => {
    // A connection of its own (agent: false), closed with the answer: no idle socket to a child.
    const request = get(url, { timeout: timeoutMs, agent: false }, (response) => {
      response.resume()
      const status = response.statusCode ?? 0
      resolve(status >= 200 && status < 300)
    })
    request.on('timeout', () => request.destroy())
    // Not up yet: refused, reset, or too slow.
    request.on('error', () => resolve(false))
  })
}
