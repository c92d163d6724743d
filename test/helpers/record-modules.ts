// Loaded with `node --import ./test/helpers/record-modules.ts`: records every module the process
// loads (ES modules and CommonJS ones alike, through module.registerHooks) and writes their
// URLs, one a line, to the file named by RECORD_MODULES_FILE when the process exits. Used by tests
// and the footprint benchmark to see which packages a role loads; never by the roles themselves.
import { writeFileSync } from 'node:fs'
import { registerHooks } from 'node:module'

const file = process.env.RECORD_MODULES_FILE
if (file) {
  const loaded = new Set<string>()
  registerHooks({
    load(url, context, nextLoad) {
      loaded.add(url)
      return nextLoad(url, context)
    },
  })
  process.once('exit', () => writeFileSync(file, `${[...loaded].join('\n')}\n`))
}
