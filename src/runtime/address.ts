import { networkInterfaces } from 'node:os'

const WILDCARDS = new Set(['0.0.0.0', '::', '[::]'])

/** The first non-internal IPv4 address of this host, e.g. a container's own address. */
export function firstExternalIPv4(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (address.family === 'IPv4' && !address.internal) return address.address
    }
  }
  return undefined
}

/**
 * The URL an instance advertises when SERVICE_URL is not set: its bind address when that is a
 * specific one; when it binds every address, the host's first non-loopback IPv4, so that each
 * Compose replica advertises its own reachable address.
 */
export function advertisedUrl(host: string, port: number): string {
  const name = WILDCARDS.has(host) ? (firstExternalIPv4() ?? '127.0.0.1') : host
  const hostPart = name.includes(':') && !name.startsWith('[') ? `[${name}]` : name
  return `http://${hostPart}:${port}`
}

/**
 * An address a person on this machine can open for a server bound to `host`: the loopback address
 * when it binds every address (0.0.0.0 is not one a browser can open), else the bind address.
 */
export function localUrl(host: string, port: number): string {
  const name = host === '0.0.0.0' ? '127.0.0.1' : host === '::' || host === '[::]' ? '::1' : host
  const hostPart = name.includes(':') && !name.startsWith('[') ? `[${name}]` : name
  return `http://${hostPart}:${port}`
}
