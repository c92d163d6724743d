// Runs one service's migrations in its own process and prints what it applied, as JSON.
// Usage: migrate-child.ts <product|order> <dataDir> <databaseUrl or ''> <start at, epoch ms>
// Every child waits for the same start time, so that the migrations really overlap.
import { migrate, openDatabase } from '../../src/db/database.ts'
import { orderMigrations } from '../../src/services/order/repository.ts'
import { productMigrations } from '../../src/services/product/repository.ts'

const [service = 'product', dataDir = '.', databaseUrl = '', startAt = '0'] = process.argv.slice(2)
// Both services' tables live in one database named "shop" here, as they may in production.
const database = openDatabase({ name: 'shop', dataDir, databaseUrl: databaseUrl || undefined })
await new Promise((resolve) => setTimeout(resolve, Math.max(0, Number(startAt) - Date.now())))
try {
  const applied = await migrate(database, service, service === 'order' ? orderMigrations : productMigrations)
  process.stdout.write(JSON.stringify(applied))
} finally {
  await database.close()
}
