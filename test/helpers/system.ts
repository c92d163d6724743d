// Helpers shared by the multi-process integration tests: temp dirs, free ports, discovery,
// starting several roles with every started process tracked for `after`, pids and open files.
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs'
import type { Server as HttpServer } from 'node:http'
import { type AddressInfo, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registration } from '../../src/discovery/registration.ts'
import { RegistryClient } from '../../src/discovery/registry-client.ts'
import { http } from './http.ts'
import { silentLogger } from './logger.ts'
import { startRole, type RunningProcess, type StartOptions } from './process.ts'

export interface TempDir {
  path: string
  remove: () => void
}

/** A fresh directory under the OS temp dir; `remove` deletes it and everything in it. */
export function tempDir(prefix: string): TempDir {
  const path = mkdtempSync(join(tmpdir(), `msa-${prefix}-`))
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) }
}

/**
 * `count` distinct ports that were free a moment ago: each is bound on 127.0.0.1 port 0 (all at
 * the same time, so they differ), read, then released.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = []
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer()
      servers.push(server)
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(0, '127.0.0.1', () => resolve())
      })
    }
    return servers.map((server) => {
      const address = server.address()
      if (typeof address !== 'object' || address === null) throw new Error('no port')
      return address.port
    })
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))))
  }
}

export interface DiscoveredInstance {
  id: string
  service_name: string
  url: string
  status: string
  registered_at: string
  last_heartbeat: string
}

/** The registry's live instances of a service (throws on a non-200 answer). */
export async function discover(registryUrl: string, service: string): Promise<DiscoveredInstance[]> {
  const response = await http<{ instances: DiscoveredInstance[] }>('GET', `${registryUrl}/discover/${service}`)
  if (response.status !== 200) throw new Error(`GET /discover/${service} answered ${response.status}`)
  return response.body.instances
}

/** True while a process with this pid exists (a zombie counts as existing). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw error
  }
}

/**
 * Starts several roles at once. Every process that did start is added to `started` (for the
 * file's `after` to stop), even when another one failed; then a failure is thrown.
 */
export async function startRoles(started: RunningProcess[], ...specs: Array<[role: string, options?: StartOptions]>): Promise<RunningProcess[]> {
  const results = await Promise.allSettled(specs.map(([role, options]) => startRole(role, options)))
  const out: RunningProcess[] = []
  for (const result of results) {
    if (result.status === 'fulfilled') {
      started.push(result.value)
      out.push(result.value)
    }
  }
  const failed = results.find((result) => result.status === 'rejected')
  if (failed) throw failed.reason
  return out
}

/** Stops every process (SIGKILL by default: for `after` hooks) and waits for the exits. */
export async function stopAll(processes: RunningProcess[], signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  await Promise.all(processes.map((p) => p.stop(signal)))
}

/** Starts one role and adds it to `started` (see startRoles). */
export async function startTracked(started: RunningProcess[], role: string, options?: StartOptions): Promise<RunningProcess> {
  const [proc] = await startRoles(started, [role, options])
  return proc!
}

/** The paths a process has open (Linux /proc); empty when it is gone or cannot be read. */
export function openFiles(pid: number): string[] {
  try {
    return readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
      try {
        return [readlinkSync(`/proc/${pid}/fd/${fd}`)]
      } catch {
        return []
      }
    })
  } catch {
    return []
  }
}

/** A test's own HTTP server, registered with the registry under a service name. */
export interface RegisteredServer {
  url: string
  /** Deregisters, then closes the server and its connections. */
  close: () => Promise<void>
}

/**
 * Listens on a free loopback port and keeps the server registered as `serviceName` (heartbeats
 * every 500 ms), as a service outside this repository would with the discovery library.
 */
export async function registeredServer(registryUrl: string, serviceName: string, server: HttpServer): Promise<RegisteredServer> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const client = new RegistryClient({ urls: [registryUrl] })
  const registration = new Registration({ client, serviceName, url, heartbeatIntervalMs: 500, logger: silentLogger() })
  registration.start()
  return {
    url,
    close: async () => {
      await registration.stop()
      await client.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
