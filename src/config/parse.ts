// Environment parsing: every value is checked at start-up, and a bad one stops the process with a
// message that names the variable, the value and what was expected.

import { isIPv6 } from 'node:net'

export class ConfigError extends Error {
  readonly variable: string
  constructor(variable: string, value: string, expected: string) {
    super(`${variable}=${JSON.stringify(value)} is invalid: expected ${expected}`)
    this.name = 'ConfigError'
    this.variable = variable
  }
}

export type Env = Readonly<Record<string, string | undefined>>

function raw(env: Env, name: string): string | undefined {
  const value = env[name]
  return value === undefined || value.trim() === '' ? undefined : value.trim()
}

export function port(env: Env, name: string, fallback: number): number {
  const value = raw(env, name)
  if (value === undefined) return fallback
  const n = Number(value)
  if (!/^\d+$/.test(value) || n > 65535) throw new ConfigError(name, value, 'a TCP port, an integer from 0 to 65535')
  return n
}

export function ports(env: Env, name: string, fallback: number[]): number[] {
  const value = raw(env, name)
  if (value === undefined) return fallback
  const parts = value.split(',').map((p) => p.trim())
  const out = parts.map((p) => Number(p))
  if (parts.some((p) => !/^\d+$/.test(p)) || out.some((n) => n < 1 || n > 65535) || new Set(out).size !== out.length) {
    throw new ConfigError(name, value, 'a comma-separated list of distinct TCP ports from 1 to 65535')
  }
  return out
}

export function seconds(env: Env, name: string, fallback: number, bounds: { min: number; max: number }): number {
  const value = raw(env, name)
  if (value === undefined) return fallback
  const n = Number(value)
  if (!/^\d+(\.\d+)?$/.test(value) || n < bounds.min || n > bounds.max) {
    throw new ConfigError(name, value, `a number of seconds from ${bounds.min} to ${bounds.max} (fractions allowed, e.g. 0.5)`)
  }
  return n
}

export function integer(env: Env, name: string, fallback: number, bounds: { min: number; max: number }): number {
  const value = raw(env, name)
  if (value === undefined) return fallback
  const n = Number(value)
  if (!/^\d+$/.test(value) || n < bounds.min || n > bounds.max) {
    throw new ConfigError(name, value, `an integer from ${bounds.min} to ${bounds.max}`)
  }
  return n
}

export function oneOf<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const value = raw(env, name)
  if (value === undefined) return fallback
  const found = allowed.find((a) => a === value.toLowerCase())
  if (!found) throw new ConfigError(name, value, `one of ${allowed.join(', ')}`)
  return found
}

export function httpUrl(name: string, value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new ConfigError(name, value, 'an absolute http:// or https:// URL')
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password || url.search || url.hash) {
    throw new ConfigError(name, value, 'an absolute http:// or https:// URL without credentials, query or fragment')
  }
  return url.origin + url.pathname.replace(/\/+$/, '')
}

export function optionalHttpUrl(env: Env, name: string): string | undefined {
  const value = raw(env, name)
  return value === undefined ? undefined : httpUrl(name, value)
}

export function httpUrlList(env: Env, name: string, fallback: string): string[] {
  const value = raw(env, name) ?? fallback
  const parts = value
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')
  if (parts.length === 0) throw new ConfigError(name, value, 'one or more comma-separated http(s) URLs')
  return parts.map((p) => {
    try {
      return httpUrl(name, p)
    } catch {
      throw new ConfigError(name, value, 'one or more comma-separated absolute http(s) URLs')
    }
  })
}

export function host(env: Env, name: string, fallback: string): string {
  const value = raw(env, name)
  if (value === undefined) return fallback
  // An IPv4/IPv6 literal or a hostname; the OS gives the precise error if it cannot bind.
  if (!/^[A-Za-z0-9.:_-]+$/.test(value) || value.length > 253) {
    throw new ConfigError(name, value, 'a bind address such as 0.0.0.0, 127.0.0.1, :: or a hostname')
  }
  return value
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/

/**
 * A comma-separated list of hostnames or IP addresses (IPv6 with or without brackets), spelled as
 * `new URL(...).hostname` spells them: lower case, IPv6 in brackets. Unset: an empty list.
 */
export function hostnameList(env: Env, name: string): string[] {
  const value = raw(env, name)
  if (value === undefined) return []
  const parts = value
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')
  return parts.map((part) => {
    const bare = part.replace(/^\[(.*)\]$/, '$1')
    const ipv6 = isIPv6(bare)
    if (ipv6 || HOSTNAME.test(bare)) {
      try {
        return new URL(`http://${ipv6 ? `[${bare}]` : bare}/`).hostname
      } catch {
        // An invalid IPv4 address such as 300.1.1.1: refused below.
      }
    }
    throw new ConfigError(name, value, 'a comma-separated list of hostnames or IP addresses without scheme or port, e.g. health.internal,10.0.0.5')
  })
}

/**
 * `NAME`, or the contents of the file `NAME_FILE` (Docker and Kubernetes secrets), never both; a
 * file's trailing newline is not part of the value. `variable` is where the value came from.
 */
export function fromEnvOrFile(
  env: Env,
  name: string,
  readFile: (path: string) => string,
  holding: string,
): { value: string | undefined; variable: string; file: string | undefined } {
  const direct = raw(env, name)
  const file = raw(env, `${name}_FILE`)
  if (direct !== undefined && file !== undefined) throw new ConfigError(`${name}_FILE`, file, `either ${name} or ${name}_FILE, not both`)
  if (file === undefined) return { value: direct, variable: name, file }
  try {
    return { value: readFile(file).replace(/\r?\n$/, ''), variable: `${name}_FILE`, file }
  } catch (error) {
    throw new ConfigError(`${name}_FILE`, file, `a readable file holding ${holding} (${error instanceof Error ? error.message : String(error)})`)
  }
}

/** A PostgreSQL URL from `NAME` or the file `NAME_FILE`; it holds a password, so no error shows it. */
export function databaseUrl(env: Env, name: string, readFile: (path: string) => string): string | undefined {
  const { value, variable, file } = fromEnvOrFile(env, name, readFile, 'the connection URL')
  if (value === undefined) return undefined
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new ConfigError(variable, file ?? '<redacted>', `${file === undefined ? 'a' : 'a file holding a'} postgres:// or postgresql:// connection URL`)
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError(variable, file ?? `${url.protocol}//…`, `${file === undefined ? 'a' : 'a file holding a'} postgres:// or postgresql:// connection URL`)
  }
  return value
}

export function text(env: Env, name: string, fallback: string): string {
  return raw(env, name) ?? fallback
}

// Tokens are sent as `Authorization: Bearer <token>`: visible ASCII, and long enough not to be guessed.
const TOKEN = /^[\x21-\x7e]{16,4096}$/

/**
 * A secret from `NAME` or from the file `NAME_FILE` (Docker and Kubernetes secrets), never both.
 * A file's trailing newline is not part of the secret. The value never appears in an error.
 */
export function secret(env: Env, name: string, readFile: (path: string) => string): string | undefined {
  const { value, variable, file } = fromEnvOrFile(env, name, readFile, 'the token')
  if (value === undefined) return undefined
  if (!TOKEN.test(value)) {
    throw new ConfigError(variable, file ?? '<redacted>', 'a token of 16 to 4096 visible ASCII characters (e.g. openssl rand -hex 32)')
  }
  return value
}
