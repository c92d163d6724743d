#!/usr/bin/env node
// Entry point: `microservices-advanced <registry|product|order|all>`; no role means `all`.
import { ConfigError, ROLES, type Role } from './config/index.ts'
import { runRole } from './roles.ts'

const USAGE = `usage: microservices-advanced <${ROLES.join('|')}>   (default: all)`

function parseRole(argv: readonly string[]): Role | undefined {
  const arg = argv[0] ?? 'all'
  return ROLES.find((role) => role === arg)
}

const args = process.argv.slice(2)
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(`${USAGE}\n`)
  process.exit(0)
}
const role = parseRole(args)
if (!role) {
  process.stderr.write(`unknown role ${JSON.stringify(args[0])}\n${USAGE}\n`)
  process.exit(2)
}

// Until the role has installed its graceful handler, a signal ends the process at once. (As PID 1
// in a container, node would otherwise ignore it, and start-up may wait a minute for a database.)
for (const [signal, code] of [
  ['SIGTERM', 143],
  ['SIGINT', 130],
] as const) {
  process.on(signal, () => {
    if (process.listenerCount(signal) === 1) process.exit(code)
  })
}

try {
  await runRole(role, process.env)
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`configuration error: ${error.message}\n`)
    process.exit(2)
  }
  process.stderr.write(`failed to start ${role}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
  process.exit(1)
}
