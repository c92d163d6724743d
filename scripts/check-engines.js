// `npm install`'s postinstall. npm checks every package's `engines` against the Node that runs npm
// itself: on a machine whose own Node is older than 24, that is about 130 lines of EBADENGINE
// warnings about a Node the project never runs on (its scripts run on node@24, a devDependency).
// The project's .npmrc keeps npm's log to errors, and this script makes the check that matters
// instead: every package in package-lock.json against the Node the project runs on (this one:
// npm puts node_modules/.bin, and so node@24, first on the PATH of scripts). It prints one line,
// or one line per package that does not support that Node, and never fails the install.
// `npm install --loglevel=warn` shows npm's own warnings again. Argument: another lockfile (tests).
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

function check() {
  let satisfies
  try {
    satisfies = require('semver/functions/satisfies')
  } catch {
    return // not installed (yet): nothing to check with
  }
  const lock = JSON.parse(readFileSync(process.argv[2] ?? new URL('../package-lock.json', import.meta.url), 'utf8'))
  const node = process.versions.node
  const unsupported = []
  let checked = 0
  for (const [path, entry] of Object.entries(lock.packages ?? {})) {
    const range = entry.engines?.node
    // The root is this project; optional packages npm skips by itself when they do not fit.
    if (path === '' || entry.optional || typeof range !== 'string') continue
    checked++
    if (!satisfies(node, range, { includePrerelease: true })) unsupported.push(`${path.replace(/^.*node_modules\//, '')} wants Node ${range}`)
  }
  if (Number(node.split('.')[0]) < 24) {
    console.log(`check-engines: this is Node ${node}, not the project's Node 24: run the project through npm (npm start, npm test), which puts node@24 first`)
  }
  if (unsupported.length === 0) {
    console.log(`check-engines: the ${checked} packages that name a Node version all support Node ${node}, the Node the project runs on`)
    return
  }
  console.log(`check-engines: ${unsupported.length} package(s) do not support Node ${node}, the Node the project runs on:`)
  for (const line of unsupported) console.log(`  ${line}`)
}

try {
  check()
} catch (error) {
  console.log(`check-engines: could not check the packages' engines (${error instanceof Error ? error.message : String(error)})`)
}
