// `npm start`: the CLI from the TypeScript sources, with Node's compile cache on from the first
// module, so that from the second start this process, like the children it starts, reads its
// modules already stripped of types and never loads the type-stripping compiler (about 20 MB).
// The cache is the project's (src/runtime/node-flags.ts says why not Node's default under /tmp);
// NODE_COMPILE_CACHE or NODE_DISABLE_COMPILE_CACHE, when set, are Node's to apply.
import module from 'node:module'
import { fileURLToPath } from 'node:url'

if (process.env.NODE_COMPILE_CACHE === undefined && process.env.NODE_DISABLE_COMPILE_CACHE === undefined) {
  module.enableCompileCache(fileURLToPath(new URL('../node_modules/.cache/node-compile-cache', import.meta.url)))
}
await import('../src/cli.ts')
