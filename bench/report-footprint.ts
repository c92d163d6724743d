import type { FootprintResult, ModuleCount, ScaleRun } from './footprint.ts'
import { SCALE_SETUP, SETTLE_SECONDS } from './footprint.ts'

// The footprint part's tables (bench/footprint.ts) and its aims (issue 13).

/** The aims of issue 13, in MB of RSS. */
export const FOOTPRINT_AIMS = { roleIdleMb: 90, npmStartMb: 500, registryAtScaleMb: 250 } as const

export interface FootprintAim {
  aim: string
  actual: string
  met: boolean
}

const pad = (cells: string[][]) => {
  const widths = cells[0]!.map((_, k) => Math.max(...cells.map((row) => row[k]!.length)))
  return cells.map((row) => row.map((cell, k) => (k === 0 ? cell.padEnd(widths[k]!) : cell.padStart(widths[k]!))).join('  ')).join('\n')
}
const mb = (value: number) => (Number.isFinite(value) ? value.toFixed(1) : '-')
const ratio = (value: number, bare: number) => `${(value / bare).toFixed(2)}x`

/** Packages a role should not load at all, or only when a feature it does not use by default is on. */
const NOT_AT_START: Record<ModuleCount['role'], readonly string[]> = {
  registry: ['pg', 'kysely', 'undici', 'jose', 'cockatiel', 'etcd3', '@fastify/swagger-ui', '@fastify/static', 'pino-pretty', '@fastify/otel', '@opentelemetry/sdk-trace'],
  product: ['pg', 'jose', 'etcd3', '@fastify/rate-limit', 'dns-packet', '@fastify/swagger-ui', '@fastify/static', 'pino-pretty', '@fastify/otel', '@opentelemetry/sdk-trace'],
  order: ['pg', 'jose', 'etcd3', '@fastify/rate-limit', 'dns-packet', '@fastify/swagger-ui', '@fastify/static', 'pino-pretty', '@fastify/otel', '@opentelemetry/sdk-trace'],
  gateway: ['pg', 'kysely', 'etcd3', 'dns-packet', '@fastify/swagger-ui', '@fastify/static', 'pino-pretty', '@fastify/otel', '@opentelemetry/sdk-trace'],
}

export function footprintAims(result: FootprintResult): FootprintAim[] {
  const aims: FootprintAim[] = []
  for (const mode of result.modes.filter((m) => m.name !== 'before' && m.name !== 'built, V8 defaults')) {
    const rows = result.roles.filter((r) => r.mode === mode.name)
    const worst = rows.reduce((max, r) => (r.rssMb > max.rssMb ? r : max), rows[0]!)
    aims.push({
      aim: `each role idle <= ${FOOTPRINT_AIMS.roleIdleMb} MB (${mode.name})`,
      actual: `largest: ${worst.role} ${mb(worst.rssMb)} MB`,
      met: rows.every((r) => r.rssMb <= FOOTPRINT_AIMS.roleIdleMb),
    })
  }
  for (const run of result.npmStart.filter((r) => r.label !== 'before')) {
    aims.push({ aim: `npm start <= ${FOOTPRINT_AIMS.npmStartMb} MB (${run.label})`, actual: `${mb(run.totalRssMb)} MB`, met: run.totalRssMb <= FOOTPRINT_AIMS.npmStartMb })
  }
  for (const run of result.scale.filter((r) => r.label !== 'before')) {
    const sustained = sustainedHeartbeats(run)
    aims.push({
      aim: `registry with ${run.heartbeats.instances} instances <= ${FOOTPRINT_AIMS.registryAtScaleMb} MB, heartbeats sustained on one core`,
      actual: `${mb(run.maxRssMb)} MB at most; ${run.heartbeats.achievedPerSecond.toFixed(0)} of ${run.heartbeats.targetPerSecond.toFixed(0)} heartbeats/s, ${run.cpuFraction.toFixed(2)} of a core`,
      met: run.maxRssMb <= FOOTPRINT_AIMS.registryAtScaleMb && sustained,
    })
  }
  return aims
}

/** Every heartbeat due in the window answered (within 1%), none failed, the core not saturated. */
function sustainedHeartbeats(run: ScaleRun): boolean {
  const h = run.heartbeats
  return h.achievedPerSecond >= 0.99 * h.targetPerSecond && h.failed === 0 && run.cpuFraction < 0.95
}

export function renderFootprint(result: FootprintResult): string {
  const { bare } = result
  const out: string[] = []
  out.push(`memory after start-up (RSS, MB, read ${SETTLE_SECONDS} s after ready; in brackets: against the bare server, ${mb(bare.rssMb)} MB)`)
  const modes = result.modes.map((m) => m.name)
  const table = [['role', ...modes]]
  table.push(['bare node:http', ...modes.map(() => `${mb(bare.rssMb)}`)])
  for (const role of ['registry', 'product', 'order', 'gateway'] as const) {
    table.push([
      role,
      ...modes.map((mode) => {
        const row = result.roles.find((r) => r.role === role && r.mode === mode)
        return row ? `${mb(row.rssMb)} (${ratio(row.rssMb, bare.rssMb)})` : '-'
      }),
    ])
  }
  out.push(pad(table))
  for (const mode of result.modes) out.push(`  ${mode.name}: ${mode.how}`)

  out.push('')
  out.push('modules each role loads (from the sources; packages by modules loaded):')
  for (const count of result.modules) {
    const top = count.packages
      .slice(0, 8)
      .map(([name, n]) => `${name} ${n}`)
      .join(', ')
    const loaded = new Set(count.packages.map(([name]) => name))
    const unexpected = NOT_AT_START[count.role].filter((name) => loaded.has(name))
    out.push(`  ${count.role}: ${count.modules} modules; ${top}`)
    out.push(`    not loaded at start: ${NOT_AT_START[count.role].filter((name) => !loaded.has(name)).join(', ')}${unexpected.length ? `; LOADED: ${unexpected.join(', ')}` : ''}`)
  }

  out.push('')
  out.push("npm start (the supervisor and its five children; npm's own process is not counted): RSS MB (PSS MB, shared pages divided)")
  const names = [...new Set(result.npmStart.flatMap((run) => run.processes.map((p) => p.name)))]
  const starts = [['process', ...result.npmStart.map((run) => run.label)]]
  for (const name of names) {
    starts.push([
      name,
      ...result.npmStart.map((run) => {
        const found = run.processes.filter((p) => p.name === name)
        return found.length ? found.map((p) => `${mb(p.rssMb)} (${mb(p.pssMb)})`).join(', ') : '-'
      }),
    ])
  }
  starts.push(['total', ...result.npmStart.map((run) => `${mb(run.totalRssMb)} (${mb(run.totalPssMb)})`)])
  starts.push(['against the bare server', ...result.npmStart.map((run) => ratio(run.totalRssMb, bare.rssMb))])
  out.push(pad(starts))

  out.push('')
  const { services, perService, intervalSeconds, durationSeconds, warmupSeconds } = SCALE_SETUP
  out.push(
    `the registry with ${services * perService} instances (${services} services x ${perService}), each heartbeating every ${intervalSeconds} s ` +
      `(registry pinned to one core, load from another over keep-alive connections; ${warmupSeconds} s warm-up, then ${durationSeconds} s measured):`,
  )
  const scale = [
    [
      'registry',
      'idle',
      'registered',
      `after ${durationSeconds} s`,
      'max',
      'vs bare',
      'register',
      'heartbeats/s',
      'of target',
      '404',
      'failed',
      'p99',
      'registry CPU',
      'others on core',
      'load CPU',
    ],
  ]
  for (const run of result.scale) {
    const h = run.heartbeats
    scale.push([
      run.label,
      mb(run.idle.rssMb),
      mb(run.afterRegistering.rssMb),
      mb(run.afterHeartbeats.rssMb),
      mb(run.maxRssMb),
      ratio(run.maxRssMb, bare.rssMb),
      `${h.registerSeconds.toFixed(1)} s`,
      h.achievedPerSecond.toFixed(0),
      `${((h.achievedPerSecond / h.targetPerSecond) * 100).toFixed(1)}%`,
      String(h.unknown),
      String(h.failed),
      `${h.p99Ms.toFixed(1)} ms`,
      `${run.cpuFraction.toFixed(2)} core`,
      `${Math.round(run.othersOnCoreFraction * 100)}%`,
      `${h.loadCpuFraction.toFixed(2)} core`,
    ])
  }
  out.push(pad(scale))
  for (const note of result.notes) out.push(`note: ${note}`)

  out.push('')
  out.push('aims (informational, they do not change the exit code):')
  for (const aim of footprintAims(result)) out.push(`  ${aim.aim}: ${aim.actual}: ${aim.met ? 'met' : 'NOT met'}`)
  return out.join('\n')
}
