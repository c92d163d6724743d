import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { clockTicksPerSecond, runLoad, type LoadResult } from './load.ts'
import { freePort, spawnPinned, type Pinned } from './processes.ts'
import { BENCH_TOKEN, startRegistry } from './servers.ts'

// The gateway against nginx: GET /products/{id} from one product instance, hit directly, through
// nginx (one worker, keep-alive to the upstream) and through the gateway. Every server shares one
// core, the load generator has the other.

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
export const NGINX = '/usr/sbin/nginx'

export interface GatewayRow extends LoadResult {
  target: 'product directly' | 'nginx' | 'gateway'
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

export async function measureGateway(
  serverCore: number,
  loadCore: number,
  run: { durationSeconds: number; warmupSeconds: number; connections: number },
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
    const gateway = spawnPinned('gateway', serverCore, [CLI, 'gateway'], quietEnv({ PORT: String(gatewayPort), REGISTRY_URL: registry.baseUrl, HEARTBEAT_INTERVAL_SECONDS: '2' }))
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
      // taskset execs nginx: the master's pid is taskset's; the worker does the work, pinned alike.
      targets.push(['nginx', nginxUrl, nginx.pid!])
    } else {
      log(`nginx is not installed (${NGINX}); apt-get install -y nginx to compare with it`)
    }
    targets.push(['gateway', gatewayUrl, gateway.child.pid!])

    const rows: GatewayRow[] = []
    const clockTicks = clockTicksPerSecond()
    for (const [target, base, pid] of targets) {
      log(`running: GET /products/{id} via ${target} (${run.warmupSeconds + run.durationSeconds} s)`)
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
    return rows
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
