import { join } from 'node:path'

// How a role's Node process is started, for its memory footprint (bench/footprint.ts measures it).

/**
 * V8 flags every role runs with: `npm start` (package.json), its children (the supervisor) and the
 * container image (Dockerfile's NODE_OPTIONS) pass the same ones (a unit test checks that they
 * agree); in the children and the image, a NODE_OPTIONS of the user's replaces them.
 *
 * `--max-semi-space-size=4` (MB): V8 grows the young generation's two semi-spaces to 16 MB each as
 * soon as a process allocates quickly, as every role does while it starts, and an idle process
 * never gives them back. With 4 MB semi-spaces each idle role is 7 to 14 MB smaller, a registry
 * saturated with heartbeats about 20 MB smaller, and a registry holding 100,000 instances about
 * 100 MB smaller (180 instead of 285 MB: fewer short-lived objects reach the old generation).
 * The price is more scavenges: at saturation the registry answers 0.88x the discovery requests
 * and 0.83x the heartbeats a second of V8's defaults (14 % and 21 % more CPU per request; the
 * benchmark's registry part runs both side by side). A deployment bound by throughput rather than
 * memory sets NODE_OPTIONS=--max-semi-space-size=16 (V8's own maximum). README "Footprint".
 */
export const V8_FLAGS: readonly string[] = ['--max-semi-space-size=4']

/**
 * The V8 flags a child process is given: each of V8_FLAGS as this process has it (a user who
 * started the supervisor with another value gets that value in every child too), or else as
 * V8_FLAGS has it; none that NODE_OPTIONS sets, which the child reads from its environment.
 */
export function childV8Flags(nodeOptions: string | undefined, execArgv: readonly string[]): string[] {
  // V8 reads `--max_semi_space_size` as `--max-semi-space-size`.
  const name = (arg: string) => arg.split('=')[0]!.replaceAll('_', '-')
  const fromEnv = new Set((nodeOptions ?? '').split(/\s+/).map(name))
  return V8_FLAGS.flatMap((flag) => {
    if (fromEnv.has(name(flag))) return []
    const at = execArgv.findIndex((arg) => name(arg) === name(flag))
    if (at < 0) return [flag]
    const own = execArgv[at]!
    // `--max-semi-space-size 4`: the value is the next argument.
    return own.includes('=') ? [own] : execArgv.slice(at, at + 2)
  })
}

/**
 * Node's compile cache for a child process that runs the TypeScript sources (`fromSources`): Node
 * strips types with a WebAssembly compiler that costs each process about 20 MB once loaded; with
 * the cache, a module compiled before is read back already stripped, and the compiler is never
 * loaded. The cache itself holds about 7 MB in each process, so the compiled build (dist/), which
 * has no types to strip, runs without it. The directory is `node_modules/.cache/node-compile-cache`
 * under the project `root`, owned by whoever installed it; not Node's default under the system's
 * temporary directory, where another local user could plant entries that would then run as ours.
 * Nothing is set when the user chose a directory (NODE_COMPILE_CACHE) or turned the cache off
 * (NODE_DISABLE_COMPILE_CACHE).
 */
export function compileCacheEnv(env: Readonly<Record<string, string | undefined>>, fromSources: boolean, root: string): Record<string, string> {
  if (!fromSources || env.NODE_COMPILE_CACHE !== undefined || env.NODE_DISABLE_COMPILE_CACHE !== undefined) return {}
  return { NODE_COMPILE_CACHE: join(root, 'node_modules', '.cache', 'node-compile-cache') }
}

/**
 * Writes what this process compiled to the compile cache now (when it has one), rather than at
 * exit: a role runs for days, and the next process to start (`npm start` starts the services
 * once the registry is up) should find the modules it shares with this one already there.
 */
export function flushCompileCache(): void {
  const { flushCompileCache: flush, getCompileCacheDir } = process.getBuiltinModule('node:module')
  if (getCompileCacheDir() !== undefined) flush()
}
