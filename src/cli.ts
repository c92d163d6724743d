#!/usr/bin/env node
// Entry point: `microservices-advanced <registry|product|order|gateway|all>`; no role means `all`.
import { ConfigError, DEFAULTS, ROLES, type Role } from './config/index.ts'
import { EXIT_PORT_IN_USE, PortInUseError } from './runtime/role.ts'

const USAGE = `usage: microservices-advanced [${ROLES.join('|')}]   (default: all; from the repository: npm start -- <role>)`

const { port, allPorts } = DEFAULTS
const HELP = `microservices-advanced: a service registry, an API gateway, and product and order services.

${USAGE}

roles:
  all        the whole system on this machine, as separate processes: the registry on ${allPorts.registry},
             product on ${allPorts.product.join(' and ')}, order on ${allPorts.order.join(', ')}, the gateway on ${allPorts.gateway}
  registry   the service registry (register, discover, heartbeat, watch; dashboard at /)
  product    the product service (/products)
  order      the order service (/orders); prices orders by calling product through the registry
  gateway    the one public entry point: routes /products* and /orders* to healthy instances

main variables (each is checked at start-up; a bad one stops the process, naming it):
  PORT, HOST                 where one role listens (defaults: registry ${port.registry}, product ${port.product},
                             order ${port.order}, gateway ${port.gateway}; HOST ${DEFAULTS.host})
  REGISTRY_PORT, PRODUCT_PORTS, ORDER_PORTS, GATEWAY_PORT, REGISTRY_DNS_PORT
                             the ports of \`all\` (PRODUCT_PORTS=8081,8082: one instance per port)
  REGISTRY_URL               the registry the services use (default ${DEFAULTS.registryUrl})
  DATA_DIR, DATABASE_URL     SQLite files under ${DEFAULTS.dataDir}, or PostgreSQL (postgres://...)
  REGISTRY_TOKEN             the registry's write token (unset: writes from this machine only)
  LOG_LEVEL, LOG_FORMAT      ${DEFAULTS.logLevel}; pretty lines on a terminal, JSON lines otherwise (NO_COLOR: no colour)

exit codes: 0 stopped, 1 failed, 2 bad configuration or usage, ${EXIT_PORT_IN_USE} a port is already in use

More in README.md: "Run it", "Configuration" (every variable), "Observability" (logs, metrics,
traces), "Deployment" (Docker Compose).
`

const args = process.argv.slice(2)
if (args.includes('--help') || args.includes('-h') || args[0] === 'help') {
  process.stdout.write(HELP)
  process.exit(0)
}
const role: Role | undefined = args.length === 0 ? 'all' : ROLES.find((r) => r === args[0])
if (!role || args.length > 1) {
  const problem = role ? `unexpected argument ${JSON.stringify(args[1])}` : `unknown role ${JSON.stringify(args[0])}`
  process.stderr.write(`${problem}\n${USAGE}\nmicroservices-advanced --help lists the roles and the main variables.\n`)
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
  // Loaded once the arguments are known: `--help` and a mistyped role answer at once.
  const { runRole } = await import('./roles.ts')
  await runRole(role, process.env)
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`configuration error: ${error.message}\n`)
    process.exit(2)
  }
  // Already logged, in one line that names the port and what to do.
  if (error instanceof PortInUseError) process.exit(EXIT_PORT_IN_USE)
  process.stderr.write(`failed to start ${role}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
  process.exit(1)
}
