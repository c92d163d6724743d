// Loaded into every test file's process (`npm test` passes it with --import): once the file's
// tests and hooks are done, the process must exit by itself. One that stays (a timer, a socket, a
// retry loop left running: a leak a user's process would have too) is stopped after a grace
// period with the resources still holding it, so the file fails with a reason instead of holding
// the whole run until CI's time runs out.
import { after } from 'node:test'

const GRACE_MS = Number(process.env.TEST_EXIT_GRACE_MS ?? 60_000)

after(() => {
  setTimeout(() => {
    process.stderr.write(
      `\n${process.argv[1] ?? 'this test file'} was still running ${GRACE_MS} ms after its tests ended, held by: ${process.getActiveResourcesInfo().join(', ')}\n`,
    )
    process.exit(1)
  }, GRACE_MS).unref()
})
