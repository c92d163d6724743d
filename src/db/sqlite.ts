import { DatabaseSync } from 'node:sqlite'
import { sqliteErrcode } from './errors.ts'
import { CompiledQuery, SqliteAdapter, SqliteDialect, SqliteDriver, type DatabaseConnection, type DialectAdapter, type Driver, type SqliteDatabase } from 'kysely'

/** node:sqlite's DatabaseSync in the shape Kysely's SQLite dialect expects (better-sqlite3's). */
function adapt(db: DatabaseSync): SqliteDatabase {
  return {
    close: () => db.close(),
    prepare(sql: string) {
      const statement = db.prepare(sql)
      type Params = Array<null | number | bigint | string | NodeJS.ArrayBufferView>
      return {
        reader: statement.columns().length > 0,
        all: (parameters: ReadonlyArray<unknown>) => statement.all(...(parameters as Params)),
        run: (parameters: ReadonlyArray<unknown>) => statement.run(...(parameters as Params)),
        iterate: (parameters: ReadonlyArray<unknown>) => statement.iterate(...(parameters as Params)),
      }
    },
  }
}

/**
 * Write transactions take SQLite's write lock when they begin (BEGIN IMMEDIATE), so two processes
 * sharing a file queue behind the busy timeout instead of deadlocking on a lock upgrade.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'))
  }
}

/**
 * SQLite does run DDL inside transactions; saying so makes Kysely's migrator wrap each run in one
 * (an immediate one, see above), which is what serialises replicas migrating at the same time.
 */
class TransactionalDdlSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true
  }
}

class NodeSqliteDialect extends SqliteDialect {
  readonly #database: SqliteDatabase
  constructor(database: SqliteDatabase) {
    super({ database })
    this.#database = database
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver({ database: this.#database })
  }
  override createAdapter(): DialectAdapter {
    return new TransactionalDdlSqliteAdapter()
  }
}

const BUSY_TIMEOUT_MS = 5000
const SQLITE_BUSY = 5

/**
 * Switching a new file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once,
 * without its busy timeout, when another replica holds or races for the lock. Retry the switch
 * for as long as the busy timeout would have waited.
 */
function enableWal(db: DatabaseSync): void {
  const deadline = Date.now() + BUSY_TIMEOUT_MS
  for (;;) {
    try {
      db.exec('PRAGMA journal_mode = WAL')
      return
    } catch (error) {
      const busy = (sqliteErrcode(error) ?? 0) & 0xff
      if (busy !== SQLITE_BUSY || Date.now() > deadline) throw error
      // Start-up only, and node:sqlite is synchronous anyway: a short blocking pause is fine.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
    }
  }
}

export function sqliteDialect(path: string): SqliteDialect {
  const db = new DatabaseSync(path, { timeout: BUSY_TIMEOUT_MS })
  // WAL lets readers run beside one writer, which is what replicas sharing a file need.
  enableWal(db)
  db.exec('PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;')
  return new NodeSqliteDialect(adapt(db))
}
