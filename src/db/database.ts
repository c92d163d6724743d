import { mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { context, SpanKind, SpanStatusCode, trace, type Tracer } from '@opentelemetry/api'
import { Kysely, PostgresDialect, sql, type LogEvent } from 'kysely'
import { Migrator, type Migration } from 'kysely/migration'
import type pgModule from 'pg'
import { sqliteDialect } from './sqlite.ts'

export type Dialect = 'sqlite' | 'postgres'

export interface DatabaseOptions {
  /** Used for the SQLite file name and the migration table names. */
  name: string
  dataDir: string
  databaseUrl: string | undefined
  /** Queries made while serving a traced request become spans of that trace. */
  tracer?: Tracer
  /** Told when a connection to PostgreSQL breaks (the pool replaces it); for logs. */
  onConnectionLost?: (error: Error) => void
  /**
   * PostgreSQL: a query unanswered this long fails (a 503), and its connection is dropped.
   * Unbounded, a server gone silent (a host lost, a failover that leaves connections half-open)
   * would hold each query, and the pool's connections, until TCP gives up (about 15 minutes with
   * Linux's defaults).
   */
  queryTimeoutMs?: number
}

export interface Database<T> {
  db: Kysely<T>
  dialect: Dialect
  /** Where the data lives, without credentials, for logs. */
  location: string
  ping: () => Promise<void>
  close: () => Promise<void>
}

let pgDriver: typeof pgModule | undefined

/**
 * The PostgreSQL driver, loaded by the first PostgreSQL database only: a service on SQLite (and
 * every process that never opens a database) does not carry it. CommonJS, so `require` loads it
 * synchronously and opening a database stays synchronous.
 */
function loadPg(): typeof pgModule {
  if (!pgDriver) {
    pgDriver = createRequire(import.meta.url)('pg') as typeof pgModule
    // PostgreSQL's int8 (bigint) arrives as a string by default; our amounts are safe integers.
    pgDriver.types.setTypeParser(pgDriver.types.builtins.INT8, (value: string) => Number(value))
  }
  return pgDriver
}

/**
 * Kysely reports each query once it is done; that is when we know its duration, so the span is
 * recorded after the fact, under whatever span is current (the request's).
 */
function querySpans(tracer: Tracer | undefined, system: 'postgresql' | 'sqlite') {
  if (!tracer) return undefined
  return (event: LogEvent) => {
    const parent = context.active()
    if (!trace.getSpan(parent)) return
    const end = Date.now()
    const text = event.query.sql
    const operation = /^\s*(\w+)/.exec(text)?.[1]?.toUpperCase() ?? 'QUERY'
    const span = tracer.startSpan(
      `${operation} ${system}`,
      { kind: SpanKind.CLIENT, startTime: end - event.queryDurationMillis, attributes: { 'db.system.name': system, 'db.operation.name': operation, 'db.query.text': text } },
      parent,
    )
    if (event.level === 'error') span.setStatus({ code: SpanStatusCode.ERROR })
    span.end(end)
  }
}

/**
 * pg answers a query that timed out (`query_timeout`) but keeps its connection waiting for that
 * query's answer, and every later query on it queues behind: the pool would hand the stuck
 * connection out again and again. So a timed-out query ends its connection (pg's `end()` destroys
 * the socket of a connection whose query is still out), and the pool drops it when it is released.
 */
function endOnReadTimeout(client: pgModule.PoolClient, timeoutMs: number, onEnded: (error: Error) => void): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown
  ;(client as { query: unknown }).query = (...args: unknown[]) => {
    const result = query(...args)
    if (result instanceof Promise) {
      result.catch((error: unknown) => {
        if (!(error instanceof Error) || error.message !== 'Query read timeout') return
        onEnded(new Error(`no answer from PostgreSQL to a query within ${timeoutMs} ms; connection dropped`))
        void client.end().catch(() => {})
      })
    }
    return result
  }
}

export function openDatabase<T>(options: DatabaseOptions): Database<T> {
  if (options.databaseUrl) {
    const pool = new (loadPg().Pool)({
      connectionString: options.databaseUrl,
      max: 10,
      connectionTimeoutMillis: 5000,
      ...(options.queryTimeoutMs === undefined ? {} : { query_timeout: options.queryTimeoutMs }),
    })
    // A connection that breaks must never crash the process. pg emits 'error' on the client: the
    // pool listens while the client is idle, nobody while a query holds it (that query fails with
    // the error, and the pool discards the client when it is released). So every client gets a
    // listener of its own for its whole life.
    // (The pool re-emits an idle client's error; the client's own listener has reported it.)
    pool.on('error', () => {})
    pool.on('connect', (client) => {
      client.on('error', (error: Error) => options.onConnectionLost?.(error))
      if (options.queryTimeoutMs !== undefined) endOnReadTimeout(client, options.queryTimeoutMs, (error) => options.onConnectionLost?.(error))
    })
    const db = new Kysely<T>({ dialect: new PostgresDialect({ pool }), log: querySpans(options.tracer, 'postgresql') })
    const url = new URL(options.databaseUrl)
    return {
      db,
      dialect: 'postgres',
      location: `postgres://${url.host}${url.pathname}`,
      ping: async () => void (await sql`select 1`.execute(db)),
      close: () => db.destroy(),
    }
  }
  mkdirSync(options.dataDir, { recursive: true })
  const path = join(options.dataDir, `${options.name}.db`)
  const db = new Kysely<T>({ dialect: sqliteDialect(path), log: querySpans(options.tracer, 'sqlite') })
  return {
    db,
    dialect: 'sqlite',
    location: path,
    ping: async () => void (await sql`select 1`.execute(db)),
    close: () => db.destroy(),
  }
}

/**
 * Applies the service's migrations. Safe when replicas start together: PostgreSQL serialises
 * them with an advisory lock, SQLite with its write lock (BEGIN IMMEDIATE).
 */
export async function migrate<T>(database: Database<T>, name: string, migrations: Record<string, Migration>): Promise<string[]> {
  const migrator = new Migrator({
    db: database.db as Kysely<unknown>,
    provider: { getMigrations: async () => migrations },
    migrationTableName: `${name}_migrations`,
    migrationLockTableName: `${name}_migrations_lock`,
  })
  const { error, results } = await migrator.migrateToLatest()
  if (error) throw error instanceof Error ? error : new Error(`migration failed: ${String(error)}`)
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
}
