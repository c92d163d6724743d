// `npm run bench`: the registry's GET /discover/{name} and POST /heartbeat against a bare
// node:http server answering the same bytes, watch propagation, and the gateway against nginx;
// the servers on one core, the load on another.
// Env: BENCH_DURATION_SECONDS (measured seconds per run, default 10), BENCH_WARMUP_SECONDS (2),
// BENCH_ROUNDS (1; more rounds are interleaved and each figure is the median of its rounds),
// BENCH_ONLY (a comma-separated list of the parts to run: `registry`, `watch`, `gateway`,
// `footprint`; default all: `BENCH_ONLY=gateway npm run bench` to iterate on the gateway alone),
// BENCH_PROFILE_DIR (a directory: the gateway then runs with `--cpu-prof` and writes its profile
// there when it stops; the figures of such a run are slower and are not comparable),
// BENCH_GATEWAY_BEFORE (the src/cli.ts of another checkout, e.g. one made with `git archive`: its
// gateway is measured in the same rounds as "gateway (before)", for a before/after comparison),
// BENCH_FOOTPRINT_BEFORE (the same for the part `footprint`, memory: bench/footprint.ts).
// The exit code says whether the benchmark ran, not whether the aims were met.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { clockTicksPerSecond, runLoad, type LoadRequest } from './load.ts'
import { installCleanup, interrupted, stopAll } from './processes.ts'
import { aims, machine, medians, renderAims, renderComparison, renderTable, withRatios, type CaseName, type Run, type ServerName } from './report.ts'
import { measureGateway, type GatewayRow } from './gateway.ts'
import { renderGateway, renderPropagation } from './report-extra.ts'
import { measurePropagation, type PropagationResult } from './watch.ts'
import { V8_FLAGS } from '../src/runtime/node-flags.ts'
import { measureFootprint, type FootprintResult } from './footprint.ts'
import { footprintAims, renderFootprint } from './report-footprint.ts'
import { HEARTBEAT_BODY, JSON_HEADERS, READ_HEADERS, REGISTRY_ENV, etcdEnv, prepareRegistry, startBare, startEtcd, startRegistry, verifyBare, type Server } from './servers.ts'

const SERVER_CORE = 0
const LOAD_CORE = 1
const CONNECTIONS = 64
const WATCHERS = 1000
const WATCH_CHANGES = 10
const RESULTS_DIR = new URL('./results/', import.meta.url)

interface Settings {
  durationSeconds: number
  warmupSeconds: number
  rounds: number
}

const log = (line = '') => process.stdout.write(`${line}\n`)

function numberFromEnv(name: string, fallback: number, min: number, max: number, integer = false): number {
  const raw = process.env[name]?.trim()
  if (!raw) return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw new Error(`${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${JSON.stringify(raw)}`)
  }
  return value
}

const PARTS = ['registry', 'watch', 'gateway', 'footprint'] as const
type Part = (typeof PARTS)[number]

function partsFromEnv(): ReadonlySet<Part> {
  const raw = process.env.BENCH_ONLY?.trim()
  if (!raw) return new Set(PARTS)
  const names = raw.split(',').map((name) => name.trim())
  const unknown = names.filter((name) => !(PARTS as readonly string[]).includes(name))
  if (unknown.length > 0 || names.length === 0) throw new Error(`BENCH_ONLY must be a comma-separated list of ${PARTS.join(', ')}, got ${JSON.stringify(raw)}`)
  return new Set(names as Part[])
}

// Bounded so that a typo cannot start an hour-long run: at most 5 × 4 × 150 s.
const settings = (): Settings => ({
  durationSeconds: numberFromEnv('BENCH_DURATION_SECONDS', 10, 1, 120),
  warmupSeconds: numberFromEnv('BENCH_WARMUP_SECONDS', 2, 0, 30),
  rounds: numberFromEnv('BENCH_ROUNDS', 1, 1, 5, true),
})

/** Runs every case on every server, round after round, so outside load hurts both servers alike. */
async function measure(servers: readonly [ServerName, Server][], discoverPath: string, run: Settings): Promise<Run[]> {
  const cases: [CaseName, (server: Server) => LoadRequest][] = [
    ['discover', (server) => ({ url: `${server.baseUrl}${discoverPath}`, method: 'GET', headers: READ_HEADERS })],
    ['heartbeat', (server) => ({ url: `${server.baseUrl}/heartbeat`, method: 'POST', headers: JSON_HEADERS, body: HEARTBEAT_BODY })],
  ]
  const clockTicks = clockTicksPerSecond()
  const results: Run[] = []
  for (let round = 1; round <= run.rounds; round += 1) {
    for (const [caseName, request] of cases) {
      for (const [serverName, server] of servers) {
        log(`running: ${run.rounds > 1 ? `round ${round}, ` : ''}${caseName} on ${serverName} (${run.warmupSeconds + run.durationSeconds} s)`)
        const pid = server.process.child.pid
        if (pid === undefined) throw new Error(`${serverName} has no process id`)
        const result = await runLoad(`${caseName} on ${serverName}`, LOAD_CORE, {
          ...request(server),
          connections: CONNECTIONS,
          warmupSeconds: run.warmupSeconds,
          durationSeconds: run.durationSeconds,
          serverPid: pid,
          serverCore: SERVER_CORE,
          clockTicksPerSecond: clockTicks,
        })
        results.push({ ...result, case: caseName, server: serverName })
      }
    }
  }
  return results
}

async function main(): Promise<void> {
  const run = settings()
  const parts = partsFromEnv()
  const profileDir = process.env.BENCH_PROFILE_DIR?.trim() || undefined
  if (availableParallelism() < 2) throw new Error('the benchmark needs two cores: one for the servers, one for the load generator')
  const host = machine()
  const date = new Date().toISOString()
  const [loadAverage = 0] = loadavg()

  log(`date:     ${date}`)
  log(`machine:  ${host.cpuModel}, ${host.cores} cores, Node ${host.node}, Linux ${host.kernel}`)
  log(
    `setup:    servers pinned to core ${SERVER_CORE}, autocannon to core ${LOAD_CORE} (taskset), ${CONNECTIONS} connections, ` +
      `${run.warmupSeconds} s warm-up + ${run.durationSeconds} s measured per run, ${run.rounds} round(s), 127.0.0.1 only`,
  )
  if (parts.size < PARTS.length) log(`parts:    ${[...parts].join(', ')} only (BENCH_ONLY)`)
  log(
    `registry: node ${V8_FLAGS.join(' ')} src/cli.ts registry (as npm start and the image run it; "V8 defaults": without the flag), ${Object.entries(REGISTRY_ENV)
      .map(([name, value]) => `${name}=${value}`)
      .join(' ')}`,
  )
  log('          (LOG_LEVEL=warn so that per-request log lines do not dominate what is measured)')
  if (profileDir) log(`profile:  the gateway runs with --cpu-prof, written to ${profileDir} (slower: compare nothing across runs with and without it)`)
  if (loadAverage > 0.5) {
    log(`warning:  load average ${loadAverage.toFixed(2)} at start: other processes share these cores and the numbers will be noisy;`)
    log('          the "others on core" column shows how much of the server core they took during each run')
  }
  log()

  let runs: Run[] = []
  if (parts.has('registry')) {
    const registry = await startRegistry(SERVER_CORE)
    const captured = await prepareRegistry(registry.baseUrl)
    log(`checked:  GET ${captured.discoverPath} lists 3 instances, POST /heartbeat answers 200`)
    // The same registry with V8's default flags: what --max-semi-space-size=4 costs in throughput.
    const defaultsRegistry = await startRegistry(SERVER_CORE, {}, 'registry (V8 defaults)', [])
    await prepareRegistry(defaultsRegistry.baseUrl)
    // The same registry over etcd (one member, on the server core too: its work is the registry's cost).
    const etcd = await startEtcd(SERVER_CORE)
    const etcdRegistry = await startRegistry(SERVER_CORE, etcdEnv(etcd, '/bench'), 'registry (etcd)')
    await prepareRegistry(etcdRegistry.baseUrl)
    log('checked:  the etcd registry answers the same requests (one etcd member, data on this disk)')
    const bare = await startBare(SERVER_CORE, captured)
    await verifyBare(bare.baseUrl, captured)
    log('checked:  the bare server answers the same status, content-type and body')
    log()

    runs = await measure(
      [
        ['bare node:http', bare],
        ['registry', registry],
        ['registry (V8 defaults)', defaultsRegistry],
        ['registry (etcd)', etcdRegistry],
      ],
      captured.discoverPath,
      run,
    )
    await stopAll()
    etcd.remove()
  }

  const propagation: PropagationResult[] = []
  if (parts.has('watch')) {
    // Watch propagation: 1,000 watchers of one service, blocking queries against polling each second.
    log()
    const watchRegistry = await startRegistry(SERVER_CORE)
    for (const mode of ['watch', 'poll'] as const) {
      log(`running: propagation of ${WATCH_CHANGES} changes to ${WATCHERS} watchers (${mode === 'watch' ? 'blocking queries' : 'polling every 1 s'})`)
      propagation.push(await measurePropagation(watchRegistry.baseUrl, LOAD_CORE, mode, WATCHERS, WATCH_CHANGES))
    }
    await stopAll()
    // Across etcd replicas: registered on A, seen by watchers on B (through etcd's watch).
    const replicaEtcd = await startEtcd(SERVER_CORE)
    const [replicaA, replicaB] = [
      await startRegistry(SERVER_CORE, etcdEnv(replicaEtcd, '/bench-watch'), 'registry replica A'),
      await startRegistry(SERVER_CORE, etcdEnv(replicaEtcd, '/bench-watch'), 'registry replica B'),
    ]
    log(`running: propagation of ${WATCH_CHANGES} changes written on etcd replica A to ${WATCHERS} watchers on replica B`)
    propagation.push(await measurePropagation(replicaB.baseUrl, LOAD_CORE, 'replicas', WATCHERS, WATCH_CHANGES, replicaA.baseUrl))
    await stopAll()
    replicaEtcd.remove()
  }

  // The gateway against nginx and against the product instance hit directly.
  let gatewayRows: GatewayRow[] = []
  if (parts.has('gateway')) {
    log()
    const beforeCli = process.env.BENCH_GATEWAY_BEFORE?.trim() || undefined
    if (beforeCli && !existsSync(beforeCli)) throw new Error(`BENCH_GATEWAY_BEFORE must be the path of another checkout's src/cli.ts, got ${JSON.stringify(beforeCli)}`)
    gatewayRows = await measureGateway(
      SERVER_CORE,
      LOAD_CORE,
      { ...run, connections: CONNECTIONS, ...(profileDir ? { profileDir } : {}), ...(beforeCli ? { beforeCli } : {}) },
      log,
    )
  }

  // Memory: each role after start-up, the whole npm start, the registry with 100,000 instances.
  let footprint: FootprintResult | undefined
  if (parts.has('footprint')) {
    log()
    const beforeCli = process.env.BENCH_FOOTPRINT_BEFORE?.trim() || undefined
    if (beforeCli && !existsSync(beforeCli)) throw new Error(`BENCH_FOOTPRINT_BEFORE must be the path of another checkout's src/cli.ts, got ${JSON.stringify(beforeCli)}`)
    footprint = await measureFootprint({ serverCore: SERVER_CORE, loadCore: LOAD_CORE, log, ...(beforeCli ? { beforeCli } : {}) })
  }

  const measurements = withRatios(medians(runs))
  const verdicts = aims(measurements)
  if (parts.has('registry')) {
    log()
    log(renderTable(measurements))
    log()
    log('aims (the registry against the bare server; informational, they do not change the exit code):')
    log(renderAims(verdicts))
    log()
    log(renderComparison('the etcd store against the memory store (same run, same core; etcd on the server core too):', measurements, 'registry (etcd)', 'registry'))
    log(renderComparison("the registry with --max-semi-space-size=4 (as run) against V8's defaults (same run, same core):", measurements, 'registry', 'registry (V8 defaults)'))
    log()
    log('server CPU near 100%: the server was the bottleneck. loadgen CPU near 100%: the load generator may have been.')
  }
  if (parts.has('watch')) {
    log()
    log(renderPropagation(propagation))
  }
  if (parts.has('gateway')) {
    log()
    log(renderGateway(gatewayRows))
  }
  if (footprint) {
    log()
    log(renderFootprint(footprint))
  }

  mkdirSync(RESULTS_DIR, { recursive: true })
  const report = {
    date,
    machine: host,
    setup: {
      serverCore: SERVER_CORE,
      loadCore: LOAD_CORE,
      connections: CONNECTIONS,
      ...run,
      parts: [...parts],
      registryEnv: REGISTRY_ENV,
      loadAverage,
      ...(profileDir ? { profileDir } : {}),
    },
    results: measurements,
    aims: verdicts,
    runs,
    propagation,
    gateway: gatewayRows,
    ...(footprint ? { footprint, footprintAims: footprintAims(footprint) } : {}),
  }
  const text = `${JSON.stringify(report, null, 2)}\n`
  // latest.json is the full benchmark: a partial run (BENCH_ONLY) is kept beside it, named for its parts.
  const suffix = parts.size < PARTS.length ? `-${[...parts].join('-')}` : ''
  const history = new URL(`${String(date).replace(/[:.]/g, '-')}${suffix}.json`, RESULTS_DIR)
  if (suffix === '') {
    const file = new URL('latest.json', RESULTS_DIR)
    writeFileSync(file, text)
    log(`written:  ${file.pathname}`)
  }
  // Every run is kept, so that figures can be compared across changes.
  writeFileSync(history, text)
  log(`written:  ${history.pathname}`)
}

installCleanup((message) => process.stderr.write(`${message}\n`))
try {
  await main()
} catch (error) {
  // After Ctrl-C the children's exits surface here too: the signal handler has already said why.
  if (!interrupted()) process.stderr.write(`\nbenchmark aborted: ${error instanceof Error ? error.message : String(error)}\n`)
  await stopAll()
  process.exitCode = 1
}
