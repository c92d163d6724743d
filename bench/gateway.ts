import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { clockTicksPerSecond, runLoad, type LoadResult } from './load.ts'
import { freePort, spawnPinned, type Pinned } from './processes.ts'
import { BENCH_TOKEN, startRegistry } from './servers.ts'

// The gateway against nginx: GET /products/{id} from one product instance, hit directly, through
// nginx (one worker, keep-alive to the upstream) and through the gateway. Every server shares one
// core, the load generator has the other. With several rounds the three targets take turns, round
// after round, and each figure is the median of its rounds (outside load then hurts all alike).

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
export const NGINX = '/usr/sbin/nginx'

export interface GatewayRow extends LoadResult {
  target: 'product directly' | 'nginx' | 'gateway' | 'gateway (before)'
}

const quietEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('OTEL_'))),
  HOST: '127.0.0.1',
  LOG_LEVEL: 'warn',
  LOG_FORMAT: 'json',
  // The registry runs with tokens (REGISTRY_ENV): the services send the admin's.
  REGISTRY_TOKEN: BENCH_TOKEN,
  ...extra,
})

async function ready(url: string, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const status = await fetch(url, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.status,
      () => 0,
    )
    if (status === 200) return
    if (Date.now() > deadline) throw new Error(`${what} did not answer 200 at ${url} within ${timeoutMs} ms (last ${status})`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function nginxConfig(dir: string, port: number, upstreamPort: number): string {
  for (const sub of ['logs', 'temp']) mkdirSync(join(dir, sub), { recursive: true })
  return `worker_processes 1;
daemon off;
error_log ${dir}/logs/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 2048; }
http {
  access_log off;
  client_body_temp_path ${dir}/temp/body;
  proxy_temp_path ${dir}/temp/proxy;
  fastcgi_temp_path ${dir}/temp/fastcgi;
  uwsgi_temp_path ${dir}/temp/uwsgi;
  scgi_temp_path ${dir}/temp/scgi;
  upstream product { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://product;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
    }
  }
}
`
}

/** The pid of nginx's one worker (the master's only child), which does the proxying; read once nginx answers. */
function nginxWorker(masterPid: number): number {
  try {
    const children = readFileSync(`/proc/${masterPid}/task/${masterPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
    if (children.length === 1) return children[0]!
  } catch {
    // Not Linux, or no such file: fall back to the master, whose own time is near zero.
  }
  return masterPid
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** One row per target: each figure the median of its rounds (failures, which stop the run, summed). */
function mediansOf(rows: readonly GatewayRow[]): GatewayRow[] {
  const targets = [...new Set(rows.map((row) => row.target))]
  return targets.map((target) => {
    const group = rows.filter((row) => row.target === target)
    const figure = (pick: (row: GatewayRow) => number) => median(group.map(pick))
    return {
      target,
      requestsPerSecond: figure((r) => r.requestsPerSecond),
      requests: figure((r) => r.requests),
      p50Ms: figure((r) => r.p50Ms),
      p99Ms: figure((r) => r.p99Ms),
      maxMs: figure((r) => r.maxMs),
      errors: group.reduce((sum, r) => sum + r.errors, 0),
      timeouts: group.reduce((sum, r) => sum + r.timeouts, 0),
      non2xx: group.reduce((sum, r) => sum + r.non2xx, 0),
      serverCpuPercent: figure((r) => r.serverCpuPercent),
      serverCpuMicrosPerRequest: figure((r) => r.serverCpuMicrosPerRequest),
      otherLoadOnServerCorePercent: figure((r) => r.otherLoadOnServerCorePercent),
      loadCpuPercent: figure((r) => r.loadCpuPercent),
    }
  })
}

export async function measureGateway(
  serverCore: number,
  loadCore: number,
  run: {
    durationSeconds: number
    warmupSeconds: number
    connections: number
    rounds: number
    profileDir?: string
    /** Another checkout's src/cli.ts: its gateway is measured too, in the same rounds, as "gateway (before)". */
    beforeCli?: string
  },
  log: (line: string) => void,
): Promise<GatewayRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'msa-bench-gateway-'))
  const started: Pinned[] = []
  let nginx: ChildProcess | undefined
  try {
    const registry = await startRegistry(serverCore)
    started.push(registry.process)
    const productPort = await freePort()
    const product = spawnPinned(
      'product',
      serverCore,
      [CLI, 'product'],
      quietEnv({ PORT: String(productPort), REGISTRY_URL: registry.baseUrl, DATA_DIR: join(dir, 'data'), HEARTBEAT_INTERVAL_SECONDS: '2' }),
    )
    started.push(product)
    const productUrl = `http://127.0.0.1:${productPort}`
    await ready(`${productUrl}/health/ready`, 'the product instance')
    const created = await fetch(`${productUrl}/products`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Benchmarked', price: 9.99 }),
    })
    const { id } = (await created.json()) as { id: string }
    const path = `/products/${id}`

    const gatewayPort = await freePort()
    // Profiled (BENCH_PROFILE_DIR): the profile is written when the gateway exits, at the end.
    const profile = run.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${run.profileDir}`] : []
    const gateway = spawnPinned(
      'gateway',
      serverCore,
      [...profile, CLI, 'gateway'],
      quietEnv({ PORT: String(gatewayPort), REGISTRY_URL: registry.baseUrl, HEARTBEAT_INTERVAL_SECONDS: '2' }),
    )
    started.push(gateway)
    const gatewayUrl = `http://127.0.0.1:${gatewayPort}`
    await ready(`${gatewayUrl}${path}`, 'the gateway')

    const targets: Array<[GatewayRow['target'], string, number]> = [['product directly', productUrl, product.child.pid!]]
    if (existsSync(NGINX)) {
      const nginxPort = await freePort()
      const config = join(dir, 'nginx.conf')
      writeFileSync(config, nginxConfig(dir, nginxPort, productPort))
      nginx = spawn('taskset', ['-c', String(serverCore), NGINX, '-p', dir, '-c', config], { stdio: 'ignore' })
      const nginxUrl = `http://127.0.0.1:${nginxPort}`
      await ready(`${nginxUrl}${path}`, 'nginx')
      // taskset execs nginx: the master's pid is taskset's; its worker does the work, pinned alike.
      targets.push(['nginx', nginxUrl, nginxWorker(nginx.pid!)])
    } else {
      log(`nginx is not installed (${NGINX}); apt-get install -y nginx to compare with it`)
    }
    targets.push(['gateway', gatewayUrl, gateway.child.pid!])
    if (run.beforeCli) {
      const beforePort = await freePort()
      const before = spawnPinned(
        'gateway (before)',
        serverCore,
        [run.beforeCli, 'gateway'],
        quietEnv({ PORT: String(beforePort), REGISTRY_URL: registry.baseUrl, HEARTBEAT_INTERVAL_SECONDS: '2' }),
      )
      started.push(before)
      const beforeUrl = `http://127.0.0.1:${beforePort}`
      await ready(`${beforeUrl}${path}`, 'the gateway (before)')
      targets.push(['gateway (before)', beforeUrl, before.child.pid!])
    }

    const rows: GatewayRow[] = []
    const clockTicks = clockTicksPerSecond()
    for (let round = 1; round <= run.rounds; round += 1) {
      for (const [target, base, pid] of targets) {
        log(`running: ${run.rounds > 1 ? `round ${round}, ` : ''}GET /products/{id} via ${target} (${run.warmupSeconds + run.durationSeconds} s)`)
        const result = await runLoad(`GET /products/{id} via ${target}`, loadCore, {
          url: `${base}${path}`,
          method: 'GET',
          headers: {},
          connections: run.connections,
          warmupSeconds: run.warmupSeconds,
          durationSeconds: run.durationSeconds,
          serverPid: pid,
          serverCore,
          clockTicksPerSecond: clockTicks,
        })
        rows.push({ ...result, target })
      }
    }
    return mediansOf(rows)
  } finally {
    nginx?.kill('SIGQUIT')
    await Promise.all(
      started.map(async (p) => {
        p.child.kill('SIGTERM')
        await Promise.race([p.exited, new Promise((resolve) => setTimeout(resolve, 5000))])
        p.child.kill('SIGKILL')
      }),
    )
    rmSync(dir, { recursive: true, force: true })
  }
}
