// Container HEALTHCHECK: GET /health/ready on this container's own service, without curl.
// Exit 0 when it answers 200, 1 otherwise (not ready, draining, refused or too slow).
import { readFileSync } from 'node:fs'

// The image serves every role; the role is PID 1's last argument (`node dist/cli.js <role>`).
const DEFAULT_PORTS = { registry: 8080, product: 8081, order: 8083, gateway: 8000 }

function role() {
  try {
    const args = readFileSync('/proc/1/cmdline', 'utf8').split('\0').filter(Boolean)
    return args.at(-1)
  } catch {
    return undefined
  }
}

const port = process.env.PORT?.trim() || DEFAULT_PORTS[role()] || 8080
const host = process.env.HOST?.trim()
const target = !host || host === '0.0.0.0' || host === '::' || host === '[::]' ? '127.0.0.1' : host
const url = `http://${target.includes(':') && !target.startsWith('[') ? `[${target}]` : target}:${port}/health/ready`

try {
  const response = await fetch(url, { signal: AbortSignal.timeout(2500) })
  if (!response.ok) process.stderr.write(`${url}: ${response.status} ${await response.text()}\n`)
  process.exit(response.ok ? 0 : 1)
} catch (error) {
  process.stderr.write(`${url}: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
}
