import { setTimeout as sleep } from 'node:timers/promises'
import type { Tracer } from '@opentelemetry/api'
import type { Migration } from 'kysely/migration'
import { migrate, openDatabase, type Database } from '../db/database.ts'
import { isDatabaseUnavailable } from '../db/errors.ts'
import { type AppError, defineErrors, type ProblemKind } from '../http/errors.ts'
import { backoffDelay } from '../lib/backoff.ts'
import { describe } from '../lib/errors.ts'
import type { Logger } from '../lib/logger.ts'
import type { ShutdownStep } from './shutdown.ts'

/** Where a service keeps its data: a SQLite file under `dataDir`, or PostgreSQL at `databaseUrl`. */
export interface DatabaseOptions {
  dataDir: string
  databaseUrl: string | undefined
  /** PostgreSQL: how long a query may go unanswered before its connection is dropped (a 503). */
  databaseQueryTimeoutSeconds: number
}

const databaseError = defineErrors({
  DATABASE_UNAVAILABLE: { status: 503, title: 'Database unavailable' },
})

/** A database that cannot serve right now is a 503 the caller may retry, not a 500. */
export function classifyDatabaseError(error: Error): AppError | undefined {
  return isDatabaseUnavailable(error) ? databaseError('DATABASE_UNAVAILABLE', 'The database cannot be reached; try again shortly') : undefined
}

/**
 * Connects and migrates, retrying with backoff while the database is unreachable (in Compose it
 * may start after us). Gives up after `maxWaitMs` so that a wrong URL does not hang forever.
 */
async function connectWithRetry<T>(database: Database<T>, logger: Logger, migrateNow: () => Promise<string[]>, maxWaitMs = 60_000): Promise<void> {
  const started = Date.now()
  for (let attempt = 0; ; attempt++) {
    try {
      await database.ping()
      const applied = await migrateNow()
      logger.info({ event: 'database_ready', dialect: database.dialect, location: database.location, migrations_applied: applied }, 'database ready')
      return
    } catch (error) {
      const message = describe(error)
      if (Date.now() - started > maxWaitMs) {
        throw new Error(`database ${database.location} not usable after ${Math.round(maxWaitMs / 1000)} s: ${message}`, { cause: error })
      }
      const delay = backoffDelay(attempt, { initialMs: 250, maxMs: 5000 })
      logger.warn({ event: 'database_unavailable', location: database.location, attempt: attempt + 1, retry_in_ms: delay, err_message: message }, 'database not ready; retrying')
      await sleep(delay)
    }
  }
}

/**
 * A service's own database, ready: opened (SQLite file `<name>.db` or PostgreSQL), reached and
 * migrated (with retries), plus the readiness check and the closer the service platform wants.
 */
export async function serviceDatabase<T>(
  name: string,
  migrations: Record<string, Migration>,
  options: DatabaseOptions & { logger: Logger; tracer: Tracer | undefined },
): Promise<{
  database: Database<T>
  checks: Record<string, () => Promise<true>>
  classifyError: (error: Error) => AppError | undefined
  problems: readonly ProblemKind[]
  closers: ShutdownStep[]
}> {
  const database = openDatabase<T>({
    name,
    dataDir: options.dataDir,
    databaseUrl: options.databaseUrl,
    queryTimeoutMs: options.databaseQueryTimeoutSeconds * 1000,
    tracer: options.tracer,
    onConnectionLost: (error) =>
      options.logger.warn({ event: 'database_connection_lost', err_message: error.message }, 'a database connection broke; the pool will open a new one'),
  })
  await connectWithRetry(database, options.logger, () => migrate(database, name, migrations))
  return {
    database,
    checks: {
      database: async () => {
        await database.ping()
        return true
      },
    },
    classifyError: classifyDatabaseError,
    problems: [databaseError.kind('DATABASE_UNAVAILABLE')],
    closers: [{ name: 'close database', run: () => database.close() }],
  }
}
